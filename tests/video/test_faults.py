"""What goes wrong around the detector: damaged and unreadable streams, and a gateway that is down."""
from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np

from findface_grpc import launch
from findface_grpc.video.clients import GatewayClient, Rejected, Transient
from findface_grpc.video.domain import Camera, Snapshot
from findface_grpc.video.posting import Post, Poster
from findface_grpc.video.source import Backoff
from tests.video.conftest import STREET_FRAMES, identify, run_cameras, video_config


def test_damaged_and_unreadable_streams_never_stop_the_others(videos, extractor, people, tmp_path):
    data = bytearray(videos["street.mkv"].read_bytes())
    # MJPEG frames around person01's walk are overwritten with noise: those frames fail to decode.
    start, end = len(data) * 2 // 10, len(data) * 3 // 10
    noise = np.random.default_rng(16)
    data[start:end] = noise.bytes(end - start)
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(noise.bytes(200_000))
    refused = f"rtsp://127.0.0.1:{launch.free_port()}/nothing"
    cameras = [Camera("damaged", str(damaged)), Camera("garbage", str(garbage)), Camera("refused", refused)]

    async def until_damaged_done(detector) -> None:
        await detector.runners["damaged"].done.wait()
        await detector.poster.drained(10)

    posts, detector = asyncio.run(run_cameras(extractor.address, cameras, video_config(), until=until_damaged_done))
    damaged_counters = detector.runners["damaged"].counters
    # The damage is seen: packets that fail to decode, or frames the demuxer skipped to find its feet again.
    assert damaged_counters.stream_errors > 0 or damaged_counters.frames < STREET_FRAMES, damaged_counters
    # The frames after the damage are read and their people posted.
    who = Counter(identify(extractor.address, p, people)[0] for p in posts if p.camera_id == "damaged")
    assert who["person02"] == 1 and who["person03"] == 1, who
    for camera_id in ("garbage", "refused"):
        counters = detector.runners[camera_id].counters
        assert counters.frames == 0 and counters.stream_errors >= 2 and counters.reopens >= 2, counters
        assert not [p for p in posts if p.camera_id == camera_id]


def snapshot(n: int) -> Snapshot:
    return Snapshot(f"t{n}", 1000.0 + n, (0, 0, 10, 10), 0.5, b"\xff\xd8", (0, 0, 10, 10))


def test_posts_wait_while_the_gateway_is_down_and_the_oldest_are_dropped():
    async def scenario():
        # A real client of a gateway address nothing listens on: every post fails as UNAVAILABLE, a Transient.
        client = GatewayClient(f"127.0.0.1:{launch.free_port()}", "token", 1.0)

        async def send(post: Post) -> None:
            await client.post(post.camera_id, post.snapshot, create=False, gallery="default", galleries=())

        poster = Poster(send, capacity=3, backoff=Backoff(0.05, 0.1))
        poster.start()
        for n in range(10):
            poster.put(Post("cam", snapshot(n)))
        await asyncio.sleep(0.5)
        counters, waiting = poster.counters, poster.waiting
        await poster.stop()
        await client.close()
        return counters, waiting

    counters, waiting = asyncio.run(scenario())
    assert (counters.sent, counters.dropped, waiting) == (0, 7, 3), counters
    assert counters.retries >= 2


def test_posts_go_out_in_order_once_the_gateway_is_back():
    async def scenario():
        sent: list[str] = []
        failures = iter([Transient("down")] * 3 + [Rejected("camera deleted")])

        async def send(post: Post) -> None:
            error = next(failures, None)
            if error is not None:
                raise error
            sent.append(post.snapshot.track_id)

        poster = Poster(send, capacity=10, backoff=Backoff(0.01, 0.02))
        poster.start()
        for n in range(5):
            poster.put(Post("cam", snapshot(n)))
        assert await poster.drained(5)
        await poster.stop()
        return sent, poster.counters

    sent, counters = asyncio.run(scenario())
    # t0 is retried through the outage, then refused for good (not retried); the rest follow in order.
    assert sent == ["t1", "t2", "t3", "t4"]
    assert (counters.retries, counters.rejected, counters.sent, counters.dropped) == (3, 1, 4, 0)
