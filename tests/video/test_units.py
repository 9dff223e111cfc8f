"""The detector's pure parts, table-driven: regions, sources, the motion gate, the tracker, best-face selection,
and the config's checks."""
from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest

from findface_grpc import config as config_mod
from findface_grpc import launch
from findface_grpc.errors import ConfigError
from findface_grpc.video.config import VideoConfig
from findface_grpc.video.domain import Face, Region, Snapshot, iou, parse_geometry, scaled
from findface_grpc.video.motion import MotionGate, motion_intensity
from findface_grpc.video.selection import OfflineSelector, RealtimeSelector
from findface_grpc.video.service import VideoDetector
from findface_grpc.video.source import describe, parse_source, redact
from findface_grpc.video.tracker import Tracker


def face(x: float, y: float, size: float = 100, quality: float = 0.5) -> Face:
    """A frontal face with its box's top-left at (x, y): landmarks where a detector puts them."""
    s = size
    points = ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
    return Face((x, y, x + s, y + s), tuple((x + px * s, y + py * s) for px, py in points), 0.9, quality)


@pytest.mark.parametrize("region, size, clipped", [
    (Region(10, 20, 100, 50), (640, 480), Region(10, 20, 100, 50)),
    (Region(600, 400, 100, 100), (640, 480), Region(600, 400, 40, 80)),
    (Region(700, 0, 10, 10), (640, 480), None),
])
def test_region_clip(region, size, clipped):
    assert region.clip(*size) == clipped


@pytest.mark.parametrize("text, region", [
    ("150x123+300+155", Region(300, 155, 150, 123)),
    (" 640x360+0+0 ", Region(0, 0, 640, 360)),
    ("150x123", None), ("150x123+300", None), ("0x10+0+0", None), ("10x10+-5+0", None), ("axb+1+2", None),
])
def test_the_originals_geometry(text, region):
    if region is None:
        with pytest.raises(ValueError):
            parse_geometry(text)
    else:
        assert parse_geometry(text) == region


def test_region_holds_a_face_by_its_centre():
    roi = Region(0, 240, 640, 240)
    assert roi.holds_centre((100, 200, 200, 300))  # centre y 250
    assert not roi.holds_centre((100, 150, 200, 250))  # centre y 200


def test_iou_and_scaled_box():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert scaled((100, 100, 140, 120), 2.0, 640, 480) == (80, 70, 160, 150)  # square on the long side
    assert scaled((0, 0, 40, 40), 2.0, 640, 480) == (0, 0, 60, 60)  # clipped to the frame


@pytest.mark.parametrize("url, path, live, recording, fps", [
    ("rtsp://cam/1", "rtsp://cam/1", True, False, 0),
    ("http://cam/video.mjpg", "http://cam/video.mjpg", True, False, 0),
    ("/data/a.mp4", "/data/a.mp4", False, True, 0),
    ("file:///data/a.mp4", "/data/a.mp4", False, True, 0),
    ("file@12.5:/data/a.mp4", "/data/a.mp4", True, True, 12.5),
    ("file@25:http://host/a.m3u8", "http://host/a.m3u8", True, True, 25),
])
def test_sources(url, path, live, recording, fps):
    source = parse_source(url)
    assert (source.url, source.live, source.recording, source.pace_fps) == (path, live, recording, fps)


@pytest.mark.parametrize("url", ["file@:/a.mp4", "file@x:/a.mp4", "file@0:/a.mp4", "file@25"])
def test_bad_paced_sources(url):
    with pytest.raises(ValueError):
        parse_source(url)


def test_credentials_never_reach_the_logs():
    with pytest.raises(ValueError) as error:
        parse_source("file@x:http://u:s3cret@host/a.m3u8")
    assert "s3cret" not in str(error.value)
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/ch1") == "rtsp://***@10.0.0.5:554/ch1"
    assert redact("rtsp://10.0.0.5/ch1") == "rtsp://10.0.0.5/ch1"
    assert "s3cret" not in redact("http://u:s3cret@host/x.mjpg")
    with pytest.raises(av.FFmpegError) as error:
        av.open(f"rtsp://admin:s3cret@127.0.0.1:{launch.free_port()}/ch1", timeout=(2, 2))
    # FFmpeg's error names the url; what the logs say of it does not.
    assert "s3cret" in str(error.value) and "s3cret" not in describe(error.value)
    assert describe(error.value) == "ConnectionRefusedError (Connection refused)"


def test_motion_gate():
    still = np.full((60, 80), 100, np.uint8)
    gate = MotionGate(0.002)
    assert gate.moved(still)  # the first frame counts as motion
    noisy = still + np.random.default_rng(0).integers(0, 10, still.shape, dtype=np.uint8)
    assert not gate.moved(noisy)  # noise under NOISE_LEVELS is not motion
    walked = noisy.copy()
    walked[10:30, 10:30] = 220
    assert gate.moved(walked)
    assert motion_intensity(noisy, walked) == pytest.approx(400 / still.size)
    assert MotionGate(0).moved(still) and MotionGate(0).moved(still)  # 0: the gate is off


def walk(tracker: Tracker, frames) -> list[list[str]]:
    """Track ids per frame, for frames of (time, faces)."""
    return [[t.id for t, _ in tracker.update(time, faces).faces] for time, faces in frames]


def test_one_walk_is_one_track_even_when_fast():
    # 100 px faces moving 60 px each 0.2 s (a detection at 5 fps): IoU alone falls under 0.3 at that pace.
    tracker = Tracker(timeout_s=1.0, max_persons=8)
    ids = walk(tracker, [(0.2 * i, [face(60 * i, 100)]) for i in range(10)])
    assert len({i for frame in ids for i in frame}) == 1


def test_two_people_crossing_lanes_keep_their_tracks():
    tracker = Tracker(timeout_s=1.0, max_persons=8)
    frames = [(0.2 * i, [face(40 * i, 20), face(600 - 40 * i, 300)]) for i in range(12)]
    ids = walk(tracker, frames)
    assert all(frame == ids[0] for frame in ids) and len(set(ids[0])) == 2


def test_a_face_that_leaves_ends_its_track_and_a_return_is_a_new_track():
    tracker = Tracker(timeout_s=1.0, max_persons=8)
    first = tracker.update(0.0, [face(100, 100)]).faces[0][0]
    assert tracker.update(0.5, []).ended == []
    update = tracker.update(1.6, [face(100, 100)])
    assert [t.id for t in update.ended] == [first.id]
    assert update.faces[0][0].id != first.id
    assert [t.id for t in tracker.end_all()] == [update.faces[0][0].id] and not tracker.active


def test_a_jump_across_the_frame_is_another_person():
    tracker = Tracker(timeout_s=1.0, max_persons=8)
    ids = walk(tracker, [(0.0, [face(0, 100)]), (0.2, [face(500, 100)])])
    assert ids[0] != ids[1]


def test_max_persons_keeps_the_largest_faces():
    tracker = Tracker(timeout_s=1.0, max_persons=2)
    update = tracker.update(0.0, [face(0, 0, 50), face(200, 0, 120), face(400, 0, 90)])
    assert sorted(f.box[2] - f.box[0] for _, f in update.faces) == [90, 120]


def snap(track: str, time: float, quality: float) -> Snapshot:
    return Snapshot(track, time, (0, 0, 10, 10), quality, b"jpeg", (0, 0, 10, 10))


def offer(selector, track: str, time: float, quality: float) -> list[float]:
    return [s.quality for s in selector.offer(track, quality, time, lambda: snap(track, time, quality))]


def test_offline_posts_the_best_snapshot_once_when_the_track_ends():
    selector = OfflineSelector(min_quality=0.3)
    for time, quality in [(0.0, 0.2), (0.2, 0.5), (0.4, 0.7), (0.6, 0.6)]:
        assert offer(selector, "a", time, quality) == []
    assert [(s.frame_time, s.quality) for s in selector.end("a")] == [(0.4, 0.7)]
    assert selector.end("a") == []
    offer(selector, "b", 1.0, 0.25)
    assert selector.end("b") == []  # never good enough


def test_realtime_posts_rise_by_the_step_and_reset_when_the_face_leaves():
    selector = RealtimeSelector(min_quality=0.3, step=0.1, delay_s=0.3)
    posted = [q for t, q in [(0.0, 0.2), (0.2, 0.35), (0.4, 0.4), (0.6, 0.5), (0.7, 0.9), (1.0, 0.55), (1.2, 0.7)]
              for q in offer(selector, "a", t, q)]
    # 0.2 under the minimum; 0.4 under 0.35 + 0.1; 0.9 too soon after 0.5 (delay); 0.55 under 0.5 + 0.1.
    assert posted == [0.35, 0.5, 0.7]
    assert selector.end("a") == []
    assert offer(selector, "a", 2.0, 0.35) == [0.35]  # a new walk starts from the minimum again


def test_realtime_refresh_posts_a_face_that_stays_again_after_the_interval():
    without = RealtimeSelector(min_quality=0.3, step=0.1, delay_s=0.2)
    refreshed = RealtimeSelector(min_quality=0.3, step=0.1, delay_s=0.2, refresh_s=1.0)
    steady = [(t / 10, 0.5) for t in range(0, 35, 2)]  # 3.4 s of one face at one quality
    assert [t for t, q in steady for _ in offer(without, "a", t, q)] == [0.0]
    # The threshold falls back to the minimum a second after each post: a post every second, no sooner.
    assert [t for t, q in steady for _ in offer(refreshed, "a", t, q)] == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("table, message", [
    ({"camera_id": "x"}, "camera_id and source"),
    ({"request": "enroll"}, "request must be"),
    ({"detect_fps": 0}, "detect_fps"),
    ({"max_face_size": 10}, "max_face_size"),
    ({"source_params": ["rtsp_transport"]}, "key=value"),
    ({"gateway": "nohost"}, "gateway must be host:port"),
    ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
    ({"rot": "640x360+0+0"}, "rot is for the one camera"),
    ({"camera_id": "c", "source": "/a.mp4", "roi": "640x360"}, "roi: '640x360' is not WxH"),
    ({"license_server": "nohost"}, "license_server must be host:port"),
    ({"uc_threshold": "loose"}, "uc_threshold: 'loose' is neither"),
    ({"uc_threshold": "1.5"}, "not a cosine similarity"),
    ({"uc_max_dup": 0}, "uc_max_dup must be >= 1"),
    ({"rt_refresh_s": -1}, "rt_refresh_s"),
    ({"max_pose_error": -0.1}, "max_pose_error"),
    ({"waiting_frames": 0}, "waiting_frames must be >= 1"),
    ({"meta": "m" * 4097}, "meta must be at most 4096"),
])
def test_config_refuses_bad_settings(tmp_path, table, message):
    path = tmp_path / "c.toml"
    path.write_text("[video]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in table.items()))
    with pytest.raises(ConfigError, match=message):
        config_mod.load(VideoConfig, "video", path, environ={})


def test_config_from_the_environment():
    cfg = config_mod.load(VideoConfig, "video", None, environ={
        "FINDFACE_VIDEO_TOKEN": "t", "FINDFACE_VIDEO_SOURCE_PARAMS": "rtsp_transport=tcp,stimeout=5000000",
        "FINDFACE_VIDEO_REALTIME": "true"})
    assert cfg.token == "t" and cfg.realtime
    assert cfg.ffmpeg_options == {"rtsp_transport": "tcp", "stimeout": "5000000"}
    one = config_mod.load(VideoConfig, "video", None, environ={
        "FINDFACE_VIDEO_CAMERA_ID": "c", "FINDFACE_VIDEO_SOURCE": "rtsp://cam/1", "FINDFACE_VIDEO_ROI": "100x50+10+20"})
    assert one.region("roi") == Region(10, 20, 100, 50) and one.region("rot") is None


@pytest.mark.parametrize("single_pass", [True, False])
def test_single_pass_lists_the_cameras_once(single_pass):
    calls = []

    async def listed() -> list:
        calls.append(1)
        return []

    async def never(*args) -> None:
        raise AssertionError("nothing to detect or post")

    async def scenario() -> None:
        detector = VideoDetector(VideoConfig(reload_timeout_s=0.2, single_pass=single_pass), never, never, listed)
        await detector.start()
        await asyncio.sleep(0.7)
        await detector.stop(drain_s=0.1)

    asyncio.run(scenario())
    assert len(calls) == 1 if single_pass else len(calls) >= 2
