"""Reading one camera's stream with FFmpeg (PyAV) on a thread of its own: decode, sample at detect_fps, gate on
motion, cut the region of tracking and encode it for detection, and hand frames over through a FrameSlot.

Sources, as the original's: network streams (rtsp://, http(s):// for MJPEG or HLS playlists, ...), files read as
fast as detection takes them (a path or file://; nothing dropped, frame times from the file's own timestamps),
and `file@FPS:PATH`, a recording (a path, or a URL such as an HLS playlist) played in real time at FPS frames a
second like a live camera. A live stream that fails or ends is reopened with backoff; a recording ends the
camera when it ends (and is reopened when it fails). Damaged packets are skipped and counted; a stream with too
many in a row is reopened. No FFmpeg error reaches past this module.
"""
from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np
from PIL import Image

from findface_grpc.video.domain import Camera, Counters, Frame, Region
from findface_grpc.video.motion import MotionGate

log = logging.getLogger(__name__)

END = "end"  # put in the slot when the stream ends or fails: tracks of the frames before it are over
DONE = "done"  # put in the slot when the reader stops for good (a file read to its end, or stop())
# Packets in a row that fail to decode before the stream is given up and reopened.
MAX_BAD_PACKETS = 100
# A stream that ran this long before failing is reopened after the shortest wait again.
HEALTHY_RUN_S = 10.0


def redact(url: str) -> str:
    """The URL without its user and password, for logs: camera URLs may carry credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port else "")))


def describe(exc: BaseException) -> str:
    """What went wrong, without the exception's text: FFmpeg's errors carry the url, credentials and all."""
    reason = getattr(exc, "strerror", None)
    return f"{type(exc).__name__} ({reason})" if reason else type(exc).__name__


@dataclass(frozen=True)
class Source:
    url: str
    live: bool  # frame times from the clock; frames detection has no time for are dropped
    recording: bool  # ends the camera when it ends (a live stream that ends is reopened)
    pace_fps: float = 0.0  # file@FPS: play in real time at this rate


def parse_source(url: str) -> Source:
    if url.startswith("file@"):
        rate, sep, path = url[len("file@"):].partition(":")
        try:
            fps = float(rate)
        except ValueError:
            fps = 0.0
        if not sep or not path or fps <= 0:
            # Not the url itself in the message: it may hold credentials.
            raise ValueError(f"file@FPS:PATH needs a positive FPS and a path (FPS given: {rate!r})")
        return Source(path, live=True, recording=True, pace_fps=fps)
    if url.startswith("file://"):
        return Source(url[len("file://"):], live=False, recording=True)
    if "://" not in url:
        return Source(url, live=False, recording=True)
    return Source(url, live=True, recording=False)


class FrameSlot:
    """Hands frames from a reader thread to the camera's task on the event loop. A live source's frames wait up
    to `waiting` at a time (1 by default: a new frame replaces the one still waiting, detection being behind);
    past that the oldest is dropped. A file's reader waits instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, blocking: bool, waiting: int = 1) -> None:
        self._loop = loop
        self._blocking = blocking
        self._waiting = waiting
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._ready = asyncio.Event()

    def put(self, item, stop: threading.Event) -> bool:
        """Queue a Frame or END; True when a waiting frame was dropped for it."""
        dropped = False
        with self._cond:
            if isinstance(item, Frame):
                if self._blocking:
                    while any(isinstance(i, Frame) for i in self._items) and not stop.is_set():
                        self._cond.wait(0.2)
                elif sum(isinstance(i, Frame) for i in self._items) >= self._waiting:
                    oldest = next(i for i in self._items if isinstance(i, Frame))
                    self._items.remove(oldest)
                    dropped = True
            self._items.append(item)
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop has closed: the detector is gone and no one reads this slot
            pass
        return dropped

    async def get(self):
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                self._ready.clear()
            await self._ready.wait()


class Backoff:
    """Waits between tries: `first`, doubling on each failure up to `most`, back to `first` after a success."""

    def __init__(self, first: float, most: float) -> None:
        self.first, self.most = first, most
        self.next = first

    def failed(self) -> float:
        wait, self.next = self.next, min(self.next * 2, self.most)
        return wait

    def reset(self) -> None:
        self.next = self.first


class FrameClock:
    """Each frame's time, in unix seconds: the wall clock for a live stream; for a recording played in real time,
    when it is due (the reader waits for it); for a file read as fast as it goes, the time of opening plus the
    frame's own timestamp (or, without one, its index at the stream's nominal rate)."""

    def __init__(self, source: Source, nominal_rate: float) -> None:
        self.source = source
        self.nominal_rate = nominal_rate
        self.opened = time.time()
        self.index = 0
        self.first_pts: float | None = None

    def time_of(self, frame) -> float:
        index, self.index = self.index, self.index + 1
        if self.source.pace_fps:
            return self.opened + index / self.source.pace_fps
        if self.source.live:
            return time.time()
        pts = frame.time if frame.time is not None else index / self.nominal_rate
        if self.first_pts is None:
            self.first_pts = pts
        return self.opened + pts - self.first_pts


class StreamReader:
    """One camera's reader thread. `stop()` ends it within about read_timeout_s."""

    def __init__(self, camera: Camera, source: Source, slot: FrameSlot, counters: Counters, *, detect_fps: float,
                 md_threshold: float, md_scale: float, jpeg_quality: int, ffmpeg_options: dict[str, str],
                 read_timeout_s: float, backoff: Backoff, tracking: Callable[[], bool]) -> None:
        self.camera = camera
        self.source = source
        self.slot = slot
        self.counters = counters
        self.interval = 1.0 / detect_fps
        self.gate = MotionGate(md_threshold)
        self.md_scale = md_scale
        self.jpeg_quality = jpeg_quality
        self.options = ffmpeg_options
        self.read_timeout_s = read_timeout_s
        self.backoff = backoff
        # Whether the camera follows a face now: then every sampled frame is detected, moving or not, so that a
        # face standing still is not lost.
        self.tracking = tracking
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"video-{camera.id[:8]}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                ended = self._read_once()
                self.slot.put(END, self._stop)
                if self._stop.is_set() or (ended and self.source.recording):
                    return
                if time.monotonic() - started > HEALTHY_RUN_S:
                    self.backoff.reset()
                wait = self.backoff.failed()
                log.info("camera %s: reopening %s in %.1fs", self.camera.id, redact(self.source.url), wait)
                self.counters.reopens += 1
                self._stop.wait(wait)
        finally:
            self.slot.put(DONE, self._stop)

    def _read_once(self) -> bool:
        """Read the stream until it ends (True) or fails (False)."""
        try:
            container = av.open(self.source.url, options=self.options,
                                timeout=(self.read_timeout_s, self.read_timeout_s))
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.counters.stream_errors += 1
            log.warning("camera %s: cannot open %s: %s", self.camera.id, redact(self.source.url), describe(exc))
            return False
        try:
            if not container.streams.video:
                self.counters.stream_errors += 1
                log.warning("camera %s: %s has no video stream", self.camera.id, redact(self.source.url))
                return False
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return self._decode(container, stream)
        except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
            self.counters.stream_errors += 1
            log.warning("camera %s: %s failed: %s", self.camera.id, redact(self.source.url), describe(exc))
            return False
        except Exception:  # a stream no one foresaw must cost a reopen, never the camera's thread
            self.counters.stream_errors += 1
            log.exception("camera %s: reading %s failed unexpectedly", self.camera.id, redact(self.source.url))
            return False
        finally:
            container.close()

    def _decode(self, container, stream) -> bool:
        clock = FrameClock(self.source, float(stream.guessed_rate or 25))
        next_due = float("-inf")
        bad = 0
        for packet in container.demux(stream):
            if self._stop.is_set():
                return False
            try:
                frames = packet.decode()
            except av.FFmpegError:
                bad += 1
                self.counters.stream_errors += 1
                if bad >= MAX_BAD_PACKETS:
                    log.warning("camera %s: %d packets in a row could not be decoded", self.camera.id, bad)
                    return False
                continue
            bad = 0
            for frame in frames:
                self.counters.frames += 1
                now = clock.time_of(frame)
                if self.source.pace_fps and now > time.time() and self._stop.wait(now - time.time()):
                    return False
                if now >= next_due:
                    next_due = now + self.interval if next_due == float("-inf") else max(next_due + self.interval, now)
                    self._sample(frame, now)
        return True

    def _sample(self, frame, now: float) -> None:
        self.counters.sampled += 1
        width, height = frame.width, frame.height
        rot = self.camera.rot.clip(width, height) if self.camera.rot else Region(0, 0, width, height)
        if rot is None:  # the region of tracking lies outside this stream's frames
            self.counters.still += 1
            return
        small_w, small_h = max(8, round(width * self.md_scale)), max(8, round(height * self.md_scale))
        sx, sy = small_w / width, small_h / height
        x1, y1 = int(rot.x * sx), int(rot.y * sy)
        x2, y2 = max(x1 + 1, round((rot.x + rot.width) * sx)), max(y1 + 1, round((rot.y + rot.height) * sy))
        grey = frame.to_ndarray(format="gray", width=small_w, height=small_h)[y1:y2, x1:x2]
        if not self.gate.moved(grey) and not self.tracking():
            self.counters.still += 1
            return
        rgb = frame.to_ndarray(format="rgb24")
        image = np.ascontiguousarray(rgb[rot.y: rot.y + rot.height, rot.x: rot.x + rot.width])
        out = io.BytesIO()
        Image.fromarray(image).save(out, "JPEG", quality=self.jpeg_quality)
        if self.slot.put(Frame(self.camera.id, now, image, (rot.x, rot.y), out.getvalue()), self._stop):
            self.counters.dropped += 1
