"""A real cluster (two shards on Tarantool, SecantusDB, the scrfd-mbf extractor, the gateway and its HTTP gateway)
for the video API tests: cameras, persons, history and events."""
from __future__ import annotations

from dataclasses import dataclass

import grpc
import pymongo
import pytest

from findface_grpc.auth import TokenStore
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import gateway_pb2_grpc, video_pb2_grpc
from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import make_token, mongo_server, running_extractor
from tests.helpers import faces_dir, labelled_photos, with_token
from tests.http.harness import HttpClient, HttpCluster


@dataclass
class Caller:
    """One token's doors to the cluster: gRPC FaceService and VideoService, and the HTTP gateway."""

    name: str
    token: str
    channel: grpc.Channel
    faces: gateway_pb2_grpc.FaceServiceStub
    video: video_pb2_grpc.VideoServiceStub
    http: HttpClient

    def close(self) -> None:
        self.channel.close()
        self.http.close()


def caller(cluster: HttpCluster, name: str, token: str) -> Caller:
    channel = with_token(grpc.insecure_channel(cluster.gateway_address, options=CHANNEL_OPTIONS), token)
    return Caller(name, token, channel, gateway_pb2_grpc.FaceServiceStub(channel),
                  video_pb2_grpc.VideoServiceStub(channel), HttpClient(cluster.http_address, token))


def named_token(cluster: HttpCluster, name: str) -> str:
    client = pymongo.MongoClient(cluster.mongo_uri, tz_aware=True)
    try:
        return TokenStore(client[cluster.mongo_db]).create(name)
    finally:
        client.close()


@pytest.fixture(scope="package")
def faces():
    folder = faces_dir()
    if folder is None:
        pytest.skip("labelled photos not available (../shared/faces)")
    return folder


@pytest.fixture(scope="package")
def people(faces) -> dict[str, list[bytes]]:
    """identity -> its photos' bytes, for the identities with at least three photos."""
    out: dict[str, list[bytes]] = {}
    for name, identity in labelled_photos(faces):
        out.setdefault(identity, []).append((faces / name).read_bytes())
    return {k: v for k, v in out.items() if len(v) >= 3}


@pytest.fixture(scope="package")
def mongo(tmp_path_factory):
    with mongo_server(tmp_path_factory.mktemp("mongo")) as uri:
        yield uri


@pytest.fixture(scope="package")
def extractor(tmp_path_factory) -> str:
    require_pack(PACK)
    with running_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


def start_cluster(tmp_path_factory, name: str, mongo: str, extractor: str, **settings) -> HttpCluster:
    return HttpCluster(tmp_path_factory.mktemp("video"), name, mongo, extractor, gateway_settings=settings).start()


@pytest.fixture(scope="package")
def cluster(tmp_path_factory, mongo, extractor):
    """Per-camera person identification on."""
    c = start_cluster(tmp_path_factory, "video", mongo, extractor, person_identify="true")
    yield c
    c.stop()


@pytest.fixture(scope="package")
def alice(cluster):
    c = caller(cluster, "alice", cluster.token)
    yield c
    c.close()


@pytest.fixture(scope="package")
def bob(cluster):
    c = caller(cluster, "bob", make_token(cluster.mongo_uri, cluster.mongo_db, "bob"))
    yield c
    c.close()


@pytest.fixture(scope="package")
def admin(cluster):
    c = caller(cluster, "admin", named_token(cluster, "admin"))
    yield c
    c.close()
