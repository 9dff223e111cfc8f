"""person_identify_global: one person across cameras; and person_identify off: no person_id is made up."""
from __future__ import annotations

import pytest

from findface_grpc.v1 import common_pb2, gateway_pb2, video_pb2
from tests.video_api.conftest import caller, start_cluster


def enroll_seen(c, camera_id: str, photo: bytes) -> common_pb2.FaceRecord:
    reply = c.faces.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo),
                                                             sighting=gateway_pb2.Sighting(camera_id=camera_id)))
    return reply.faces[0]


@pytest.fixture(scope="module", params=[{"person_identify": "true", "person_identify_global": "true"}, {}],
                ids=["global", "off"])
def setup(request, tmp_path_factory, mongo, extractor):
    name = "global" if request.param else "off"
    cluster = start_cluster(tmp_path_factory, f"persons_{name}", mongo, extractor, **request.param)
    c = caller(cluster, "tests", cluster.token)
    cams = [c.video.CreateCamera(video_pb2.CreateCameraRequest(meta=f"cam{i}")).id for i in (1, 2)]
    yield name, c, cams
    c.close()
    cluster.stop()


def test_person_across_cameras(setup, people):
    name, c, cams = setup
    a, b = people["person01"], people["person02"]
    first = enroll_seen(c, cams[0], a[0])
    again = enroll_seen(c, cams[1], a[1])
    stranger = enroll_seen(c, cams[1], b[0])
    if name == "global":
        assert first.person_id and again.person_id == first.person_id
        assert stranger.person_id not in ("", first.person_id)
    else:
        assert (first.person_id, again.person_id, stranger.person_id) == ("", "", "")
        # The history still has the sightings, each with its best match.
        events = c.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=cams)).events
        assert len(events) == 3 and events[1].match.face.id == first.id
        assert c.video.ListPersons(video_pb2.ListPersonsRequest()).persons == []
