"""Gauges read from a server's state when Prometheus scrapes it (on the exposition's thread), not kept up to date
on every change: the shard's index size, the license server's leases and usage, a component's lease.

Each server calls its `watch_*` once it has started; the gauges then follow that server (the last one started,
in a process that starts several, as tests do).
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from findface_grpc.observability import metrics

T = TypeVar("T")
# Several gauges come from one reading of a server's state: read it once per scrape, not once per gauge.
SCRAPE_S = 1.0


def _cached(read: Callable[[], T]) -> Callable[[], T]:
    lock = threading.Lock()
    last: list = [-math.inf, None]

    def value() -> T:
        with lock:
            if time.monotonic() - last[0] > SCRAPE_S:
                last[:] = [time.monotonic(), read()]
            return last[1]

    return value


# The states of a gallery's fast index that are counted (shard.fast_index's names).
FAST_STATES = ("READY", "BUILDING", "FAILED")


def watch_shard(service) -> None:
    """A shard.service.ShardService: its index's faces, galleries (the default one aside), memory, and its
    galleries' fast indexes by state."""
    def read():
        return service.index.stats() if service.index is not None else None

    stats = _cached(read)
    metrics.SHARD_FACES.set_function(lambda: stats().face_count if stats() else 0)
    metrics.SHARD_GALLERIES.set_function(lambda: max(0, len(stats().gallery_counts) - 1) if stats() else 0)
    metrics.SHARD_INDEX_BYTES.set_function(lambda: stats().nbytes if stats() else 0)
    states = _cached(lambda: Counter(state.state for state in service.fast.states(service.index)))
    for name in FAST_STATES:
        metrics.SHARD_FAST_INDEXES.labels(name.lower()).set_function(lambda name=name: states()[name])


def watch_license(service) -> None:
    """A license.service.LicenseService: validity, expiry, leases and faces against their limits."""
    status = _cached(service.current_status)

    def expiry() -> float:
        lic = status().license
        if lic is None or status().unlicensed:
            return math.nan
        return (lic.expires_at - datetime.now(timezone.utc)).total_seconds()

    metrics.LICENSE_VALID.set_function(lambda: float(status().valid))
    metrics.LICENSE_UNLICENSED.set_function(lambda: float(status().unlicensed))
    metrics.LICENSE_EXPIRY.set_function(expiry)
    metrics.LICENSE_FACES_USED.set_function(lambda: status().usage.faces)
    metrics.LICENSE_FACES_LIMIT.set_function(lambda: status().limits.faces)
    metrics.LICENSE_LEASES.labels("extractor").set_function(lambda: status().usage.extractors)
    metrics.LICENSE_LEASES.labels("shard").set_function(lambda: status().usage.shards)
    metrics.LICENSE_LEASE_LIMIT.labels("extractor").set_function(lambda: status().limits.extractors)
    metrics.LICENSE_LEASE_LIMIT.labels("shard").set_function(lambda: status().limits.shards)
    # A video detector's lease counts its cameras against the camera limit, so "camera" is a kind here.
    metrics.LICENSE_LEASES.labels("camera").set_function(lambda: status().usage.cameras)
    metrics.LICENSE_LEASE_LIMIT.labels("camera").set_function(lambda: status().limits.cameras)


def watch_lease(keeper) -> None:
    """A license.client.LeaseKeeper: whether the license lets this component serve, and how long the license
    server has been silent against the grace period it granted."""
    metrics.expose_too(*metrics.LEASE_METRICS)
    metrics.LICENSE_STATE.set_function(lambda: float(keeper.may_serve))
    metrics.LICENSE_SILENT.set_function(keeper.unanswered_s)
    metrics.LICENSE_GRACE.set_function(lambda: keeper.grace_period_s)


class _VideoCollector:
    """A video.service.VideoDetector's cameras and post queue, read at each scrape."""

    def __init__(self, detector) -> None:
        self.detector = detector

    def collect(self):
        runners = list(self.detector.runners.values())
        for key, text in metrics.VIDEO_CAMERA_COUNTERS.items():
            family = CounterMetricFamily(f"findface_video_{key}", text, labels=["camera"])
            for runner in runners:
                family.add_metric([runner.camera.id], getattr(runner.counters, key))
            yield family
        lag = GaugeMetricFamily("findface_video_detection_lag_seconds",
                                "Median time from a live frame to its faces, over the last few hundred",
                                labels=["camera"])
        for runner in runners:
            recent = sorted(runner.counters.lag_s)
            if recent:
                lag.add_metric([runner.camera.id], recent[len(recent) // 2])
        yield lag
        yield GaugeMetricFamily("findface_video_cameras", "Cameras this detector runs", value=len(runners))
        yield GaugeMetricFamily("findface_video_cameras_not_running",
                                "Cameras listed for this detector that it does not run (license, detectors_max)",
                                value=len(self.detector.not_running))
        poster = self.detector.poster
        for key, text in metrics.VIDEO_POST_COUNTERS.items():
            yield CounterMetricFamily(f"findface_video_posts_{key}", text, value=getattr(poster.counters, key))
        yield GaugeMetricFamily("findface_video_post_queue", "Faces waiting to be posted", value=poster.waiting)


_video: list[_VideoCollector] = []


def watch_video(detector) -> None:
    """A video.service.VideoDetector: per camera, its frames, detections, drops, stream errors, tracks and posts,
    and the post queue."""
    while _video:
        REGISTRY.unregister(_video.pop())
    _video.append(_VideoCollector(detector))
    REGISTRY.register(_video[0])
