"""Faces posted from cameras over gRPC (CreateFace and Identify with a Sighting): person assignment per camera,
the history they leave (search by person, camera and time, paged), ListPersons, and the refusals."""
from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from findface_grpc.v1 import common_pb2, gateway_pb2, video_pb2

BASE = 1_700_000_000.0  # frame times of this module's sightings: BASE + seconds


def ts(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromSeconds(int(BASE + seconds))
    return out


def image(photo: bytes) -> common_pb2.ImageSource:
    return common_pb2.ImageSource(content=photo)


def seen(caller, camera_id: str, photo: bytes, at: float, **extra) -> common_pb2.FaceRecord:
    reply = caller.faces.CreateFace(gateway_pb2.CreateFaceRequest(
        image=image(photo), sighting=gateway_pb2.Sighting(camera_id=camera_id, frame_time=BASE + at,
                                                          track_id=f"t{at:g}"), **extra))
    (face,) = reply.faces
    return face


@pytest.fixture(scope="module")
def world(alice, people):
    """Two cameras; person A seen twice by cam1 and once by cam2, person B once by cam1."""
    cams = [alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta=f"cam{i}", detector="det-persons")).id
            for i in (1, 2)]
    a, b = people["person01"], people["person02"]
    faces = {
        "a1": seen(alice, cams[0], a[0], 0),
        "a2": seen(alice, cams[0], a[1], 10),
        "b1": seen(alice, cams[0], b[0], 20),
        "a3": seen(alice, cams[1], a[2], 30),
    }
    yield cams, faces
    for camera_id in cams:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera_id))


def history(caller, **query) -> list[video_pb2.Event]:
    return list(caller.video.SearchHistory(video_pb2.SearchHistoryRequest(**query)).events)


def test_same_person_same_camera_shares_person_id(world):
    cams, faces = world
    assert faces["a1"].person_id and faces["a1"].cam_id == cams[0]
    assert faces["a2"].person_id == faces["a1"].person_id
    assert faces["b1"].person_id not in ("", faces["a1"].person_id)


def test_per_camera_identification_starts_a_new_person_elsewhere(world):
    _, faces = world
    assert faces["a3"].person_id not in ("", faces["a1"].person_id, faces["b1"].person_id)


def test_history_by_person(alice, world):
    cams, faces = world
    events = history(alice, person_id=faces["a1"].person_id)
    assert [e.face_id for e in events] == [faces["a2"].id, faces["a1"].id]  # newest first
    newest, oldest = events
    assert newest.camera_id == cams[0] and newest.track_id == "t10"
    assert newest.frame_time.ToSeconds() == int(BASE + 10)
    assert newest.thumbnail[:2] == b"\xff\xd8"  # a JPEG
    assert newest.bbox.x2 > newest.bbox.x1
    # The second sighting's best match is the first face, the reference its person came from.
    assert newest.match.face.id == faces["a1"].id and 0 < newest.match.confidence <= 1
    assert not oldest.HasField("match") or oldest.match.face.id != faces["a1"].id


def test_history_by_camera_and_time(alice, world):
    cams, faces = world
    on_second = history(alice, camera_ids=[cams[1]])
    assert [e.face_id for e in on_second] == [faces["a3"].id]
    window = history(alice, camera_ids=cams, start=ts(5), end=ts(25))
    assert [e.face_id for e in window] == [faces["b1"].id, faces["a2"].id]
    assert history(alice, camera_ids=cams, start=ts(100)) == []
    light = history(alice, camera_ids=[cams[1]], without_thumbnails=True)
    assert light[0].thumbnail == b"" and alice.video.GetEvent(
        video_pb2.GetEventRequest(id=light[0].id)).thumbnail[:2] == b"\xff\xd8"


def test_history_paging(alice, world):
    cams, _ = world
    everything = [e.id for e in history(alice, camera_ids=cams)]
    assert len(everything) == 4
    pages, max_id = [], 0
    while True:
        reply = alice.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=cams, max_id=max_id, limit=3))
        pages.append(reply)
        if not reply.next_max_id:
            break
        max_id = reply.next_max_id
    assert [e.id for p in pages for e in p.events] == everything
    assert len(pages) == 2 and not pages[0].has_prev and pages[1].has_prev and pages[1].prev_max_id == 0


def test_list_persons(alice, world):
    _, faces = world
    persons, after = {}, ""
    while True:
        page = alice.video.ListPersons(video_pb2.ListPersonsRequest(after_id=after, limit=2))
        persons.update({p.id: p for p in page.persons})
        if not page.next_after_id:
            break
        after = page.next_after_id
    a = persons[faces["a1"].person_id]
    assert a.face_count == 2 and a.face.id == faces["a2"].id
    assert persons[faces["b1"].person_id].face_count == 1


def test_identify_sighting_records_best_match(alice, world, people):
    cams, faces = world
    reply = alice.faces.Identify(gateway_pb2.IdentifyRequest(
        image=image(people["person02"][1]), sighting=gateway_pb2.Sighting(camera_id=cams[1], frame_time=BASE + 40)))
    assert reply.results[0].matches[0].face.id == faces["b1"].id
    (event,) = history(alice, camera_ids=[cams[1]], start=ts(40))
    assert event.face_id == 0 and event.match.face.id == faces["b1"].id
    assert event.person_id == faces["b1"].person_id and list(event.galleries) == ["default"]


def test_given_person_id_wins(alice, world, people):
    cams, _ = world
    face = seen(alice, cams[1], people["person03"][0], 50, person_id="manual-7")
    assert face.person_id == "manual-7"
    assert history(alice, person_id="manual-7")[0].face_id == face.id


@pytest.mark.parametrize("sighting, code", [
    (gateway_pb2.Sighting(camera_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
    (gateway_pb2.Sighting(camera_id="no-such-camera"), grpc.StatusCode.NOT_FOUND),
    (gateway_pb2.Sighting(), grpc.StatusCode.INVALID_ARGUMENT),
    (gateway_pb2.Sighting(camera_id="CAM", frame_time=float("nan")), grpc.StatusCode.INVALID_ARGUMENT),
    (gateway_pb2.Sighting(camera_id="CAM", frame_time=-5), grpc.StatusCode.INVALID_ARGUMENT),
    (gateway_pb2.Sighting(camera_id="CAM", frame_time=1.7e12), grpc.StatusCode.INVALID_ARGUMENT),
    (gateway_pb2.Sighting(camera_id="CAM", track_id="t" * 300), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_sightings_refused(alice, world, people, sighting, code):
    cams, _ = world
    if sighting.camera_id == "CAM":
        sighting.camera_id = cams[0]
    before = len(history(alice, camera_ids=cams, without_thumbnails=True))
    for call, request in ((alice.faces.CreateFace, gateway_pb2.CreateFaceRequest(image=image(people["person04"][0]))),
                          (alice.faces.Identify, gateway_pb2.IdentifyRequest(image=image(people["person04"][0])))):
        request.sighting.CopyFrom(sighting)
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == code, err.value.details()
    assert len(history(alice, camera_ids=cams, without_thumbnails=True)) == before


def test_sighting_needs_a_photo(alice, world):
    cams, _ = world
    request = gateway_pb2.IdentifyRequest(descriptor=common_pb2.Descriptor(model_id="x", dim=1, vector=b"\0" * 4),
                                          sighting=gateway_pb2.Sighting(camera_id=cams[0]))
    with pytest.raises(grpc.RpcError) as err:
        alice.faces.Identify(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("request_", [
    video_pb2.SearchHistoryRequest(limit=5000),
    video_pb2.SearchHistoryRequest(person_id="p" * 300),
    video_pb2.SearchHistoryRequest(start=ts(10), end=ts(5)),
    video_pb2.SearchHistoryRequest(camera_ids=["c"] * 101),
])
def test_bad_history_queries_refused(alice, request_):
    with pytest.raises(grpc.RpcError) as err:
        alice.video.SearchHistory(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
