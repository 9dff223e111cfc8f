"""Video detector benchmark: how fast one camera is processed, and how many real-time cameras this machine keeps up
with, at 1280x720 with one face in view and detection at 5 fps (issue 16, item 6).

Usage: python scripts/bench_video.py [--seconds 20] [--max-cameras 8] [--faces DIR]

Makes a 1280x720 H.264 clip at 25 fps (about 3 Mbit/s: a textured wall with sensor noise, so that nothing is
static, and one person from the labelled photos drifting about the frame), starts a real extractor (scrfd-mbf)
and runs findface-video's pipeline in this process with its posts counted here (the gateway's Identify is not
part of this cost). Then, in the same run:
- baseline: decoding alone (PyAV, every frame, as the detector must for H.264, one in five converted to RGB),
  frames/s; and the same with OpenCV's FFmpeg backend when cv2 can be imported (it is not a dependency: run with
  opencv-python-headless on PYTHONPATH to compare the two bindings);
- a static scene (the same wall and noise, no one) as fast as it goes: what the motion gate leaves of the cost;
- one camera as fast as it goes (the clip as a file: nothing dropped), frames/s of video processed, with
  detection on 5 of every 25 frames;
- N cameras in real time (`file@25:` sources, N = 1, 2, ...): a camera keeps up when it decodes at least 95% of
  its frames on time, detects at least 90% of the frames it samples (the rest are dropped for newer ones), its
  detection lag (frame time -> faces back) has a p90 under 1 s, and the lag of the second half is not more than
  0.25 s above the first half's (no growing lag). The largest N at which every camera keeps up is the answer.
The last two with the extractor as configured by default and again with `extra_detection_passes = false` (one
detector pass a frame: a video extractor's choice, when faces are upright and not tiny).
Prints medians; the machine is shared, so rerun and compare ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import launch  # noqa: E402
from findface_grpc.v1 import extractor_pb2, extractor_pb2_grpc  # noqa: E402
from findface_grpc.video.clients import ExtractorDetector  # noqa: E402
from findface_grpc.video.config import VideoConfig  # noqa: E402
from findface_grpc.video.domain import Camera  # noqa: E402
from findface_grpc.video.server import unique_posts  # noqa: E402
from findface_grpc.video.service import VideoDetector  # noqa: E402
from tests.helpers import faces_dir  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 25


def make_clip(path: Path, photo: bytes, box, seconds: float, with_face: bool = True) -> None:
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1])
    sprite = np.asarray(image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
                        .resize((320, 320)))  # a face of about 160 px
    rng = np.random.default_rng(6)
    wall = np.asarray(Image.fromarray(rng.integers(60, 200, (HEIGHT // 24, WIDTH // 24, 3), dtype=np.uint8))
                      .resize((WIDTH, HEIGHT), Image.BILINEAR)).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 3_000_000
        stream.options = {"preset": "veryfast", "g": str(2 * FPS)}
        for i in range(int(seconds * FPS)):
            frame = np.clip(wall + rng.integers(-5, 6, wall.shape), 0, 255).astype(np.uint8)
            t = i / FPS
            x = int(480 + 300 * np.sin(t / 3))
            y = int(200 + 100 * np.sin(t / 2))
            if with_face:
                frame[y:y + 320, x:x + 320] = sprite
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def decode_pyav(path: Path) -> float:
    """Every frame decoded, one in five converted to RGB (what the detector needs at 5 of 25 fps): frames/s."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, n = time.perf_counter(), 0
        for frame in container.decode(stream):
            if n % 5 == 0:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n / (time.perf_counter() - start)


def decode_opencv(path: Path) -> float | None:
    """The same with OpenCV's FFmpeg backend (grab every frame, retrieve one in five), when cv2 is importable: the
    other binding the issue names, not a dependency."""
    try:
        import cv2
    except ImportError:
        return None
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    start, n = time.perf_counter(), 0
    while capture.grab():
        if n % 5 == 0:
            capture.retrieve()
        n += 1
    capture.release()
    return n / (time.perf_counter() - start)


@dataclass(frozen=True)
class Run:
    elapsed: float  # seconds from the detector's start
    counters: list  # each camera runner's counters
    lags: list[list[float]]  # each camera's detection lags, seconds
    posts: int  # handed over to the (counting) sender
    duplicates: int  # left out by post-uniq


async def run(extractor: str, cameras: list[Camera], cfg: VideoConfig, seconds: float | None) -> Run:
    """findface-video's pipeline in this process over `cameras`, its posts counted here (post-uniq as `cfg` says):
    for `seconds`, or with None until every camera has read its file to the end and every post is handed over."""
    client = ExtractorDetector(extractor, 30, cfg.min_face_size)
    posts = []

    async def send(post) -> None:
        posts.append(post)

    async def listed() -> list[Camera]:
        return cameras

    detector = VideoDetector(cfg, client.detect, send, listed, unique=unique_posts(cfg, client))
    start = time.perf_counter()
    await detector.start(reload_every=False)
    if seconds is None:
        await asyncio.gather(*(r.done.wait() for r in detector.runners.values()))
        await detector.poster.drained(60)
    else:
        await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    counters = [r.counters for r in detector.runners.values()]
    lags = [list(c.lag_s) for c in counters]
    duplicates = detector.poster.counters.duplicates
    await detector.stop()
    await client.close()
    return Run(elapsed, counters, lags, len(posts), duplicates)


def keeps_up(counters, lags, seconds: float) -> tuple[bool, str]:
    expected = seconds * FPS
    decoded = min(c.frames for c in counters) / expected
    detected = min(c.detected / max(1, c.sampled - c.still) for c in counters)
    p90 = max(sorted(lag)[int(0.9 * len(lag))] if lag else 99 for lag in lags)
    growth = max(statistics.median(lag[len(lag) // 2:]) - statistics.median(lag[: len(lag) // 2]) if len(lag) > 4
                 else 99 for lag in lags)
    ok = decoded >= 0.95 and detected >= 0.9 and p90 < 1.0 and growth <= 0.25
    return ok, (f"decoded {decoded:.0%} of frames on time, detected {detected:.0%} of sampled, lag p90 {p90:.2f} s, "
                f"second half vs first {growth:+.2f} s")


def start_extractor(work: Path, extra_passes: bool) -> tuple[launch.ManagedProcess, str]:
    address = f"127.0.0.1:{launch.free_port()}"
    proc = launch.python_server("extractor", "findface_grpc.extractor.server",
                                ["--listen", address, "--model-pack", "scrfd-mbf"],
                                work / f"extractor-{extra_passes}.log",
                                {"FINDFACE_EXTRACTOR_EXTRA_DETECTION_PASSES": str(extra_passes).lower()})
    proc.start()
    launch.wait_grpc_healthy(address, 120, proc)
    return proc, address


def measure(address: str, clip: Path, static: Path, decoding: float, seconds: float, max_cameras: int) -> None:
    cfg = VideoConfig(detect_fps=5.0)
    still = asyncio.run(run(address, [Camera("static", str(static))], cfg, None))
    counters = still.counters
    print(f"  a static scene (the same wall and noise, no one) as fast as it goes: "
          f"{counters[0].frames / still.elapsed:.0f} frames/s, {counters[0].detected} of {counters[0].sampled} "
          "sampled frames detected (the motion gate)")
    rates = []
    for _ in range(3):
        one_run = asyncio.run(run(address, [Camera("file", str(clip))], cfg, None))
        counters = one_run.counters
        rates.append(counters[0].frames / one_run.elapsed)
    one = statistics.median(rates)
    print(f"  one camera as fast as it goes: {one:.0f} frames/s processed (median of 3; {one / FPS:.1f}x real time, "
          f"{one / decoding:.0%} of decoding alone), {counters[0].detected} detections, {counters[0].tracks} track(s)")
    best = 0
    for n in range(1, max_cameras + 1):
        cameras = [Camera(f"cam-{i}", f"file@{FPS}:{clip}") for i in range(n)]
        live = asyncio.run(run(address, cameras, cfg, seconds * 0.95))
        ok, detail = keeps_up(live.counters, live.lags, seconds * 0.95)
        print(f"  {n} real-time camera(s): {'keeps up' if ok else 'falls behind'}: {detail}")
        if not ok:
            break
        best = n
    print(f"  cameras kept up with (1280x720, one face, detection at 5 fps): {best}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the clip and of each real-time run")
    parser.add_argument("--max-cameras", type=int, default=8)
    parser.add_argument("--faces", type=Path, default=faces_dir())
    args = parser.parse_args()
    if args.faces is None:
        sys.exit("the labelled photos are needed: --faces DIR or FINDFACE_TEST_FACES")
    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    for extra_passes in (True, False):
        extractor, address = start_extractor(work, extra_passes)
        try:
            clip = work / "clip.mp4"
            if not clip.exists():
                photo = (args.faces / "deepface/img1.jpg").read_bytes()
                with grpc.insecure_channel(address) as channel:
                    face = extractor_pb2_grpc.ExtractorStub(channel).Detect(
                        extractor_pb2.DetectRequest(image=photo)).faces[0]
                box = (face.bbox.x1, face.bbox.y1, face.bbox.x2, face.bbox.y2)
                make_clip(clip, photo, box, args.seconds)
                make_clip(work / "static.mp4", photo, box, args.seconds, with_face=False)
                print(f"clip: {WIDTH}x{HEIGHT} H.264 at {FPS} fps, {args.seconds:g} s, "
                      f"{clip.stat().st_size * 8 / args.seconds / 1e6:.1f} Mbit/s; detection at 5 fps")
                pyav, opencv = [], []
                for _ in range(3):  # alternated, so that load from elsewhere falls on both alike
                    pyav.append(decode_pyav(clip))
                    opencv.append(decode_opencv(clip))
                decoding = statistics.median(pyav)
                print(f"baseline, decoding alone (PyAV {av.__version__}): {decoding:.0f} frames/s (median of 3)")
                if opencv[0] is not None:
                    print(f"  OpenCV's FFmpeg backend, the same work: {statistics.median(opencv):.0f} frames/s "
                          f"(PyAV / OpenCV {decoding / statistics.median(opencv):.2f})")
            print(f"extractor with extra_detection_passes = {str(extra_passes).lower()}:", flush=True)
            measure(address, clip, work / "static.mp4", decoding, args.seconds, args.max_cameras)
        finally:
            extractor.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
