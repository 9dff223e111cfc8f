"""findface-video in a launched cluster: a camera created through VideoService is picked up by the detector the
launcher started, its faces are identified by the gateway, and the sightings are found by camera and person."""
from __future__ import annotations

import subprocess
import sys
import time

import grpc

from findface_grpc.extractor.models import packs
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, video_pb2, video_pb2_grpc
from tests.helpers import ROOT, cluster_config, free_port, labelled_photos, start_cluster, with_token
from tests.video.conftest import PEOPLE, PACK


def test_camera_sightings_found_by_camera_and_person(tmp_path, faces, videos):
    packs.verify_pack(PACK, packs.default_models_dir())  # the videos fixture skipped already without it
    config = tmp_path / "cluster.toml"
    video_port = free_port()
    ports = cluster_config(config, f'tarantool_memtx_mb = 256\nvideo_port = {video_port}\n\n'
                                   '[video]\ndetector_name = "e2e"\nreload_timeout_s = 0.5\n'
                                   'identify_gallery = "staff"\n')
    log = tmp_path / "launcher.log"
    proc = start_cluster(config, tmp_path / "data", log)
    try:
        mongo_uri = f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true"
        token = subprocess.run(
            [sys.executable, "-m", "findface_grpc.auth", "create", "operator", "--mongo-uri", mongo_uri],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
        channel = with_token(grpc.insecure_channel(f"127.0.0.1:{ports['gateway_port']}"), token)
        face_service = gateway_pb2_grpc.FaceServiceStub(channel)
        video = video_pb2_grpc.VideoServiceStub(channel)
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
        # A camera created by another token than the detector's: the launcher made the detector's an admin
        # token, so it sees the url. It is picked up at the next reload.
        camera = video.CreateCamera(video_pb2.CreateCameraRequest(
            url=str(videos["street.mp4"]), detector="e2e", meta="street"), timeout=30)
        events = []
        deadline = time.monotonic() + 90
        while len(events) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            events = list(video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[camera.id]),
                                              timeout=30).events)
        assert len(events) == 3, ((tmp_path / "data" / "logs" / "video.log").read_text(), events)
        time.sleep(2)  # nothing more comes: offline mode posts each walk once
        again = video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[camera.id]), timeout=30).events
        assert len(again) == 3
        assert sorted(e.person_id for e in events) == sorted(PEOPLE), events
        assert len({e.track_id for e in events}) == 3
        for event in events:
            assert event.match.face.person_id == event.person_id and event.match.confidence > 0
            assert event.thumbnail[:2] == b"\xff\xd8"
            assert event.galleries == ["staff"]
            by_person = video.SearchHistory(video_pb2.SearchHistoryRequest(
                person_id=event.person_id, camera_ids=[camera.id]), timeout=30).events
            assert [e.id for e in by_person] == [event.id]
        # Two people crossed at once after person01 had left the frame: the frame times say so.
        times = {e.person_id: e.frame_time.ToDatetime().timestamp() for e in events}
        assert abs(times["person02"] - times["person03"]) < 4
        assert times["person01"] < min(times["person02"], times["person03"])
        channel.close()
    finally:
        proc.terminate()
        proc.wait(60)
