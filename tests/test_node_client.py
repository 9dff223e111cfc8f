"""A real client in another language: tests/node/client.mjs (@grpc/grpc-js and @grpc/proto-loader, loading the
contracts from protos/) against a cluster started by findface-cluster, as a Node.js user would call it."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from findface_grpc.extractor.models import packs
from tests.helpers import ROOT, cluster_config, labelled_photos, start_cluster

NODE_DIR = ROOT / "tests" / "node"
ENROLLED = ("person01", "person02", "person03")


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Node.js 18 or newer runs the Node.js client test)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("tests/node/node_modules is missing: run scripts/setup.sh --tests (npm ci in tests/node)")
    return node


@pytest.fixture(scope="module")
def answers(node, faces, tmp_path_factory) -> dict:
    """What the Node.js client printed, after one run of every call against a fresh cluster."""
    try:
        packs.verify_pack("scrfd-mbf", packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"models not fetched: {exc}")
    by_person: dict[str, list[str]] = {}
    for file, person in labelled_photos(faces):
        by_person.setdefault(person, []).append(file)
    base = tmp_path_factory.mktemp("node-client")
    ports = cluster_config(base / "cluster.toml")
    proc = start_cluster(base / "cluster.toml", base / "data", base / "launcher.log")
    try:
        mongo_uri = f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true"
        token = subprocess.run(
            [sys.executable, "-m", "findface_grpc.auth", "create", "node", "--mongo-uri", mongo_uri],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.strip()
        args = {
            "address": f"127.0.0.1:{ports['gateway_port']}",
            "token": token,
            "protoRoot": str(ROOT / "protos"),
            "gallery": "node_clients",
            "enroll": [{"file": str(faces / by_person[p][0]), "person": p} for p in ENROLLED],
            "query": str(faces / by_person["person02"][1]),
            "multiFace": str(faces / "deepface/couple.jpg"),
        }
        run = subprocess.run([node, "client.mjs", json.dumps(args)], cwd=NODE_DIR, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (base / "launcher.log").read_text()


def test_health_and_reflection_v1(answers):
    assert answers["health"] == "SERVING"
    assert {"findface_grpc.v1.FaceService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(answers["reflectionServices"])
    # gateway.proto and what it imports: common.proto and google/protobuf/timestamp.proto.
    assert answers["reflectionFiles"] == 3


def test_token_and_galleries(answers):
    assert answers["withoutToken"]["code"] == "UNAUTHENTICATED"
    assert answers["gallery"] == "node_clients"
    duplicate = answers["duplicateGallery"]
    assert duplicate["code"] == "ALREADY_EXISTS"
    assert duplicate["rich"]["ErrorInfo"]["reason"] == "ALREADY_EXISTS"


def test_enroll_and_identify(answers):
    assert [f["meta"] for f in answers["enrolled"]] == list(ENROLLED)
    assert all(sorted(f["galleries"]) == ["default", "node_clients"] for f in answers["enrolled"])
    [matches] = answers["identify"]
    assert matches[0]["meta"] == "person02"
    assert len(matches) == 3


def test_errors_carry_rich_details(answers):
    many = answers["tooManyFaces"]
    assert many["code"] == "FAILED_PRECONDITION"
    assert len(many["trailer"]["faces"]) == 2
    info = many["rich"]["ErrorInfo"]
    assert (info["reason"], info["domain"]) == ("TOO_MANY_FACES", "findface-grpc")
    assert json.loads(info["metadata"]["faces"]) == many["trailer"]["faces"]
    bad = answers["badLimit"]
    assert bad["code"] == "INVALID_ARGUMENT"
    assert bad["rich"]["BadRequest"]["field_violations"][0]["field"] == "limit"


def test_cluster_status_and_streamed_import(answers):
    status = answers["clusterStatus"]
    assert (status["shards_live"], status["shards_total"], status["extractor_live"]) == (2, 2, True)
    # uint64 fields reach JavaScript as strings (longs: String), since a Number cannot hold every uint64.
    assert status["face_count"] == str(len(ENROLLED))
    assert (status["model"], status["dim"]) == ("w600k_mbf", 512)
    first, second = answers["imported"]
    assert (len(first), len(second)) == (2, 1)
    assert answers["importedFound"] == [{"id": first[0], "meta": "imported-0"}]
