"""findface-video in a launched cluster: a camera created through VideoService is picked up by the detector the
launcher started, its faces are identified by the gateway, and the sightings are found by camera and person; a
second detector, started alone with the operator's token, enrolls the faces it sees with dynamic persons; and the
cluster's license (2 cameras) keeps a third camera waiting, with the reason in its status, until a slot frees."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from findface_grpc import launch
from findface_grpc.extractor.models import packs
from findface_grpc.license import licensing
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, video_pb2, video_pb2_grpc
from tests.helpers import ROOT, cluster_config, free_port, labelled_photos, start_cluster, with_token
from tests.license.conftest import write_license
from tests.video.conftest import PACK, PEOPLE


LICENSED_CAMERAS = 2


@dataclass
class Cluster:
    config: Path
    data: Path
    ports: dict[str, int]
    token: str  # "operator": creates the cameras; not an admin token
    faces: gateway_pb2_grpc.FaceServiceStub
    video: video_pb2_grpc.VideoServiceStub


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, faces):
    try:
        packs.verify_pack(PACK, packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"model pack {PACK} not fetched ({exc})")
    work = tmp_path_factory.mktemp("video-cluster")
    config = work / "cluster.toml"
    private, public = licensing.generate_keys(work / "keys")
    lic = write_license(work / "video.lic", private, cameras=LICENSED_CAMERAS)
    # Dynamic persons on, across cameras, at the original's medium threshold: a face a camera enrolls takes the
    # person_id of the known face it matches.
    ports = cluster_config(config, f"tarantool_memtx_mb = 256\nvideo_port = {free_port()}\n"
                                   f'license_file = "{lic}"\nlicense_public_key = "{public}"\n\n'
                                   '[video]\ndetector_name = "e2e"\nreload_timeout_s = 0.5\n'
                                   'identify_gallery = "staff"\n\n'
                                   "[gateway]\nperson_identify = true\nperson_identify_global = true\n"
                                   "person_identify_threshold = 0.6616\n")
    proc = start_cluster(config, work / "data", work / "launcher.log")
    channel = None
    try:
        mongo_uri = f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true"
        token = subprocess.run(
            [sys.executable, "-m", "findface_grpc.auth", "create", "operator", "--mongo-uri", mongo_uri],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
        channel = with_token(grpc.insecure_channel(f"127.0.0.1:{ports['gateway_port']}"), token)
        face_service = gateway_pb2_grpc.FaceServiceStub(channel)
        # The known people: each one's photos but the one filmed, under their name as person_id.
        face_service.CreateGallery(gateway_pb2.CreateGalleryRequest(name="staff"), timeout=30)
        filmed = set()
        for file, identity in labelled_photos(faces):
            if identity not in PEOPLE:
                continue
            if identity not in filmed:
                filmed.add(identity)
                continue
            face_service.CreateFace(gateway_pb2.CreateFaceRequest(
                image=common_pb2.ImageSource(content=(faces / file).read_bytes()), galleries=["staff"],
                person_id=identity), timeout=60)
        yield Cluster(config, work / "data", ports, token, face_service, video_pb2_grpc.VideoServiceStub(channel))
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        proc.wait(60)


def sightings(cluster: Cluster, camera_id: str, count: int, log: Path) -> list[video_pb2.Event]:
    """The camera's events once there are `count`, and after 2 s more to show that no more come."""
    events: list = []
    deadline = time.monotonic() + 90
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        events = list(cluster.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[camera_id]),
                                                  timeout=30).events)
    assert len(events) == count, (log.read_text(), events)
    time.sleep(2)  # offline mode posts each walk once: nothing more comes
    again = cluster.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[camera_id]), timeout=30).events
    assert len(again) == count
    return events


def test_launched_detector_identifies_and_sightings_are_found_by_camera_and_person(cluster, videos):
    # An operator watching live, from before the camera exists.
    watch = cluster.video.WatchEvents(video_pb2.WatchEventsRequest(galleries=["staff"]), timeout=120)
    watched: list = []
    watcher = threading.Thread(target=lambda: watched.extend(itertools.islice(watch, 3)), daemon=True)
    watcher.start()
    # Created by another token than the detector's: the launcher made the detector's an admin token, so it sees
    # the url. It is picked up at the next reload.
    camera = cluster.video.CreateCamera(video_pb2.CreateCameraRequest(
        url=str(videos["street.mp4"]), detector="e2e", meta="street"), timeout=30)
    events = sightings(cluster, camera.id, 3, cluster.data / "logs" / "video.log")
    watcher.join(30)
    watch.cancel()
    assert sorted(e.id for e in watched) == sorted(e.id for e in events)
    assert all(e.camera_id == camera.id and e.thumbnail[:2] == b"\xff\xd8" for e in watched)
    assert sorted(e.person_id for e in events) == sorted(PEOPLE), events
    assert len({e.track_id for e in events}) == 3
    for event in events:
        assert event.match.face.person_id == event.person_id and event.match.confidence > 0
        assert event.thumbnail[:2] == b"\xff\xd8"
        assert list(event.galleries) == ["staff"] and event.face_id == 0
        by_person = cluster.video.SearchHistory(video_pb2.SearchHistoryRequest(
            person_id=event.person_id, camera_ids=[camera.id]), timeout=30).events
        assert [e.id for e in by_person] == [event.id]
    # Two people crossed at once after person01 had left the frame: the frame times say so.
    times = {e.person_id: e.frame_time.ToDatetime().timestamp() for e in events}
    assert abs(times["person02"] - times["person03"]) < 4
    assert times["person01"] < min(times["person02"], times["person03"])
    # The detector (holding its lease from the launcher's license server) reports the camera: its file was read
    # to the end.
    deadline = time.monotonic() + 10
    status = cluster.video.GetCamera(video_pb2.GetCameraRequest(id=camera.id), timeout=30).status
    while status.state != video_pb2.CAMERA_STATE_NOT_RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
        status = cluster.video.GetCamera(video_pb2.GetCameraRequest(id=camera.id), timeout=30).status
    assert (status.state, status.reason, status.detector) == (
        video_pb2.CAMERA_STATE_NOT_RUNNING, "its recording was read to the end", "e2e"), status


def test_detector_started_alone_enrolls_with_dynamic_persons(cluster, videos, tmp_path):
    cluster.faces.CreateGallery(gateway_pb2.CreateGalleryRequest(name="seen"), timeout=30)
    camera = cluster.video.CreateCamera(video_pb2.CreateCameraRequest(
        url=str(videos["street.mp4"]), detector="e2e-create"), timeout=30)
    # Another token's camera for the same detector: its url is hidden from the operator's token, so the detector
    # leaves it out (and says so) and runs the other.
    mongo_uri = f"mongodb://127.0.0.1:{cluster.ports['mongo_port']}/?directConnection=true"
    other_token = subprocess.run(
        [sys.executable, "-m", "findface_grpc.auth", "create", "other", "--mongo-uri", mongo_uri],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    with with_token(grpc.insecure_channel(f"127.0.0.1:{cluster.ports['gateway_port']}"), other_token) as channel:
        hidden = video_pb2_grpc.VideoServiceStub(channel).CreateCamera(video_pb2.CreateCameraRequest(
            url=f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/ch1", detector="e2e-create"), timeout=30)
    # As systemd would run it: the shared config file, its own settings in the environment, the token of the
    # cameras' creator.
    listen = f"127.0.0.1:{free_port()}"
    detector = launch.python_server(
        "video-create", "findface_grpc.video.server",
        ["--config", str(cluster.config), "--listen", listen,
         "--gateway", f"127.0.0.1:{cluster.ports['gateway_port']}",
         "--extractor", f"127.0.0.1:{cluster.ports['extractor_port']}"],
        tmp_path / "video.log",
        {"FINDFACE_VIDEO_TOKEN": cluster.token, "FINDFACE_VIDEO_DETECTOR_NAME": "e2e-create",
         "FINDFACE_VIDEO_REQUEST": "create", "FINDFACE_VIDEO_GALLERIES": "seen", "FINDFACE_VIDEO_META": "lobby"})
    detector.start()
    try:
        launch.wait_grpc_healthy(listen, 60, detector)
        events = sightings(cluster, camera.id, 3, tmp_path / "video.log")
    finally:
        detector.stop()
    log = (tmp_path / "video.log").read_text()
    assert f"camera {hidden.id} left out" in log and "s3cret" not in log
    assert not cluster.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[hidden.id]), timeout=30).events
    assert sorted(e.person_id for e in events) == sorted(PEOPLE), events
    for event in events:
        face = cluster.faces.GetFace(gateway_pb2.GetFaceRequest(id=event.face_id), timeout=30)
        assert face.person_id == event.person_id and face.cam_id == camera.id
        assert "seen" in face.galleries and face.meta == "lobby"


def camera_status(cluster: Cluster, camera_id: str) -> video_pb2.CameraStatus:
    return cluster.video.GetCamera(video_pb2.GetCameraRequest(id=camera_id), timeout=30).status


def test_cameras_past_the_license_limit_wait_with_the_reason_until_a_slot_frees(cluster, videos):
    # Paced like live cameras (11 s each): the launched detector would run all three, the license allows two.
    made = [cluster.video.CreateCamera(video_pb2.CreateCameraRequest(
        url=f"file@15:{videos['street.mp4']}", detector="e2e", meta=f"door {i}"), timeout=30) for i in range(3)]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {c.id: camera_status(cluster, c.id) for c in made}
            waiting = [c for c, s in states.items() if s.state == video_pb2.CAMERA_STATE_NOT_RUNNING]
            running = [c for c, s in states.items() if s.state == video_pb2.CAMERA_STATE_RUNNING]
            if len(running) == LICENSED_CAMERAS and len(waiting) == 1:
                break
            time.sleep(0.3)
        assert (len(running), len(waiting)) == (LICENSED_CAMERAS, 1), states
        assert states[waiting[0]].reason.startswith("over the license's camera limit: this detector's lease holds 2 "
                                                     "of the 3 camera(s)"), states[waiting[0]]
        # The HTTP API shows the same (the console and legacy clients read it there).
        request = urllib.request.Request(f"http://127.0.0.1:{cluster.ports['http_port']}/v1/camera/{waiting[0]}",
                                         headers={"Authorization": f"Token {cluster.token}"})
        body = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert body["status"]["state"] == "not_running" and body["status"]["detector"] == "e2e", body
        # The two running ones end after 11 s; their slots go to the one that waited.
        deadline = time.monotonic() + 60
        status = camera_status(cluster, waiting[0])
        while status.state != video_pb2.CAMERA_STATE_RUNNING and time.monotonic() < deadline:
            time.sleep(0.3)
            status = camera_status(cluster, waiting[0])
        assert status.state == video_pb2.CAMERA_STATE_RUNNING, status
    finally:
        for camera in made:
            cluster.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera.id), timeout=30)
