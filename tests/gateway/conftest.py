from __future__ import annotations

import pytest

from findface_grpc.gateway.metadata import MetadataStore
from tests.gateway.harness import EventLoop, mongo_server, running_extractor

PACK = "scrfd-mbf"


@pytest.fixture(scope="package")
def mongo(tmp_path_factory):
    """One SecantusDB for the package; each test module uses its own database in it."""
    with mongo_server(tmp_path_factory.mktemp("mongo")) as uri:
        yield uri


def require_pack(name: str) -> None:
    try:
        from findface_grpc.extractor.models import packs

        packs.verify_pack(name, packs.default_models_dir())
    except Exception as exc:  # noqa: BLE001 - any reason the models are not usable means skip, with it
        pytest.skip(f"model pack {name} not available ({exc}); run: findface-fetch-models all")


@pytest.fixture(scope="package")
def extractor(tmp_path_factory) -> str:
    """A real extractor (scrfd-mbf) for the package; its address."""
    require_pack(PACK)
    with running_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


@pytest.fixture(scope="module")
def loop():
    """An event loop for driving the gateway's async stores from synchronous tests."""
    loop = EventLoop()
    yield loop
    loop.close()


@pytest.fixture
def store(mongo, loop, request):
    """A MetadataStore on a database of this test's own, empty, with its schema."""
    store = MetadataStore(mongo, f"{request.module.__name__.rsplit('_', 1)[-1]}_{request.node.name[:40]}", timeout_s=5)
    store.client.drop_database(store.db.name)
    loop.run(store.ensure_schema())
    yield store
    store.client.drop_database(store.db.name)
    store.close()
