from __future__ import annotations

import pytest

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import STRICT_MIN_FACE_SIZE, running_strict_extractor
from tests.helpers import face_collage
# The HTTP tests' package fixtures (one SecantusDB, one extractor, the labelled photos), for this package too.
from tests.http.conftest import extractor, mongo, photos  # noqa: F401
from tests.upload.harness import UploadCluster

# The photo whose face the collages are made of.
COLLAGE_SOURCE = "deepface/img1.jpg"


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, mongo, extractor):  # noqa: F811 - the imported fixtures
    """Shards, a gateway writing to the photo store, and findface-upload, for one test module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    c = UploadCluster(tmp_path_factory.mktemp("upload"), name, mongo, extractor).start()
    yield c
    c.stop()


@pytest.fixture(scope="package")
def strict_extractor(tmp_path_factory) -> str:
    """An extractor that embeds faces from STRICT_MIN_FACE_SIZE (40 px) while it finds them from 20 px, so that a
    face can be found yet left out as too small: with the defaults (both 20 px) none is."""
    require_pack(PACK)
    with running_strict_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


@pytest.fixture(scope="module")
def strict_cluster(request, tmp_path_factory, mongo, strict_extractor):  # noqa: F811 - the imported fixture
    """A cluster as `cluster`, on the strict extractor, for one test module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_") + "_strict"
    c = UploadCluster(tmp_path_factory.mktemp("upload"), name, mongo, strict_extractor).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def collage(strict_cluster, photos):  # noqa: F811 - the imported fixture
    """widths -> a photo of COLLAGE_SOURCE's face once per width (tests.helpers.face_collage): collage(160, 26)
    holds a face to enroll and one too small for the strict extractor."""
    data = photos[COLLAGE_SOURCE][1]
    request = gateway_pb2.FaceDetectRequest(image=common_pb2.ImageSource(content=data))
    (face,) = strict_cluster.stub.Detect(request, timeout=60).faces
    box = (face.bbox.x1, face.bbox.y1, face.bbox.x2, face.bbox.y2)
    return lambda *widths: face_collage(data, box, widths)
