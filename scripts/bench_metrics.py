"""What the metrics cost: identify with every server's /metrics on and off, in one run.

Usage: python scripts/bench_metrics.py [--calls 200] [--shards 2] [--enroll 40] [--scrape-interval 2]
                                       [--faces DIR] [--model-pack scrfd-mbf]

Starts two clusters with the launcher on free ports in temporary folders, the same but for metrics_base_port: one
serves every server's /metrics (and so records the per-call metrics of its interceptors), the other none. A
thread scrapes every /metrics of the first every `--scrape-interval` seconds, as Prometheus would (more often than
its 15 s default). Both get the same `--enroll` labelled photos; then identify by photo is timed `--calls` times on
each, one call on each per round with the same photo, alternating which goes first, so both see the same load
(the machine is shared). Prints p50/p90 of each, the ratio of the p50s and the median of the per-round ratios.
Target: p50 with metrics within 1.05x of without.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import auth  # noqa: E402
from findface_grpc.cluster import Cluster  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402
from tests.helpers import bench_cluster_config, faces_dir, labelled_photos, with_token  # noqa: E402

WARMUP = 10


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


class Side:
    """One cluster, its gateway stub with a token, and its enrolled faces."""

    def __init__(self, name: str, cluster: Cluster) -> None:
        self.name = name
        self.cluster = cluster
        self.times: list[float] = []
        self.channel = None
        self.stub = None

    def start(self, photos: list[bytes]) -> None:
        t0 = time.perf_counter()
        addresses = self.cluster.start()
        mongo = f"mongodb://{addresses['mongodb'].split('//', 1)[1]}"
        client, store = auth.open_store(auth.gateway_mongo(mongo_uri=mongo))
        token = store.create(f"bench-metrics-{self.name.replace(' ', '-')}")
        client.close()
        self.channel = with_token(grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS), token)
        self.stub = gateway_pb2_grpc.FaceServiceStub(self.channel)
        for data in photos:
            self.stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data)), timeout=60)
        print(f"  {self.name}: up and {len(photos)} photos enrolled in {time.perf_counter() - t0:.1f} s; "
              f"/metrics: {len(self.cluster.metrics)}", flush=True)

    def identify(self, data: bytes, record: bool) -> None:
        request = gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=data), n=1)
        started = time.perf_counter()
        self.stub.Identify(request, timeout=60)
        if record:
            self.times.append(time.perf_counter() - started)

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.cluster.stop()


def scrape_loop(urls: list[str], interval: float, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(interval):
        for url in urls:
            with urllib.request.urlopen(url, timeout=10) as reply:
                reply.read()
            counts[0] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed identifies on each cluster (default 200)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--enroll", type=int, default=40, help="labelled photos enrolled in each (default 40)")
    parser.add_argument("--scrape-interval", type=float, default=2.0)
    parser.add_argument("--model-pack", default="scrfd-mbf")
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as work:
        on_cfg = bench_cluster_config(str(Path(work) / "on"), args.shards, args.model_pack)
        off_cfg = dataclasses.replace(bench_cluster_config(str(Path(work) / "off"), args.shards, args.model_pack),
                                      metrics_base_port=0)
        on, off = Side("metrics on", Cluster(on_cfg)), Side("metrics off", Cluster(off_cfg))
        stop = threading.Event()
        scrapes = [0]
        try:
            print(f"starting two {args.shards}-shard clusters ({args.model_pack}) in {work} ...", flush=True)
            for side in (on, off):
                side.start(photos[: args.enroll])
            scraper = threading.Thread(target=scrape_loop, daemon=True,
                                       args=(list(on.cluster.metrics.values()), args.scrape_interval, stop, scrapes))
            scraper.start()
            for i in range(WARMUP + args.calls):
                data = photos[i % len(photos)]
                for side in ((on, off) if i % 2 else (off, on)):
                    side.identify(data, i >= WARMUP)
            stop.set()
        finally:
            stop.set()
            for side in (on, off):
                side.stop()

    print(f"\nidentify by photo, {args.calls} calls each, {args.shards} shards, {args.enroll} faces enrolled, "
          f"{scrapes[0]} scrapes of the {len(on.cluster.metrics) or 'metrics'} /metrics every "
          f"{args.scrape_interval:g} s")
    for side in (on, off):
        print(f"  {side.name:12s} p50 {ms(side.times, 50):7.1f} ms   p90 {ms(side.times, 90):7.1f} ms")
    ratio = ms(on.times, 50) / ms(off.times, 50)
    per_round = statistics.median(a / b for a, b in zip(on.times, off.times))
    print(f"  p50 on / off: {ratio:.3f}x   median per-round ratio: {per_round:.3f}x   (target <= 1.05x)")
    return 0 if ratio <= 1.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
