"""API tokens against real SecantusDB and a real gateway process: refused without, accepted with, revocable, hashed.

The gateway's extractor and shard addresses point at nothing: the calls used here (galleries) need only MongoDB,
and the token check runs before any of them.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import grpc
import pymongo
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from findface_grpc import launch
from findface_grpc.auth import COLLECTION, MAX_TOKEN_LENGTH, TokenStore, token_metadata
from findface_grpc.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import gateway_pb2, gateway_pb2_grpc
from tests.gateway.harness import address, gateway_process, mongo_server, start_healthy
from tests.helpers import ROOT, with_token

DB = "auth_tests"
TTL = 0.5


@pytest.fixture(scope="module")
def mongo(tmp_path_factory):
    with mongo_server(tmp_path_factory.mktemp("auth-mongo")) as uri:
        yield uri


@pytest.fixture(scope="module")
def store(mongo):
    client = pymongo.MongoClient(mongo, tz_aware=True)
    yield TokenStore(client[DB], cache_ttl_s=TTL)
    client.close()


def _gateway(tmp_path_factory, mongo, name, **settings):
    base = tmp_path_factory.mktemp(name)
    listen = address(launch.free_port())
    nowhere = [address(launch.free_port()), address(launch.free_port())]
    proc = gateway_process(name, base, listen, nowhere[1:], nowhere[0], mongo, DB, **settings)
    start_healthy([(proc, listen)])
    return proc, listen


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, mongo):
    proc, listen = _gateway(tmp_path_factory, mongo, "gateway-auth", token_cache_ttl_s=TTL)
    channel = grpc.insecure_channel(listen, options=CHANNEL_OPTIONS)
    yield listen, gateway_pb2_grpc.FaceServiceStub(channel)
    channel.close()
    proc.stop()


def galleries(stub, metadata=()):
    return [g.name for g in stub.ListGalleries(gateway_pb2.ListGalleriesRequest(), metadata=metadata, timeout=10).galleries]


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
    assert info.value.details().startswith("AUTH_FAILED"), info.value.details()
    return info.value


def test_no_token_is_refused(gateway):
    _, stub = gateway
    assert refusal(lambda: galleries(stub)).details() == "AUTH_FAILED: missing token"
    assert refusal(lambda: galleries(stub, (("authorization", ""),))).details() == "AUTH_FAILED: missing token"


def test_wrong_token_is_refused(gateway, store):
    _, stub = gateway
    good = store.create("wrong-test")
    for metadata in (
        token_metadata("not-a-token"),
        token_metadata(good[:-1]),
        token_metadata("x" * (MAX_TOKEN_LENGTH + 1)),
        (("authorization", f"Bearer {good}"),),  # right key, wrong scheme
        (("authorization", "Token"),),
    ):
        assert refusal(lambda: galleries(stub, metadata)).details() == "AUTH_FAILED: invalid or revoked token"


def test_valid_token_works_on_every_kind_of_call(gateway, store):
    _, stub = gateway
    token = store.create("valid-test")
    assert "default" in galleries(stub, token_metadata(token))
    # The scheme is matched as HTTP does it, without regard to case.
    assert "default" in galleries(stub, (("authorization", f"token {token}"),))
    # A streaming method is guarded the same way.
    refusal(lambda: list(stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest()]), timeout=10)))
    try:
        list(stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest()]), metadata=token_metadata(token), timeout=10))
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.UNAUTHENTICATED, exc  # past the check; may fail for want of shards


def test_cluster_status_needs_a_token_and_answers_with_every_part_away(gateway, store):
    """This gateway's one shard and extractor point at nothing: the status says so instead of failing."""
    _, stub = gateway
    request = gateway_pb2.ClusterStatusRequest()
    assert refusal(lambda: stub.ClusterStatus(request, timeout=10)).details() == "AUTH_FAILED: missing token"
    refusal(lambda: stub.ClusterStatus(request, metadata=token_metadata("not-a-token"), timeout=10))
    reply = stub.ClusterStatus(request, metadata=token_metadata(store.create("status-test")), timeout=10)
    assert (reply.shards_live, reply.shards_total) == (0, 1)
    (shard,) = reply.shards
    assert not shard.live and "UNAVAILABLE" in shard.error and shard.face_count == 0
    assert not reply.extractor.live and "UNAVAILABLE" in reply.extractor.error
    assert reply.extractor.embedder_model_id == "" and reply.gallery_count >= 1


def test_revoked_token_is_refused_within_the_cache_ttl(gateway, store):
    _, stub = gateway
    token = store.create("revoke-test")
    assert "default" in galleries(stub, token_metadata(token))  # now cached as valid in the gateway
    [revoked] = store.revoke("revoke-test")
    assert revoked.name == "revoke-test" and revoked.revoked
    deadline = time.monotonic() + TTL + 3
    while True:
        try:
            galleries(stub, token_metadata(token))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            break
        assert time.monotonic() < deadline, "revoked token still accepted after the cache TTL"
        time.sleep(0.1)
    assert store.verify(token) is None


def test_tokens_are_stored_hashed(mongo, store):
    token = store.create("hash-test")
    client = pymongo.MongoClient(mongo)
    try:
        docs = list(client[DB][COLLECTION].find({}))
    finally:
        client.close()
    assert docs
    assert token not in repr(docs)
    mine = [d for d in docs if d["name"] == "hash-test"]
    assert [d["_id"] for d in mine] == [hashlib.sha256(token.encode()).hexdigest()]


def test_health_and_reflection_need_no_token(gateway):
    listen, _ = gateway
    with grpc.insecure_channel(listen) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=5))
        assert "findface_grpc.v1.FaceService" in [s.name for s in answer.list_services_response.service]


def test_store_rules(store):
    with pytest.raises(InvalidArgument):
        store.create("bad name")
    store.create("unique-test")
    with pytest.raises(AlreadyExists):
        store.create("unique-test")
    with pytest.raises(NotFound):
        store.revoke("no-such-token")
    [info] = store.revoke("unique-test")
    assert store.revoke(info.id) == []  # already revoked: nothing more to do
    store.create("unique-test")  # the name is free again once revoked


def test_tokens_can_be_switched_off(tmp_path_factory, mongo):
    proc, listen = _gateway(tmp_path_factory, mongo, "gateway-open", require_tokens="false")
    try:
        with grpc.insecure_channel(listen) as channel:
            assert "default" in galleries(gateway_pb2_grpc.FaceServiceStub(channel))
    finally:
        proc.stop()


def cli(mongo, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findface_grpc.auth", *args, "--mongo-uri", mongo, "--mongo-db", DB],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_create_list_revoke(gateway, mongo):
    listen, _ = gateway
    created = cli(mongo, "create", "cli-test")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert len(created.stdout.splitlines()) == 1 and len(token) >= 40
    with with_token(grpc.insecure_channel(listen), token) as channel:
        assert "default" in galleries(gateway_pb2_grpc.FaceServiceStub(channel))

    listed = cli(mongo, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [row for row in listed.stdout.splitlines() if " cli-test " in row]
    token_id = line.split()[0]
    assert token_id == hashlib.sha256(token.encode()).hexdigest()[:12] and line.endswith("live")
    assert token not in listed.stdout

    assert cli(mongo, "create", "cli-test").returncode == 1  # a live token has that name
    revoked = cli(mongo, "revoke", token_id)
    assert revoked.returncode == 0 and "cli-test" in revoked.stdout, revoked.stderr
    assert "revoked" in [row for row in cli(mongo, "list").stdout.splitlines() if " cli-test " in row][0]
    assert cli(mongo, "revoke", "no-such-token").returncode == 1

    time.sleep(TTL + 0.5)
    with with_token(grpc.insecure_channel(listen), token) as channel:
        refusal(lambda: galleries(gateway_pb2_grpc.FaceServiceStub(channel)))


def test_lost_database_is_unavailable_not_unauthenticated():
    client = pymongo.MongoClient(f"mongodb://{address(launch.free_port())}/?directConnection=true",
                                 serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(Unavailable):
            TokenStore(client[DB]).verify("some-token")
    finally:
        client.close()


def test_tokens_found_valid_keep_working_through_a_database_outage(tmp_path):
    with mongo_server(tmp_path) as uri:
        client = pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=300)
        store = TokenStore(client[DB], cache_ttl_s=0.1)
        token = store.create("through-outage")
        assert store.verify(token).name == "through-outage"
    try:
        time.sleep(0.2)  # past the cache's ttl: the store would ask MongoDB, which is gone
        assert store.verify(token).name == "through-outage"
        with pytest.raises(Unavailable, match=r"token store \(MongoDB\) unavailable"):
            store.verify("a token never seen")
        started = time.monotonic()
        with pytest.raises(Unavailable, match="unavailable since"):
            store.verify("another token never seen")
        assert time.monotonic() - started < 0.2
    finally:
        client.close()
