"""The detector's pipeline on real video files with a real extractor, posts collected locally: offline and
real-time modes, the regions of tracking and of interest, the motion gate."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

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
    # Times come from the file: person01 is seen 1-4 s in, the other two 5.5-9.5 s in.
    start = min(p.snapshot.frame_time for p in posts) - 1
    assert counters.still > 0, counters  # the empty stretches cost no detection
    assert counters.detected < counters.sampled
    assert counters.dropped == 0  # a file waits for detection
    for post, (identity, _) in zip(posts, who):
        assert post.camera_id == "cam-1"
        assert post.snapshot.quality >= 0.3
        assert post.snapshot.photo[:2] == b"\xff\xd8"
