"""WatchEvents on a real cluster (filters by camera and gallery, replay with after_id), and the hub's bounded
queues: a subscriber that does not read loses the oldest events, counted, and never holds up publishing."""
from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone

import grpc
import pytest

from findface_grpc.gateway.events import EventHub
from findface_grpc.gateway.history import Event
from findface_grpc.v1 import common_pb2, gateway_pb2, video_pb2


class Watcher:
    """A WatchEvents stream read on a thread of its own."""

    def __init__(self, caller, **request) -> None:
        self.call = caller.video.WatchEvents(video_pb2.WatchEventsRequest(**request), timeout=120)
        self.events: list[video_pb2.Event] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except grpc.RpcError as exc:
            self.error = exc

    def wait_for(self, count: int, timeout: float = 60) -> list[video_pb2.Event]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.events)

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)


@pytest.fixture(scope="module")
def cameras(alice):
    made = [alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta=f"watch{i}")).id for i in range(2)]
    alice.faces.CreateGallery(gateway_pb2.CreateGalleryRequest(name="watchlist"))
    yield made
    for camera_id in made:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera_id))
    alice.faces.DeleteGallery(gateway_pb2.DeleteGalleryRequest(name="watchlist"))


def identify(caller, camera_id: str, photo: bytes, gallery: str = "") -> None:
    caller.faces.Identify(gateway_pb2.IdentifyRequest(
        image=common_pb2.ImageSource(content=photo), gallery=gallery,
        sighting=gateway_pb2.Sighting(camera_id=camera_id, track_id="w")))


def test_watch_filters_by_camera(alice, bob, cameras, people):
    watcher = Watcher(bob, camera_ids=[cameras[1]])
    everything = Watcher(bob)
    try:
        time.sleep(0.5)  # the subscriptions are registered when their handlers run
        identify(alice, cameras[0], people["person03"][0])
        identify(alice, cameras[1], people["person04"][0])
        (event,) = watcher.wait_for(1)
        assert event.camera_id == cameras[1] and event.thumbnail[:2] == b"\xff\xd8" and event.missed == 0
        both = everything.wait_for(2)
        assert [e.camera_id for e in both] == cameras and both[0].id < both[1].id
        time.sleep(0.5)
        assert len(watcher.events) == 1
    finally:
        watcher.close()
        everything.close()


def test_watch_filters_by_gallery(alice, cameras, people):
    watcher = Watcher(alice, galleries=["watchlist"])
    try:
        time.sleep(0.5)
        identify(alice, cameras[0], people["person03"][1])
        identify(alice, cameras[0], people["person03"][2], gallery="watchlist")
        (event,) = watcher.wait_for(1)
        assert list(event.galleries) == ["watchlist"]
    finally:
        watcher.close()


def test_watch_replays_after_id(alice, cameras, people):
    identify(alice, cameras[1], people["person04"][1])
    identify(alice, cameras[1], people["person04"][2])
    stored = alice.video.SearchHistory(video_pb2.SearchHistoryRequest(camera_ids=[cameras[1]], limit=2)).events
    newest, older = stored
    watcher = Watcher(alice, camera_ids=[cameras[1]], after_id=older.id - 1)
    try:
        replayed = watcher.wait_for(2)
        assert [e.id for e in replayed] == [older.id, newest.id]
        identify(alice, cameras[1], people["person04"][0])
        live = watcher.wait_for(3)
        assert len(live) == 3 and live[2].id > newest.id  # the replay and the live events, each once
    finally:
        watcher.close()


@pytest.mark.parametrize("request_", [
    video_pb2.WatchEventsRequest(camera_ids=["c"] * 101),
    video_pb2.WatchEventsRequest(camera_ids=["c" * 300]),
    video_pb2.WatchEventsRequest(galleries=["no spaces"]),
])
def test_bad_watch_filters_refused(alice, request_):
    with pytest.raises(grpc.RpcError) as err:
        next(iter(alice.video.WatchEvents(request_, timeout=10)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_requires_a_token(cluster):
    from findface_grpc.rpc import CHANNEL_OPTIONS
    from findface_grpc.v1 import video_pb2_grpc

    with grpc.insecure_channel(cluster.gateway_address, options=CHANNEL_OPTIONS) as channel:
        with pytest.raises(grpc.RpcError) as err:
            next(iter(video_pb2_grpc.VideoServiceStub(channel).WatchEvents(video_pb2.WatchEventsRequest(),
                                                                           timeout=10)))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def event(i: int, camera: str = "c1", galleries: tuple[str, ...] = ("default",)) -> Event:
    now = datetime.now(timezone.utc)
    return Event(i, camera, now, "", (0.0, 0.0, 1.0, 1.0), b"", None, "", 0, galleries, now)


def test_slow_subscriber_loses_oldest_counted_without_blocking():
    from findface_grpc.observability.metrics import WATCH_DROPPED, WATCH_SUBSCRIBERS

    dropped_before = WATCH_DROPPED._value.get()

    async def scenario():
        hub = EventHub(queue_size=3)
        slow = hub.subscribe()
        fast = hub.subscribe(camera_ids=["c1"])
        other = hub.subscribe(camera_ids=["c2"])
        started = time.perf_counter()
        hub.publish(event(i) for i in range(1, 11))
        elapsed = time.perf_counter() - started
        got = [await slow.next() for _ in range(3)]
        assert [(e.id, missed) for e, missed in got] == [(8, 7), (9, 0), (10, 0)]
        assert slow.dropped_total == 7 and not other.queue
        hub.publish([event(11)])
        assert (await slow.next())[0].id == 11
        hub.unsubscribe(fast)
        hub.publish([event(12)])
        assert 12 not in [e.id for e, _ in fast.queue] and hub.subscribers == 2
        assert WATCH_SUBSCRIBERS._value.get() == 2
        return elapsed

    assert asyncio.run(scenario()) < 0.1
    # slow lost 7 of the first ten; fast (never read, queue of 3) those 7 and then 8 to make room for 11.
    assert WATCH_DROPPED._value.get() - dropped_before == 15
