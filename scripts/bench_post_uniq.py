"""What post-uniq costs findface-video: the same camera with it off (the baseline) and on, in one run.

Usage: python scripts/bench_post_uniq.py [--seconds 20] [--runs 3] [--faces DIR]

Makes bench_video.py's 1280x720 clip (one person drifting about the frame, 25 fps), starts a real extractor
(scrfd-mbf) and runs findface-video's pipeline in this process, as fast as it goes, in real-time mode with
rt_refresh_s = 0.5 (so that the one person is posted about twice a second), posts counted here. With post-uniq on,
uc_max_avg_shift is larger than the frame, so every post is compared: each needs a descriptor from the extractor
(Extract), which competes with detection for its CPU. Prints, per mode, the frames/s processed (median of the
runs, the modes alternated so that load from elsewhere falls on both alike), the posts handed over and those
left out as duplicates.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_video import make_clip, run, start_extractor  # noqa: E402

from findface_grpc.v1 import extractor_pb2, extractor_pb2_grpc  # noqa: E402
from findface_grpc.video.config import VideoConfig  # noqa: E402
from findface_grpc.video.domain import Camera  # noqa: E402
from tests.helpers import faces_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the clip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faces", type=Path, default=faces_dir())
    args = parser.parse_args()
    if args.faces is None:
        sys.exit("the labelled photos are needed: --faces DIR or FINDFACE_TEST_FACES")
    work = Path(tempfile.mkdtemp(prefix="bench-post-uniq-"))
    extractor, address = start_extractor(work, True)
    try:
        photo = (args.faces / "deepface/img1.jpg").read_bytes()
        with grpc.insecure_channel(address) as channel:
            face = extractor_pb2_grpc.ExtractorStub(channel).Detect(extractor_pb2.DetectRequest(image=photo)).faces[0]
        clip = work / "clip.mp4"
        make_clip(clip, photo, (face.bbox.x1, face.bbox.y1, face.bbox.x2, face.bbox.y2), args.seconds)
        base = VideoConfig(realtime=True, min_quality=0.2, rt_refresh_s=0.5)
        modes = {"post-uniq off (baseline)": base,
                 "post-uniq on": replace(base, post_uniq=True, uc_max_dup=3, uc_max_time_diff_s=5.0,
                                         uc_max_avg_shift=5000.0)}
        # (frames/s processed, posts sent, posts left out as duplicates) of each run, per mode
        results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in modes}
        for _ in range(args.runs):
            for name, cfg in modes.items():
                done = asyncio.run(run(address, [Camera("file", str(clip))], cfg, None))
                results[name].append((done.counters[0].frames / done.elapsed, done.posts, done.duplicates))
        print(f"clip: 1280x720 at 25 fps, {args.seconds:g} s, one person; real-time mode, rt_refresh_s 0.5")
        baseline = statistics.median(r[0] for r in results["post-uniq off (baseline)"])
        for name, runs in results.items():
            rate = statistics.median(r[0] for r in runs)
            print(f"  {name}: {rate:.0f} frames/s (median of {args.runs}, {rate / baseline:.2f}x the baseline), "
                  f"posts sent {[r[1] for r in runs]}, left out as duplicates {[r[2] for r in runs]}")
    finally:
        extractor.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
