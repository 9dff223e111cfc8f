"""The detector on network streams from real servers: an HTTP MJPEG camera, an HLS playlist over HTTP and an RTSP
server whose stream is cut mid-way; posts collected locally."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from findface_grpc.video.domain import Camera
from tests.video.conftest import identify, run_cameras, video_config
from tests.video.scenes import FPS
from tests.video.servers import HttpCamera, RtspServer, require_rtsp


@pytest.fixture
def http_camera(street_frames, videos):
    camera = HttpCamera(street_frames, FPS, videos["hls"].parent.parent)
    yield camera
    camera.close()


def test_http_mjpeg_camera_and_hls_playlist(http_camera, extractor, people):
    mjpeg = Camera("cam-mjpeg", f"http://{http_camera.address}/camera.mjpg")
    hls = Camera("cam-hls", f"file@{FPS}:http://{http_camera.address}/hls/street.m3u8")
    ended: dict[str, float] = {}

    async def until_both_played(detector) -> None:
        # The MJPEG camera's stream ends after one pass and is reopened (a live stream); the HLS one is a
        # recording played in real time, which ends its camera.
        while not (detector.runners[hls.id].done.is_set() and mjpeg.id in ended):
            if detector.runners[mjpeg.id].counters.reopens and mjpeg.id not in ended:
                ended[mjpeg.id] = time.time()
            await asyncio.sleep(0.05)
        await detector.poster.drained(10)

    posts, detector = asyncio.run(run_cameras(extractor.address, [mjpeg, hls], video_config(),
                                              until=until_both_played, timeout=60))
    for camera in (mjpeg, hls):
        counters = detector.runners[camera.id].counters
        first_pass = [p for p in posts
                      if p.camera_id == camera.id and p.snapshot.frame_time < ended.get(camera.id, float("inf"))]
        who = Counter(identify(extractor.address, p, people)[0] for p in first_pass)
        assert who == Counter(list(people)), (camera.id, who, counters)
        assert counters.still > 0 and counters.lag_s, counters
        assert sorted(counters.lag_s)[len(counters.lag_s) // 2] < 1.0, counters.lag_s  # detection keeps up


def test_rtsp_stream_cut_mid_way_is_reopened(videos, extractor, people, tmp_path):
    require_rtsp()
    server = RtspServer(tmp_path)
    camera = Camera("cam-rtsp", server.url("street"))
    collected: list = []
    marks: dict[str, float] = {}

    async def cut_then_back(detector) -> None:
        counters = detector.runners[camera.id].counters
        while counters.detected < 10:  # 2-3 s into the stream: person01 is walking through
            await asyncio.sleep(0.05)
        server.down()
        marks["cut"] = time.time()
        reopens = counters.reopens
        await asyncio.sleep(1.5)  # the detector finds the server gone and keeps trying
        assert counters.reopens > reopens
        server.up()
        server.publish(videos["street.mp4"], "street")
        while len({p.snapshot.track_id for p in collected}) < 4:
            await asyncio.sleep(0.1)
        await detector.poster.drained(10)

    server.publish(videos["street.mp4"], "street")
    try:
        cfg = video_config(source_params=("rtsp_transport=udp",), read_timeout_s=5.0)
        posts, detector = asyncio.run(run_cameras(extractor.address, [camera], cfg, until=cut_then_back,
                                                  timeout=60, sink=collected))
    finally:
        server.close()
    counters = detector.runners[camera.id].counters
    assert counters.stream_errors >= 2, counters
    before = [p for p in posts if p.snapshot.frame_time < marks["cut"]]
    after = [p for p in posts if p.snapshot.frame_time >= marks["cut"]]
    # person01's track ends with the cut and is posted; after the reopen the whole street is seen again.
    assert [identify(extractor.address, p, people)[0] for p in before] == ["person01"], counters
    assert Counter(identify(extractor.address, p, people)[0] for p in after) == Counter(list(people)), counters
