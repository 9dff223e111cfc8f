from __future__ import annotations

import pytest

# The HTTP tests' package fixtures (one SecantusDB, one extractor, the labelled photos), for this package too.
from tests.http.conftest import extractor, mongo, photos  # noqa: F401
from tests.upload.harness import UploadCluster


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, mongo, extractor):  # noqa: F811 - the imported fixtures
    """Shards, a gateway writing to the photo store, and findface-upload, for one test module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    c = UploadCluster(tmp_path_factory.mktemp("upload"), name, mongo, extractor).start()
    yield c
    c.stop()
