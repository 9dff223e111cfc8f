"""HTTP gateway overhead: the same identify over HTTP (legacy API) and over gRPC (FaceService), in one run.

Usage: python scripts/bench_http.py [--calls 200] [--shards 2] [--faces DIR] [--model-pack scrfd-mbf]

Starts a whole cluster with the launcher (findface_grpc.cluster, which also starts the HTTP gateway) on free
ports in a temporary folder, creates a token, enrolls the labelled photos, then times identify by photo (upload,
n=1, default threshold) `--calls` times each way, one HTTP call and one gRPC call per round with the same photo,
alternating which goes first. Both clients keep one connection open and have their requests built beforehand, so
the times are the server side's plus loopback. Prints p50/p90 of each, the difference of the p50s, and the median
of the per-round differences (the steadier figure: both calls of a round see the same photo and a similar load).
Then the same for GetFace (GET /v1/face/id/<id>), a call with almost no work behind it, which shows the fixed
cost of the HTTP layer apart from moving the photo. Target: HTTP adds at most 5 ms.
"""
from __future__ import annotations

import argparse
import http.client
import logging
import statistics
import sys
import tempfile
import time
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
from tests.http.harness import multipart  # noqa: E402

WARMUP = 10


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls each way (default 200)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--model-pack", default="scrfd-mbf")
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]

    with tempfile.TemporaryDirectory(prefix="bench-http-") as work:
        cfg = bench_cluster_config(work, args.shards, args.model_pack)
        cluster = Cluster(cfg)
        try:
            print(f"starting a {args.shards}-shard cluster ({args.model_pack}) in {work} ...", flush=True)
            t0 = time.perf_counter()
            addresses = cluster.start()
            print(f"  up in {time.perf_counter() - t0:.1f} s: {addresses}")
            mongo = f"mongodb://{addresses['mongodb'].split('//', 1)[1]}" if "mongodb" in addresses else cfg.mongo_uri
            client, store = auth.open_store(auth.gateway_mongo(mongo_uri=mongo))
            token = store.create("bench-http")
            client.close()
            channel = with_token(grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS), token)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            ids = []
            for data in photos:
                reply = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data)),
                                        timeout=60)
                ids.append(reply.faces[0].id)
            print(f"  enrolled {len(photos)} photos")

            host, _, port = addresses["http"].removeprefix("http://").rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            bodies = [multipart({}, {"photo": ("photo.jpg", data)}) for data in photos]
            grpc_requests = [gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=data)) for data in photos]

            def over_http(i: int) -> float:
                body, content_type = bodies[i % len(bodies)]
                t = time.perf_counter()
                conn.request("POST", "/v1/identify", body=body,
                             headers={"Content-Type": content_type, "Authorization": f"Token {token}"})
                reply = conn.getresponse()
                reply.read()
                elapsed = time.perf_counter() - t
                if reply.status != 200:
                    raise RuntimeError(f"HTTP identify answered {reply.status}")
                return elapsed

            def over_grpc(i: int) -> float:
                t = time.perf_counter()
                stub.Identify(grpc_requests[i % len(grpc_requests)], timeout=60)
                return time.perf_counter() - t

            def get_http(i: int) -> float:
                t = time.perf_counter()
                conn.request("GET", f"/v1/face/id/{ids[i % len(ids)]}", headers={"Authorization": f"Token {token}"})
                reply = conn.getresponse()
                reply.read()
                elapsed = time.perf_counter() - t
                if reply.status != 200:
                    raise RuntimeError(f"HTTP get answered {reply.status}")
                return elapsed

            def get_grpc(i: int) -> float:
                t = time.perf_counter()
                stub.GetFace(gateway_pb2.GetFaceRequest(id=ids[i % len(ids)]), timeout=60)
                return time.perf_counter() - t

            http_times, grpc_times = rounds(over_http, over_grpc, args.calls)
            http_get, grpc_get = rounds(get_http, get_grpc, args.calls)
            conn.close()
            channel.close()
        finally:
            cluster.stop()

    print(f"\n{args.calls} calls each way, {len(photos)} photos (median {statistics.median(map(len, photos)) / 1e3:.0f} KB) "
          f"in rotation:")
    report("identify by photo (upload), n=1", "gRPC FaceService.Identify", "HTTP POST /v1/identify",
           grpc_times, http_times)
    report("get a face", "gRPC FaceService.GetFace", "HTTP GET /v1/face/id/<id>", grpc_get, http_get)
    return 0


def rounds(http_call, grpc_call, calls: int) -> tuple[list[float], list[float]]:
    for i in range(WARMUP):
        http_call(i)
        grpc_call(i)
    http_times, grpc_times = [], []
    for i in range(calls):
        if i % 2:
            http_times.append(http_call(i))
            grpc_times.append(grpc_call(i))
        else:
            grpc_times.append(grpc_call(i))
            http_times.append(http_call(i))
    return http_times, grpc_times


def report(what: str, grpc_name: str, http_name: str, grpc_times: list[float], http_times: list[float]) -> None:
    diffs = [(h - g) * 1000 for h, g in zip(http_times, grpc_times)]
    print(f"{what}:")
    print(f"  {grpc_name:<28} p50 {ms(grpc_times, 50):7.2f} ms   p90 {ms(grpc_times, 90):7.2f} ms")
    print(f"  {http_name:<28} p50 {ms(http_times, 50):7.2f} ms   p90 {ms(http_times, 90):7.2f} ms")
    print(f"  HTTP adds {ms(http_times, 50) - ms(grpc_times, 50):+.2f} ms at p50; median of per-round differences "
          f"{statistics.median(diffs):+.2f} ms (target: at most 5 ms)")


if __name__ == "__main__":
    raise SystemExit(main())
