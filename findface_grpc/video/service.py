"""The video detector: the cameras it runs, kept in step with the gateway's list, and what they share (the
extractor, with a bound on concurrent Detect calls across all cameras, and one poster).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from findface_grpc.video.camera import CameraRunner, Detect
from findface_grpc.video.clients import Rejected, Transient
from findface_grpc.video.config import VideoConfig
from findface_grpc.video.domain import Camera
from findface_grpc.video.posting import Poster, Send
from findface_grpc.video.source import Backoff

log = logging.getLogger(__name__)

ListCameras = Callable[[], Awaitable[list[Camera]]]


class VideoDetector:
    def __init__(self, cfg: VideoConfig, detect: Detect, send: Send, list_cameras: ListCameras) -> None:
        self.cfg = cfg
        self._detect = detect
        self._list_cameras = list_cameras
        self.poster = Poster(send, cfg.post_queue, Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s))
        self.runners: dict[str, CameraRunner] = {}
        self._detect_slots: asyncio.Semaphore | None = None
        self._reload_task: asyncio.Task | None = None

    async def start(self, reload_every: bool = True) -> None:
        """Start posting and the cameras listed now; with `reload_every`, reload the list every reload_timeout_s."""
        self._detect_slots = asyncio.Semaphore(self.cfg.detect_in_flight)
        self.poster.start()
        await self.reload()
        if reload_every:
            self._reload_task = asyncio.create_task(self._reload_loop(), name="video-reload")

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reload_timeout_s)
            await self.reload()

    async def reload(self) -> None:
        """Start new cameras, stop removed ones, restart changed ones (url, rot or roi). A failed listing keeps
        the cameras running as they are."""
        try:
            cameras = await self._list_cameras()
        except (Transient, Rejected) as exc:
            log.warning("camera list not reloaded: %s", exc)
            return
        if len(cameras) > self.cfg.detectors_max:
            log.warning("%d cameras for detector %r, running the first %d (detectors_max)", len(cameras),
                        self.cfg.name, self.cfg.detectors_max)
            cameras = cameras[: self.cfg.detectors_max]
        wanted = {c.id: c for c in cameras}
        for camera_id, runner in list(self.runners.items()):
            if wanted.get(camera_id) != runner.camera:
                del self.runners[camera_id]
                log.info("camera %s: stopping (%s)", camera_id, "changed" if camera_id in wanted else "removed")
                await runner.stop()
        for camera_id, camera in wanted.items():
            if camera_id not in self.runners:
                runner = CameraRunner(camera, self.cfg, self._detect, self._detect_slots, self.poster.put)
                self.runners[camera_id] = runner
                log.info("camera %s: starting", camera_id)
                runner.start()

    async def stop(self, drain_s: float = 5.0) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
        await self.poster.drained(drain_s)
        await self.poster.stop()
