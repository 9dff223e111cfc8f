"""The video detector: the cameras it runs, kept in step with the gateway's list and with its license, and what
they share (the extractor, with a bound on concurrent Detect calls across all cameras, and one poster).

Which listed cameras run: those already running first (a camera added later never displaces one), then in the
gateway's order, at most detectors_max; and with a license server, only as many as the detector's lease holds
(the license's camera limit is shared by every detector; a recording read to its end holds no slot). A refused license, or a license server unreachable
past the grace period, stops every camera until the lease is good again. Each camera's state, and why it does
not run, is reported to the gateway (its status in the camera API) at every reload and whenever it changes.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from findface_grpc.errors import FindFaceError
from findface_grpc.video.camera import CameraRunner, Detect
from findface_grpc.video.clients import Rejected, Transient
from findface_grpc.video.config import VideoConfig
from findface_grpc.video.domain import Camera, CameraReport
from findface_grpc.video.posting import Poster, Send, UniquePosts
from findface_grpc.video.source import Backoff

log = logging.getLogger(__name__)

ListCameras = Callable[[], Awaitable[list[Camera]]]
Report = Callable[[list[CameraReport]], Awaitable[int]]
STOPPED = "the detector stopped"
ENDED = "its recording was read to the end"


def _runner_report(runner: CameraRunner) -> CameraReport:
    if runner.done.is_set():  # a recording read to its end, or a url it cannot read: it will not run again
        return CameraReport(runner.camera.id, False, runner.error or ENDED)
    return CameraReport(runner.camera.id, True)


class CameraLicense(Protocol):
    """What the detector needs of its lease (license.client.LeaseKeeper)."""

    async def want(self, cameras: int) -> int: ...

    def refusal(self) -> FindFaceError | None: ...

    def watch(self, callback: Callable[[bool], Awaitable[None] | None]) -> None: ...


class VideoDetector:
    def __init__(self, cfg: VideoConfig, detect: Detect, send: Send, list_cameras: ListCameras,
                 license: CameraLicense | None = None, report: Report | None = None,
                 unique: UniquePosts | None = None) -> None:
        self.cfg = cfg
        self._detect = detect
        self._list_cameras = list_cameras
        self._license = license
        self._report = report
        self.poster = Poster(send, cfg.post_queue, Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s), unique)
        self.runners: dict[str, CameraRunner] = {}
        self.not_running: dict[str, str] = {}  # camera id -> why the detector does not run it
        self._listed: list[Camera] = []
        self._detect_slots: asyncio.Semaphore | None = None
        self._reload_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def start(self, reload_every: bool = True) -> None:
        """Start posting and the cameras listed now; with `reload_every`, reload the list every reload_timeout_s
        (only once with single_pass) and follow the license."""
        self._detect_slots = asyncio.Semaphore(self.cfg.detect_in_flight)
        self.poster.start()
        if self._license is not None:
            self._license.watch(lambda serving: self._wake.set())
        await self.reload()
        if reload_every:
            self._reload_task = asyncio.create_task(self._reload_loop(), name="video-reload")

    async def _reload_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.reload_timeout_s)
                woken = True
            except asyncio.TimeoutError:
                woken = False
            self._wake.clear()
            try:
                if woken or self.cfg.single_pass:
                    await self.apply()
                else:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the cameras must outlive one failed reload; the next one retries
                log.exception("camera reload failed")

    async def reload(self) -> None:
        """List the cameras again and apply the list. A failed listing keeps the cameras as they are."""
        try:
            self._listed = await self._list_cameras()
        except (Transient, Rejected) as exc:
            log.warning("camera list not reloaded: %s", exc)
        await self.apply()

    def _ended(self, camera: Camera) -> bool:
        runner = self.runners.get(camera.id)
        return runner is not None and runner.camera == camera and runner.done.is_set()

    def _choose(self, licensed: int | None, license_reason: str) -> tuple[list[Camera], dict[str, str]]:
        """The cameras to run and why the others do not. A camera whose recording ended stays as it is (it is not
        read again) and holds no license slot: `licensed` counts the others."""
        ordered = sorted(self._listed, key=lambda c: c.id not in self.runners)
        chosen, left_out = ordered[: self.cfg.detectors_max], ordered[self.cfg.detectors_max:]
        reasons = {c.id: f"over this detector's detectors_max ({self.cfg.detectors_max} cameras)" for c in left_out}
        if licensed is not None:
            active = [c for c in chosen if not self._ended(c)]
            reasons.update((c.id, license_reason) for c in active[licensed:])
            chosen = [c for c in chosen if c.id not in reasons]
        return chosen, reasons

    async def _licensed(self, wanted: int) -> tuple[int | None, str]:
        """How many cameras the license lets this detector run now (None: no license server), and why not more."""
        if self._license is None:
            return None, ""
        granted = await self._license.want(wanted)
        refusal = self._license.refusal()
        if refusal is not None:
            return 0, refusal.message
        return granted, (f"over the license's camera limit: this detector's lease holds {granted} of the {wanted} "
                         f"camera(s) it would run; the limit is shared by every video detector")

    async def apply(self) -> None:
        """Start and stop cameras so that the chosen ones run (a changed url, rot or roi restarts one), then report
        every listed camera's state to the gateway."""
        async with self._lock:
            wanted_count = sum(not self._ended(c) for c in self._choose(None, "")[0])
            licensed, why = await self._licensed(wanted_count)
            chosen, reasons = self._choose(licensed, why)
            wanted = {c.id: c for c in chosen}
            for camera_id, runner in list(self.runners.items()):
                if wanted.get(camera_id) != runner.camera:
                    del self.runners[camera_id]
                    cause = reasons.get(camera_id, "changed" if camera_id in wanted else "removed")
                    log.info("camera %s: stopping (%s)", camera_id, cause)
                    await runner.stop()
            for camera_id, camera in wanted.items():
                if camera_id not in self.runners:
                    runner = CameraRunner(camera, self.cfg, self._detect, self._detect_slots, self.poster.put)
                    self.runners[camera_id] = runner
                    log.info("camera %s: starting", camera_id)
                    runner.start()
            for camera_id, reason in reasons.items():
                if self.not_running.get(camera_id) != reason:
                    log.warning("camera %s: not running: %s", camera_id, reason)
            self.not_running = reasons
            await self._send_report([_runner_report(r) for r in self.runners.values()]
                                    + [CameraReport(c, False, r) for c, r in reasons.items()])

    async def _send_report(self, reports: list[CameraReport]) -> None:
        if self._report is None or not reports:
            return
        try:
            await self._report(reports)
        except (Transient, Rejected) as exc:
            log.warning("camera states not reported to the gateway: %s", exc)

    async def stop(self, drain_s: float = 5.0) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
        async with self._lock:
            running = list(self.runners)
            await asyncio.gather(*(r.stop() for r in self.runners.values()))
            await self.poster.drained(drain_s)
            await self.poster.stop()
            await self._send_report([CameraReport(c, False, STOPPED) for c in running])
