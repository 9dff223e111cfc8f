from __future__ import annotations

import pytest

from tests.gateway.harness import face_stub
# The HTTP tests' real cluster (SecantusDB, extractor, two shards, gateway, HTTP gateway), one per module.
from tests.http.conftest import api, cluster, extractor, mongo, photos  # noqa: F401


@pytest.fixture(scope="module")
def stub(cluster):  # noqa: F811 - the imported fixture
    """The gRPC gateway of the same cluster, with the cluster's token."""
    channel, face_stub_ = face_stub(cluster.gateway_address, cluster.token)
    yield face_stub_
    channel.close()
