"""Bad input to the video methods: ids beyond int64, malformed filters and regions, huge values; each answered
with the right code and a reason naming the field, never a crash."""
from __future__ import annotations

import grpc
import pytest

from findface_grpc.v1 import video_pb2

BEYOND = 1 << 63


def test_event_ids_beyond_int64(alice):
    with pytest.raises(grpc.RpcError) as err:
        alice.video.GetEvent(video_pb2.GetEventRequest(id=BEYOND))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        alice.video.SearchHistory(video_pb2.SearchHistoryRequest(max_id=BEYOND))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_id" in err.value.details()


@pytest.mark.parametrize("request_", [
    video_pb2.ListCamerasRequest(limit=1001),
    video_pb2.ListCamerasRequest(detector="d" * 1000),
    video_pb2.ListCamerasRequest(after_id="a" * 1000),
])
def test_bad_camera_listing(alice, request_):
    with pytest.raises(grpc.RpcError) as err:
        alice.video.ListCameras(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_person_listing(alice):
    with pytest.raises(grpc.RpcError) as err:
        alice.video.ListPersons(video_pb2.ListPersonsRequest(limit=5000))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in err.value.details()


@pytest.mark.parametrize("method, path, body, status, param", [
    ("GET", "/v1/history/id/99999999999999999999999/screenshot", None, 400, "id"),
    ("GET", "/v1/history/id/12345678/screenshot", None, 404, None),
    ("GET", "/v1/history/id/abc/screenshot", None, 400, "id"),
    ("GET", "/v1/person/history/id/" + "p" * 300, None, 400, "id"),
    ("POST", "/v1/history/search", {"cam_ids": {"a": 1}}, 400, "cam_ids"),
    ("POST", "/v1/history/search", {"cam_ids": ["c"] * 101}, 400, "cam_ids"),
    ("POST", "/v1/history/search", {"start": float("1e300")}, 400, "start"),
    ("POST", "/v1/history/search", {"max_id": -1}, 400, "max_id"),
    ("POST", "/v1/history/search", {"limit": 0}, 400, "limit"),
    ("GET", "/v1/events?after=1&wait=99", None, 400, "wait"),
    ("PUT", "/v1/camera/not-a-camera", {"meta": "x"}, 404, None),
    ("DELETE", "/v1/camera/00000000-0000-0000-0000-000000000000", None, 404, None),
    ("POST", "/v1/camera", {"rot": [1, 2, 3, True]}, 400, "rot"),
    ("POST", "/v1/camera", {"detector": ["a"]}, 400, "detector"),
])
def test_bad_http_requests(alice, method, path, body, status, param):
    reply = alice.http.request(method, path, json_body=body)
    assert reply.status == status, reply.raw
    if param is not None:
        assert reply.json["code"] == "BAD_PARAM" and reply.json["param"] == param, reply.json
    else:
        assert reply.json["code"] == "NOT_FOUND"
