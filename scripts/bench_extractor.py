"""Extractor benchmark: model-only time vs end-to-end gRPC Extract, and throughput at concurrency 1 and 8.

Usage: python scripts/bench_extractor.py [--packs scrfd-mbf,yunet-sface] [--calls 60] [--faces DIR]

For each pack, in one run on the same photos (the single-face labelled photos of shared/faces):
- model-only: detector + embedder time for one photo's face, models called in-process (no decode, no gRPC);
- end-to-end: one Extract call over gRPC on loopback per photo (decode, detect, align, embed, reply), median;
- faces/s with 1 and 8 concurrent callers.
Prints medians and the ratios that the targets are stated in.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import launch  # noqa: E402
from findface_grpc.extractor.models import packs  # noqa: E402
from findface_grpc.extractor.models.geometry import align_face  # noqa: E402
from findface_grpc.extractor.pipeline import Limits, Pipeline  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import extractor_pb2, extractor_pb2_grpc  # noqa: E402
from tests.helpers import faces_dir, labelled_photos  # noqa: E402


class ModelOnly:
    """The two model wrappers in this process, timed on the same photos as the server."""

    def __init__(self, pack: str, photos: list[bytes]) -> None:
        self.detector, self.embedder, _ = packs.load_pack(
            pack, packs.default_models_dir(), providers=["CPUExecutionProvider"], intra_op_threads=1
        )
        # Model-only is the time inside the two model wrappers, Detector.detect (resize to the model's input,
        # forward pass, anchor decoding, NMS) and Embedder.embed (one crop), on the photo as the pipeline decodes
        # it. End-to-end adds what the service does around them: decoding, selecting, aligning, batching, gRPC and
        # protobuf on both sides.
        pipeline = Pipeline(self.detector, Limits(1 << 30, 1 << 30, 0))
        self.images = [pipeline.decode(p, draft=True)[0] for p in photos]

    def time_one(self, i: int) -> float:
        image = self.images[i % len(self.images)]
        t0 = time.perf_counter()
        detections = self.detector.detect(image)
        t1 = time.perf_counter()
        biggest = max(detections, key=lambda d: (d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1]))
        crop = align_face(image, biggest.landmarks)  # ours, not the model's: not timed
        t2 = time.perf_counter()
        self.embedder.embed(crop[None])
        return (t1 - t0) + (time.perf_counter() - t2)


def throughput(stub, photos: list[bytes], concurrency: int, total: int) -> float:
    def call(i: int) -> int:
        return len(stub.Extract(extractor_pb2.ExtractRequest(image=photos[i % len(photos)])).faces)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        faces = sum(pool.map(call, range(total)))
    return faces / (time.perf_counter() - t0)


def bench_pack(pack: str, photos: list[bytes], calls: int, work: Path) -> dict[str, float]:
    address = f"127.0.0.1:{launch.free_port()}"
    server = launch.python_server(
        f"extractor-{pack}", "findface_grpc.extractor.server", ["--listen", address, "--model-pack", pack],
        work / f"extractor-{pack}.log",
    ).start()
    try:
        models = ModelOnly(pack, photos)
        launch.wait_grpc_healthy(address, 120, server)
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = extractor_pb2_grpc.ExtractorStub(channel)
            for i, p in enumerate(photos[:5]):  # warm-up
                stub.Extract(extractor_pb2.ExtractRequest(image=p))
                models.time_one(i)
            # Alternate the two, photo by photo, so that whatever else the machine does falls on both alike.
            model_times, e2e_times = [], []
            for i in range(calls):
                model_times.append(models.time_one(i))
                t0 = time.perf_counter()
                stub.Extract(extractor_pb2.ExtractRequest(image=photos[i % len(photos)]))
                e2e_times.append(time.perf_counter() - t0)
            fps1 = throughput(stub, photos, 1, calls)
            fps8 = throughput(stub, photos, 8, calls * 2)
            fps1_again = throughput(stub, photos, 1, calls)
    finally:
        server.stop()
    return {
        "model_ms": statistics.median(model_times) * 1000,
        "e2e_ms": statistics.median(e2e_times) * 1000,
        # Concurrency 1 measured before and after concurrency 8; the mean of the two, against drift.
        "fps1": (fps1 + fps1_again) / 2,
        "fps8": fps8,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="scrfd-mbf,yunet-sface")
    parser.add_argument("--calls", type=int, default=60, help="calls per measurement (>= 50)")
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.exit("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES")
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]
    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for pack in args.packs.split(","):
        r = bench_pack(pack, photos, args.calls, work)
        rows.append((pack, r))
    print(f"photos: {len(photos)} single-face photos from {folder}; {args.calls} calls per figure; medians")
    print(f"{'pack':<12} {'model-only ms':>13} {'e2e ms':>8} {'e2e/model':>9} {'faces/s c1':>10} {'faces/s c8':>10} {'c8/c1':>6}")
    for pack, r in rows:
        print(
            f"{pack:<12} {r['model_ms']:>13.1f} {r['e2e_ms']:>8.1f} {r['e2e_ms'] / r['model_ms']:>9.2f} "
            f"{r['fps1']:>10.1f} {r['fps8']:>10.1f} {r['fps8'] / r['fps1']:>6.2f}"
        )
    print("targets: e2e/model <= 1.3 at concurrency 1; faces/s c8 >= 1.6 x c1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
