from __future__ import annotations

import pytest

from findface_grpc.extractor.models import packs
from tests.helpers import free_port, start_server

PACKS = ["scrfd-mbf", "yunet-sface"]


def require_pack(name: str) -> None:
    try:
        packs.verify_pack(name, packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"model pack {name} not fetched ({exc}); run: findface-fetch-models all")


@pytest.fixture(scope="package", params=PACKS)
def extractor(request, tmp_path_factory):
    """A real extractor server process on loopback, one per model pack."""
    require_pack(request.param)
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("extractor") / f"{request.param}.log"
    server = start_server(
        "findface_grpc.extractor.server", ["--listen", address, "--model-pack", request.param], address, log
    )
    server.pack = request.param
    yield server
    server.stop()
