"""The detector's pipeline on real video files with a real extractor, posts collected locally: offline and
real-time modes, the regions of tracking and of interest, the motion gate."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY, generate_latest

from findface_grpc.observability import gauges
from findface_grpc.video.domain import Camera, Region
from tests.video.conftest import identify, run_cameras, video_config


@pytest.mark.parametrize("video", ["street.mp4", "street.mkv"])
def test_offline_posts_each_person_once_identified(video, videos, extractor, people):
    posts, detector = asyncio.run(run_cameras(extractor.address, [Camera("cam-1", str(videos[video]))],
                                              video_config()))
    counters = detector.runners["cam-1"].counters
    who = [identify(extractor.address, p, people) for p in posts]
    assert Counter(identity for identity, _ in who) == Counter(list(people)), (who, counters)
    # At least the gateway's medium threshold for this model pack (scoring.py), at which it would name them too.
    assert all(score >= 0.28 for _, score in who), who
    assert len({p.snapshot.track_id for p in posts}) == 3
    # Frame times come from the file: person01 walks 1-4 s in, the other two 5.5-9.5 s in.
    times = {identity: p.snapshot.frame_time for p, (identity, _) in zip(posts, who)}
    assert times["person01"] < min(times["person02"], times["person03"]) - 1.0
    assert counters.still > 0, counters  # the empty stretches cost no detection
    assert counters.detected < counters.sampled
    assert counters.dropped == 0  # a file waits for detection
    for post in posts:
        assert post.camera_id == "cam-1"
        assert post.snapshot.quality >= 0.3
        assert post.snapshot.photo[:2] == b"\xff\xd8"
    # What /metrics shows of it: the camera's counters and the post queue.
    gauges.watch_video(detector)
    text = generate_latest(REGISTRY).decode()
    assert f'findface_video_frames_total{{camera="cam-1"}} {float(counters.frames)}' in text
    assert f'findface_video_still_total{{camera="cam-1"}} {float(counters.still)}' in text
    assert "findface_video_posts_sent_total 3.0" in text and "findface_video_cameras 1.0" in text


def test_realtime_posts_come_in_rising_quality(videos, extractor, people):
    cfg = video_config(realtime=True, min_quality=0.2, rt_score_step=0.05, rt_delay_s=0.2, min_face_size=20)
    posts, detector = asyncio.run(run_cameras(extractor.address, [Camera("cam-rt", str(videos["approach.mp4"]))],
                                              cfg))
    # One person coming nearer: one track, posted again each time the face is better by a step.
    assert len({p.snapshot.track_id for p in posts}) == 1, posts
    assert len(posts) >= 3, [p.snapshot.quality for p in posts]
    for before, after in zip(posts, posts[1:]):
        assert after.snapshot.quality >= before.snapshot.quality + cfg.rt_score_step
        assert after.snapshot.frame_time - before.snapshot.frame_time >= cfg.rt_delay_s
    assert posts[0].snapshot.quality >= cfg.min_quality
    assert identify(extractor.address, posts[-1], people)[0] == "person01"
    # Offline mode on the same video: the one post is the best of them.
    offline, _ = asyncio.run(run_cameras(extractor.address, [Camera("cam-off", str(videos["approach.mp4"]))],
                                         video_config(min_quality=0.2, min_face_size=20)))
    assert len(offline) == 1
    assert offline[0].snapshot.quality >= posts[-1].snapshot.quality


def test_realtime_refresh_posts_a_face_again_that_gets_no_better(videos, extractor, people):
    # A step no quality can climb: without rt_refresh_s one post per track, with it one at least every second.
    cfg = video_config(realtime=True, min_quality=0.2, rt_score_step=1.0, rt_delay_s=0.2, min_face_size=20)
    once, _ = asyncio.run(run_cameras(extractor.address, [Camera("cam-rt", str(videos["approach.mp4"]))], cfg))
    assert len(once) == 1, [(p.snapshot.frame_time, p.snapshot.quality) for p in once]
    refreshed, _ = asyncio.run(run_cameras(extractor.address, [Camera("cam-rt", str(videos["approach.mp4"]))],
                                           replace(cfg, rt_refresh_s=1.0)))
    times = [p.snapshot.frame_time for p in refreshed]
    assert len(times) >= 3 and len({p.snapshot.track_id for p in refreshed}) == 1, times
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[1:])), times
    assert {identify(extractor.address, p, people)[0] for p in refreshed} == {"person01"}


def test_post_uniq_posts_one_person_at_most_uc_max_dup_times(videos, extractor, people):
    # Real-time mode posts each person several times as their face gets better.
    cfg = video_config(realtime=True, min_quality=0.2, rt_score_step=0.02, rt_delay_s=0.2)
    every, _ = asyncio.run(run_cameras(extractor.address, [Camera("cam-u", str(videos["street.mp4"]))], cfg))
    per_person = Counter(identify(extractor.address, p, people)[0] for p in every)
    assert set(per_person) == set(people) and max(per_person.values()) >= 2, per_person
    # post-uniq with a shift as large as the frame: only the faces' likeness tells the three people apart.
    unique_cfg = replace(cfg, post_uniq=True, uc_max_dup=1, uc_max_time_diff_s=60, uc_max_avg_shift=2000)
    unique, detector = asyncio.run(run_cameras(extractor.address, [Camera("cam-u", str(videos["street.mp4"]))],
                                               unique_cfg))
    assert Counter(identify(extractor.address, p, people)[0] for p in unique) == Counter(list(people)), unique
    assert detector.poster.counters.duplicates == detector.runners["cam-u"].counters.posts - 3
    # Faces further apart than uc_max_avg_shift are never compared: each is posted.
    near_only, _ = asyncio.run(run_cameras(extractor.address, [Camera("cam-u", str(videos["street.mp4"]))],
                                           replace(unique_cfg, uc_max_avg_shift=1)))
    assert len(near_only) > len(unique)


def test_disable_drops_detects_every_sampled_frame_of_a_live_stream_late(videos, extractor, people):
    # The video played in real time, detection slowed to fewer frames a second than are sampled.
    camera = Camera("cam-live", f"file@15:{videos['street.mp4']}")
    _, dropping = asyncio.run(run_cameras(extractor.address, [camera], video_config(), detect_delay_s=0.4))
    assert dropping.runners["cam-live"].counters.dropped > 0
    posts, keeping = asyncio.run(run_cameras(extractor.address, [camera],
                                             video_config(disable_drops=True, waiting_frames=100),
                                             detect_delay_s=0.4))
    counters = keeping.runners["cam-live"].counters
    assert counters.dropped == 0 and counters.detected == counters.sampled - counters.still, counters
    assert Counter(identify(extractor.address, p, people)[0] for p in posts) == Counter(list(people))


def test_max_pose_error_posts_only_faces_near_frontal(videos, extractor, people):
    camera = [Camera("cam-pose", str(videos["street.mp4"]))]
    lenient, _ = asyncio.run(run_cameras(extractor.address, camera, video_config(max_pose_error=0.3)))
    assert Counter(identify(extractor.address, p, people)[0] for p in lenient) == Counter(list(people))
    # No real face is this close to the frontal template: all are tracked, none posted.
    strict, detector = asyncio.run(run_cameras(extractor.address, camera, video_config(max_pose_error=0.001)))
    assert strict == [] and detector.runners["cam-pose"].counters.tracks == 3


def test_region_of_tracking_and_region_of_interest(videos, extractor, people):
    top = Region(0, 0, 640, 160)  # only person02's lane
    bottom = Region(0, 240, 640, 240)  # only person03's lane
    cameras = [Camera("cam-rot", str(videos["street.mp4"]), rot=top),
               Camera("cam-roi", str(videos["street.mp4"]), roi=bottom)]
    posts, detector = asyncio.run(run_cameras(extractor.address, cameras, video_config()))
    by_camera = {c.id: [p for p in posts if p.camera_id == c.id] for c in cameras}
    assert [identify(extractor.address, p, people)[0] for p in by_camera["cam-rot"]] == ["person02"]
    assert all(top.holds_centre(p.snapshot.box) for p in by_camera["cam-rot"])
    assert detector.runners["cam-rot"].counters.tracks == 1  # the others were never looked for
    assert [identify(extractor.address, p, people)[0] for p in by_camera["cam-roi"]] == ["person03"]
    assert detector.runners["cam-roi"].counters.tracks == 3  # all tracked, one posted
