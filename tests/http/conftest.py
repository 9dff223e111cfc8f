from __future__ import annotations

import pytest

from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import mongo_server, running_extractor
from tests.helpers import labelled_photos
from tests.http.harness import HttpCluster, PhotoServer


@pytest.fixture(scope="package")
def mongo(tmp_path_factory):
    """One SecantusDB for the package; each cluster uses its own database in it."""
    with mongo_server(tmp_path_factory.mktemp("mongo")) as uri:
        yield uri


@pytest.fixture(scope="package")
def extractor(tmp_path_factory) -> str:
    """A real extractor (scrfd-mbf) for the package; its address."""
    require_pack(PACK)
    with running_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


@pytest.fixture(scope="package")
def photo_server(faces):
    """The labelled photos over HTTP on loopback, for the photo-URL forms of every method."""
    server = PhotoServer(faces)
    yield server
    server.stop()


@pytest.fixture(scope="package")
def photos(faces) -> dict[str, tuple[str, bytes]]:
    """file name -> (identity, bytes) of the labelled single-person photos."""
    return {name: (identity, (faces / name).read_bytes()) for name, identity in labelled_photos(faces)}


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, mongo, extractor):
    """A two-shard cluster with its HTTP gateway for one test module (its own database)."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    c = HttpCluster(tmp_path_factory.mktemp("http"), name, mongo, extractor).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api(cluster):
    return cluster.client
