"""VideoService cameras over gRPC: CRUD, PUT semantics, paging by detector, url hiding, bad input."""
from __future__ import annotations

import uuid

import grpc
import pytest

from findface_grpc.v1 import video_pb2

URL = "rtsp://viewer:s3cret@10.0.0.5:554/stream1"


def region(x, y, w, h) -> video_pb2.Region:
    return video_pb2.Region(x=x, y=y, width=w, height=h)


def test_create_get_update_delete(alice):
    made = alice.video.CreateCamera(video_pb2.CreateCameraRequest(
        meta="entrance", url=URL, detector="det-crud", rot=region(10, 20, 300, 200), roi=region(30, 40, 100, 80)))
    try:
        assert str(uuid.UUID(made.id)) == made.id
        assert (made.meta, made.url, made.detector, made.url_hidden) == ("entrance", URL, "det-crud", False)
        assert made.created_by.startswith("http-tests")
        assert (made.rot.x, made.rot.y, made.rot.width, made.rot.height) == (10, 20, 300, 200)
        got = alice.video.GetCamera(video_pb2.GetCameraRequest(id=made.id))
        assert got == made
        # PUT: meta given, url and detector kept, rot given, roi absent -> removed.
        updated = alice.video.UpdateCamera(video_pb2.UpdateCameraRequest(id=made.id, meta="hall",
                                                                         rot=region(0, 0, 640, 480)))
        assert (updated.meta, updated.url, updated.detector) == ("hall", URL, "det-crud")
        assert updated.HasField("rot") and not updated.HasField("roi")
        assert updated.rot.width == 640
        assert updated.updated_at.ToDatetime() >= made.updated_at.ToDatetime()
    finally:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=made.id))
    with pytest.raises(grpc.RpcError) as err:
        alice.video.GetCamera(video_pb2.GetCameraRequest(id=made.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=made.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_by_detector_with_paging(alice):
    detector = f"det-{uuid.uuid4().hex[:8]}"
    ids = sorted(alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta=f"c{i}", detector=detector)).id
                 for i in range(5))
    other = alice.video.CreateCamera(video_pb2.CreateCameraRequest(detector="someone-else"))
    try:
        seen, after = [], ""
        while True:
            page = alice.video.ListCameras(video_pb2.ListCamerasRequest(detector=detector, after_id=after, limit=2))
            assert len(page.cameras) <= 2
            seen += [c.id for c in page.cameras]
            if not page.next_after_id:
                break
            after = page.next_after_id
        assert seen == ids
        everything = alice.video.ListCameras(video_pb2.ListCamerasRequest(limit=1000))
        assert {*ids, other.id} <= {c.id for c in everything.cameras}
    finally:
        for camera_id in [*ids, other.id]:
            alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera_id))


def test_url_shown_only_to_its_creator_and_admins(alice, bob, admin):
    made = alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta="private", url=URL, detector="det-url"))
    try:
        theirs = bob.video.GetCamera(video_pb2.GetCameraRequest(id=made.id))
        assert theirs.url == "" and theirs.url_hidden and theirs.meta == "private"
        listed = {c.id: c for c in bob.video.ListCameras(video_pb2.ListCamerasRequest(detector="det-url")).cameras}
        assert listed[made.id].url == "" and listed[made.id].url_hidden
        # An update by another token does not reveal it either (and keeps it).
        changed = bob.video.UpdateCamera(video_pb2.UpdateCameraRequest(id=made.id, meta="renamed"))
        assert changed.url == "" and changed.url_hidden
        assert admin.video.GetCamera(video_pb2.GetCameraRequest(id=made.id)).url == URL
        assert alice.video.GetCamera(video_pb2.GetCameraRequest(id=made.id)).url == URL
    finally:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=made.id))


def test_url_never_logged(cluster, alice):
    secret = f"rtsp://user:{uuid.uuid4().hex}@10.9.9.9/live"
    made = alice.video.CreateCamera(video_pb2.CreateCameraRequest(url=secret))
    alice.video.UpdateCamera(video_pb2.UpdateCameraRequest(id=made.id, url=secret + "2"))
    alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=made.id))
    logs = "".join(p.read_text(errors="replace") for p in cluster.base.glob("*.log"))
    assert secret.split("@")[0].split(":")[-1] not in logs


@pytest.mark.parametrize("request_, field", [
    (video_pb2.CreateCameraRequest(rot=region(0, 0, 0, 10)), "rot"),
    (video_pb2.CreateCameraRequest(roi=region(0, 0, 10, 0)), "roi"),
    (video_pb2.CreateCameraRequest(roi=region(70000, 0, 10, 10)), "roi"),
    (video_pb2.CreateCameraRequest(url="rtsp://a\nb"), "url"),
    (video_pb2.CreateCameraRequest(url="x" * 3000), "url"),
    (video_pb2.CreateCameraRequest(detector="d" * 300), "detector"),
])
def test_bad_camera_refused(alice, request_, field):
    with pytest.raises(grpc.RpcError) as err:
        alice.video.CreateCamera(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


def test_unknown_or_malformed_ids_not_found(alice):
    for camera_id in (str(uuid.uuid4()), "not-a-uuid", ""):
        for call, req in ((alice.video.GetCamera, video_pb2.GetCameraRequest(id=camera_id)),
                          (alice.video.UpdateCamera, video_pb2.UpdateCameraRequest(id=camera_id)),
                          (alice.video.DeleteCamera, video_pb2.DeleteCameraRequest(id=camera_id))):
            with pytest.raises(grpc.RpcError) as err:
                call(req)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND, camera_id


def test_token_required(cluster):
    from findface_grpc.rpc import CHANNEL_OPTIONS
    from findface_grpc.v1 import video_pb2_grpc

    with grpc.insecure_channel(cluster.gateway_address, options=CHANNEL_OPTIONS) as channel:
        with pytest.raises(grpc.RpcError) as err:
            video_pb2_grpc.VideoServiceStub(channel).ListCameras(video_pb2.ListCamerasRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_detector_reports_which_cameras_run_and_why_not(alice, bob, admin):
    """What a video detector reports of its cameras is their status, in gRPC and in the HTTP API; only tokens that
    may see a camera's url (its creator, admins) can report on it."""
    running, left_out = (alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta=m, url=URL, detector="det-st"))
                         for m in ("running", "left out"))
    why = "over the license's camera limit: this detector's lease holds 1 of the 2 camera(s) it would run"
    try:
        assert not alice.video.GetCamera(video_pb2.GetCameraRequest(id=running.id)).HasField("status")
        report = video_pb2.ReportCameraStatusRequest(detector="det-st", cameras=[
            video_pb2.CameraStatusReport(camera_id=running.id, state=video_pb2.CAMERA_STATE_RUNNING),
            video_pb2.CameraStatusReport(camera_id=left_out.id, state=video_pb2.CAMERA_STATE_NOT_RUNNING,
                                         reason=why),
            video_pb2.CameraStatusReport(camera_id=str(uuid.uuid4()), state=video_pb2.CAMERA_STATE_RUNNING),
            video_pb2.CameraStatusReport(camera_id="not-a-camera", state=video_pb2.CAMERA_STATE_RUNNING),
        ])
        assert bob.video.ReportCameraStatus(report).updated == 0  # not bob's cameras
        assert not alice.video.GetCamera(video_pb2.GetCameraRequest(id=running.id)).HasField("status")
        assert alice.video.ReportCameraStatus(report).updated == 2
        got = alice.video.GetCamera(video_pb2.GetCameraRequest(id=left_out.id)).status
        assert (got.state, got.reason, got.detector) == (video_pb2.CAMERA_STATE_NOT_RUNNING, why, "det-st")
        assert got.reported_at.ToDatetime() >= left_out.created_at.ToDatetime()
        assert bob.video.GetCamera(video_pb2.GetCameraRequest(id=running.id)).status.state == \
            video_pb2.CAMERA_STATE_RUNNING  # anyone may read it
        # An admin token (a detector's) may report on any camera; a PUT keeps the status.
        admin.video.ReportCameraStatus(video_pb2.ReportCameraStatusRequest(detector="det-st", cameras=[
            video_pb2.CameraStatusReport(camera_id=running.id, state=video_pb2.CAMERA_STATE_NOT_RUNNING,
                                         reason="the detector stopped")]))
        alice.video.UpdateCamera(video_pb2.UpdateCameraRequest(id=running.id, meta="renamed"))
        body = alice.http.get(f"/v1/camera/{running.id}").json
        assert body["status"]["state"] == "not_running" and body["status"]["reason"] == "the detector stopped"
        assert body["status"]["detector"] == "det-st" and body["status"]["reported_at"]
        for bad in (video_pb2.CameraStatusReport(camera_id=running.id),  # no state
                    video_pb2.CameraStatusReport(camera_id=running.id, state=video_pb2.CAMERA_STATE_NOT_RUNNING,
                                                 reason="x" * 1025)):
            with pytest.raises(grpc.RpcError) as err:
                alice.video.ReportCameraStatus(video_pb2.ReportCameraStatusRequest(detector="det-st", cameras=[bad]))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        for camera in (running, left_out):
            alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera.id))
