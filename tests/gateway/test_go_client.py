"""A real client in Go, the language of the original's own client: code generated from protos/ by protoc-gen-go and
protoc-gen-go-grpc (as the README tells a Go user to), tests/go/client/main.go built with it, run against a
gateway with its shards. Debian's Go toolchain and gRPC sources (scripts/setup.sh --tests) build it offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.gateway.harness import Cluster, make_token
from tests.helpers import ROOT, labelled_photos

DEBIAN_GOPATH = "/usr/share/gocode"  # golang-google-grpc-dev and friends: the client's dependencies


@pytest.fixture(scope="module")
def go_client(tmp_path_factory) -> str:
    missing = [tool for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh --tests installs Debian's)")
    gopath = tmp_path_factory.mktemp("gopath")
    module = gopath / "src" / "findface-grpc"
    module.mkdir(parents=True)
    generated = subprocess.run(
        ["protoc", "-I", str(ROOT / "protos"), f"--go_out={module}", "--go_opt=paths=source_relative",
         f"--go-grpc_out={module}", "--go-grpc_opt=paths=source_relative",
         "findface_grpc/v1/common.proto", "findface_grpc/v1/gateway.proto"],
        capture_output=True, text=True)
    assert generated.returncode == 0, generated.stderr
    shutil.copytree(ROOT / "tests" / "go" / "client", module / "client")
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{DEBIAN_GOPATH}", GOCACHE=str(gopath / "cache"),
               GOFLAGS="")
    binary = gopath / "findface-client"
    built = subprocess.run(["go", "build", "-o", str(binary), "findface-grpc/client"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return str(binary)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    cluster = Cluster(tmp_path_factory.mktemp("go"), "go", 2, extractor, mongo).start()
    yield cluster
    cluster.stop()


def test_a_go_client_enrolls_identifies_and_reads_error_details(go_client, cluster, faces):
    photos = {}
    for file, person in labelled_photos(faces):
        photos.setdefault(person, []).append(faces / file)
    enroll, query = photos["person02"][:2]
    token = make_token(cluster.mongo, f"cluster_{cluster.name}", "go")
    run = subprocess.run([go_client, cluster.address, "go_clients", str(enroll), str(query)],
                         env=dict(os.environ, FINDFACE_TOKEN=token), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = {line["step"]: line for line in map(json.loads, run.stdout.splitlines())}
    created, found, refused = steps["create_face"], steps["identify"], steps["refused"]
    assert created["galleries"] == ["default", "go_clients"]
    assert found["id"] == created["id"] and found["meta"] == "go-client"
    assert 0.3 < found["confidence"] <= 1.0 and found["shards_answered"] == found["shards_total"] == 2
    assert refused["code"] == "NotFound" and "no-such-gallery" in refused["message"]
    assert refused["reasons"] == ["findface-grpc/NOT_FOUND"]
