"""The fast index through the gateway: BuildFastIndex / DropFastIndex on every shard for admin tokens only, the
states in ClusterStatus, full_scan, and findface-index against a real cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

import pymongo

from findface_grpc.auth import TokenStore
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import Cluster, face_stub, make_token

READY = common_pb2.FastIndexState.READY
NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)
FACES = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    cluster = Cluster(tmp_path_factory.mktemp("fast"), "fast", 2, extractor, mongo).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def admin_token(cluster) -> str:
    """A token named "admin", the gateway's default [gateway] admin_tokens."""
    client = pymongo.MongoClient(cluster.mongo)
    try:
        return TokenStore(client[f"cluster_{cluster.name}"]).create("admin")
    finally:
        client.close()


@pytest.fixture(scope="module")
def imported(cluster):
    rng = np.random.default_rng(8)
    centers = rng.normal(size=(FACES // 6, 512))
    vectors = centers.repeat(6, axis=0) + rng.normal(size=(FACES, 512)) * 0.8
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("<f4")
    cluster.stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="big"), timeout=10)
    request = gateway_pb2.ImportFacesRequest(faces=[
        gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=v.tobytes()),
                               galleries=["big"])
        for v in vectors])
    (reply,) = cluster.stub.ImportFaces(iter([request]), timeout=120)
    return list(reply.ids), vectors


def fast_states(stub, gallery: str) -> list[common_pb2.FastIndexState]:
    status = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=10)
    return [f for shard in status.shards for f in shard.fast_indexes if f.gallery == gallery]


def identify(stub, vector, full_scan=False, n=5) -> list[int]:
    reply = stub.Identify(gateway_pb2.IdentifyRequest(
        descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=vector.tobytes()), gallery="big", n=n,
        threshold=NONE, full_scan=full_scan), timeout=10)
    return [m.face.id for m in reply.results[0].matches]


def test_only_admin_tokens_build_or_drop(cluster, imported, admin_token):
    with pytest.raises(grpc.RpcError) as refused:
        cluster.stub.BuildFastIndex(gateway_pb2.FastIndexRequest(gallery="big"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel, admin = face_stub(cluster.address, admin_token)
    with channel:
        with pytest.raises(grpc.RpcError) as missing:
            admin.BuildFastIndex(gateway_pb2.FastIndexRequest(gallery="nosuch"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        reply = admin.BuildFastIndex(gateway_pb2.FastIndexRequest(gallery="big", nprobe=16), timeout=10)
        assert [s.index for s in reply.shards] == [0, 1] and all(not s.error for s in reply.shards)
        deadline = time.monotonic() + 60
        while not (len(found := fast_states(cluster.stub, "big")) == 2 and all(f.state == READY for f in found)):
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        assert sum(f.listed for f in found) == FACES and all(f.nprobe == 16 for f in found)

        ids, vectors = imported
        rng = np.random.default_rng(9)
        rows = rng.choice(FACES, 60, replace=False)
        queries = vectors[rows] + rng.normal(size=(60, 512)).astype("<f4") * 0.02
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype("<f4")
        assert [identify(cluster.stub, q, full_scan=True)[0] for q in queries] == [ids[r] for r in rows]
        assert np.mean([identify(cluster.stub, q)[0] == ids[r] for q, r in zip(queries, rows)]) >= 0.98

        dropped = admin.DropFastIndex(gateway_pb2.FastIndexRequest(gallery="big"), timeout=10)
        assert all(s.state.state == common_pb2.FastIndexState.DROPPED for s in dropped.shards)
        assert fast_states(cluster.stub, "big") == []
        again = admin.DropFastIndex(gateway_pb2.FastIndexRequest(gallery="big"), timeout=10)
        assert all("no fast index" in s.error for s in again.shards)


def test_the_operator_command_builds_and_reports(cluster, imported, admin_token):
    env = dict(os.environ, FINDFACE_TOKEN=admin_token)
    command = [sys.executable, "-m", "findface_grpc.fast_index_cli"]
    built = subprocess.run([*command, "build", "big", "--wait", "--gateway", cluster.address], env=env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    status = subprocess.run([*command, "status", "big", "--gateway", cluster.address], env=env,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0 and status.stdout.count(": big: ready,") == 2, status.stdout
    env["FINDFACE_TOKEN"] = make_token(cluster.mongo, f"cluster_{cluster.name}", "someone")
    refused = subprocess.run([*command, "drop", "big", "--gateway", cluster.address], env=env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr


def test_the_operator_command_passes_over_shards_without_the_gallery(cluster, admin_token):
    """A small gallery lives on some shards only: the others have nothing to index or drop, which is no failure
    (the command used to exit 1 naming the shard's NOT_FOUND, and --wait waited for it for ever)."""
    vector = np.random.default_rng(10).normal(size=512)
    vector = (vector / np.linalg.norm(vector)).astype("<f4")
    cluster.stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="few"), timeout=10)
    request = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(
        descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=vector.tobytes()), galleries=["few"])])
    list(cluster.stub.ImportFaces(iter([request]), timeout=60))

    env = dict(os.environ, FINDFACE_TOKEN=admin_token)
    command = [sys.executable, "-m", "findface_grpc.fast_index_cli"]
    run = lambda *args: subprocess.run([*command, *args, "--gateway", cluster.address], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    built = run("build", "few", "--wait")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "few: no face of the gallery here, nothing to build" in built.stdout, built.stdout
    assert [f.state for f in fast_states(cluster.stub, "few")] == [READY]
    dropped = run("drop", "few")
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert fast_states(cluster.stub, "few") == []
    again = run("drop", "few")
    assert again.returncode == 1 and "no shard had anything to drop" in again.stderr, again.stdout + again.stderr
