#!/usr/bin/env bash
# Set up (idempotent) and run the whole cluster on this machine; data and logs under ./var. Ctrl-C stops it.
# Extra arguments go to findface-cluster (see --help), e.g. --shards 4 or --config cluster.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/findface-cluster "$@"
