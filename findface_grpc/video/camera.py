"""One camera: its reader thread feeds frames to a task on the event loop that detects faces (sharing the
extractor with every other camera), tracks them, picks the snapshots to post and hands them to the poster.
"""
from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable

from PIL import Image

from findface_grpc.extractor.quality import pose_error
from findface_grpc.video.clients import Rejected, Transient
from findface_grpc.video.config import VideoConfig
from findface_grpc.video.domain import Camera, Counters, Face, Frame, Snapshot, long_side, scaled, short_side
from findface_grpc.video.posting import Post
from findface_grpc.video.selection import OfflineSelector, RealtimeSelector
from findface_grpc.video.source import DONE, END, Backoff, FrameSlot, StreamReader, parse_source
from findface_grpc.video.tracker import Track, Tracker

log = logging.getLogger(__name__)

LAG_SAMPLES = 500

Detect = Callable[[Frame], Awaitable[list[Face]]]


class CameraRunner:
    def __init__(self, camera: Camera, cfg: VideoConfig, detect: Detect, detect_slots: asyncio.Semaphore,
                 post: Callable[[Post], None]) -> None:
        self.camera = camera
        self.cfg = cfg
        self._detect = detect
        self._detect_slots = detect_slots
        self._post = post
        self.counters = Counters()
        self.tracker = Tracker(cfg.track_timeout_s, cfg.max_persons)
        self.selector = (RealtimeSelector(cfg.min_quality, cfg.rt_score_step, cfg.rt_delay_s, cfg.rt_refresh_s)
                         if cfg.realtime else OfflineSelector(cfg.min_quality))
        self.reader: StreamReader | None = None
        self.task: asyncio.Task | None = None
        self.done = asyncio.Event()  # a file that was read to its end, every post of it handed to the poster
        self.error = ""  # why it never started: a url that is no source it reads

    def start(self) -> None:
        try:
            source = parse_source(self.camera.url)
        except ValueError as exc:
            self.error = str(exc)
            log.error("camera %s: %s", self.camera.id, exc)
            self.counters.stream_errors += 1
            self.done.set()
            return
        slot = FrameSlot(asyncio.get_running_loop(), blocking=not source.live,
                         waiting=self.cfg.waiting_frames if self.cfg.disable_drops else 1)
        self.reader = StreamReader(
            self.camera, source, slot, self.counters, detect_fps=self.cfg.detect_fps,
            md_threshold=self.cfg.md_threshold, md_scale=self.cfg.md_scale, jpeg_quality=self.cfg.jpeg_quality,
            ffmpeg_options=self.cfg.ffmpeg_options, read_timeout_s=self.cfg.read_timeout_s,
            backoff=Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s),
            tracking=lambda: self.tracker.active,
        )
        self.task = asyncio.create_task(self._run(slot, source.live), name=f"camera-{self.camera.id}")
        self.reader.start()

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.stop()
            await asyncio.to_thread(self.reader.join, self.cfg.read_timeout_s + 5)
        if self.task is not None:
            # The reader's DONE ends the task after the frame in hand, posting what the open tracks hold.
            try:
                await asyncio.wait_for(self.task, self.cfg.req_timeout_s)
            except asyncio.TimeoutError:
                pass

    async def _run(self, slot: FrameSlot, live: bool) -> None:
        failures = 0
        while True:
            item = await slot.get()
            if item is END or item is DONE:
                self._end(self.tracker.end_all())
                if item is DONE:
                    self.done.set()
                    return
                continue
            frame: Frame = item
            try:
                async with self._detect_slots:
                    faces = await self._detect(frame)
            except (Transient, Rejected) as exc:
                self.counters.detect_errors += 1
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.warning("camera %s: detection failed (%d in a row): %s", self.camera.id, failures, exc)
                continue
            failures = 0
            self.counters.detected += 1
            if live:  # a file's frame times are its own timestamps, not when the frame came
                self.counters.lag_s.append(time.time() - frame.time)
                del self.counters.lag_s[:-LAG_SAMPLES]
            try:
                self.track(frame, faces)
            except Exception:  # one odd frame must not end the camera: its task is all that reads its frames
                log.exception("camera %s: a frame's faces could not be tracked", self.camera.id)

    def track(self, frame: Frame, faces: list[Face]) -> None:
        update = self.tracker.update(frame.time, faces)
        self._end(update.ended)
        for track, face in update.faces:
            if track.hits == 1:
                self.counters.tracks += 1
            if self._postable(face):
                self._hand_over(self.selector.offer(track.id, face.quality, frame.time,
                                                    lambda t=track, f=face: self.snapshot(frame, t, f)))

    def _end(self, tracks: list[Track]) -> None:
        for track in tracks:
            self._hand_over(self.selector.end(track.id))

    def _hand_over(self, snapshots: list[Snapshot]) -> None:
        for snapshot in snapshots:
            self.counters.posts += 1
            self._post(Post(self.camera.id, snapshot))

    def _postable(self, face: Face) -> bool:
        cfg = self.cfg
        if short_side(face.box) < cfg.min_face_size:
            return False
        if cfg.max_face_size and long_side(face.box) > cfg.max_face_size:
            return False
        if cfg.max_pose_error and pose_error(face.landmarks) > cfg.max_pose_error:
            return False
        return self.camera.roi is None or self.camera.roi.holds_centre(face.box)

    def snapshot(self, frame: Frame, track: Track, face: Face) -> Snapshot:
        """The face's surroundings cut from the frame (the gateway detects the face again in it), as JPEG."""
        dx, dy = frame.offset
        local = (face.box[0] - dx, face.box[1] - dy, face.box[2] - dx, face.box[3] - dy)
        height, width = frame.image.shape[:2]
        x1, y1, x2, y2 = scaled(local, self.cfg.bbox_scale, width, height)
        out = io.BytesIO()
        Image.fromarray(frame.image[y1:y2, x1:x2]).save(out, "JPEG", quality=self.cfg.jpeg_quality)
        photo_box = (local[0] - x1, local[1] - y1, local[2] - x1, local[3] - y1)
        return Snapshot(track.id, frame.time, face.box, face.quality, out.getvalue(), photo_box)
