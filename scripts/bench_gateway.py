"""Gateway overhead: what a search costs above the shards' own answer, and what HTTP adds above gRPC (issue 14).

Usage: python scripts/bench_gateway.py [--faces-n 1000] [--rounds 5] [--calls 200] [--photo-calls 40]

Starts a whole cluster with the launcher (2 shards, the extractor, the gateway, the HTTP gateway, SecantusDB) on
free ports in a temporary folder, imports N random L2-normalised descriptors (ImportFaces) and enrolls the
labelled photos. Then, in each round:
- identify by descriptor (n = 10, threshold none, concurrency 1): each call is paired with the same search sent
  straight to both shards' gRPC Search at once (the request the gateway sends: k = n + its join margin), which is
  the baseline: the slowest shard's answer as a client next to the gateway sees it. The order alternates;
- identify by photo, over gRPC (FaceService.Identify) and over HTTP (POST /v1/identify), in alternating order,
  always the labelled photo of the median size: with photos in rotation, the extractor's time varies by tens of
  milliseconds from one call to the next on a busy machine, which buries a difference of a few.
Prints each round's p50s and the medians over the rounds: the gateway's overhead (target: at most 3 ms at 1,000
faces) and the HTTP gateway's above the gRPC gateway.
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
from findface_grpc.gateway.search import JOIN_MARGIN  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import (  # noqa: E402
    common_pb2, extractor_pb2, extractor_pb2_grpc, gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc,
)
from tests.helpers import bench_cluster_config, faces_dir, labelled_photos, with_token  # noqa: E402
from tests.http.harness import multipart  # noqa: E402

N = 10
WARMUP = 20


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def timed(call) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def paired(first, second, calls: int) -> tuple[list[float], list[float]]:
    """`calls` timings of each, call i of both back to back, which one goes first alternating."""
    a, b = [], []
    for i in range(calls):
        if i % 2:
            b.append(timed(lambda: second(i)))
            a.append(timed(lambda: first(i)))
        else:
            a.append(timed(lambda: first(i)))
            b.append(timed(lambda: second(i)))
    return a, b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces-n", type=int, default=1000, help="random descriptors imported (default 1000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="identify-by-descriptor pairs per round")
    parser.add_argument("--photo-calls", type=int, default=40, help="identify-by-photo pairs per round")
    parser.add_argument("--model-pack", default="scrfd-mbf")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folder = faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]
    query = sorted(photos, key=len)[len(photos) // 2]
    photos = photos[:20]
    rng = np.random.default_rng(14)

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as work:
        cfg = bench_cluster_config(work, 2, args.model_pack)
        cluster = Cluster(cfg)
        try:
            print(f"starting a 2-shard cluster ({args.model_pack}) ...", flush=True)
            addresses = cluster.start()
            client, store = auth.open_store(auth.gateway_mongo(mongo_uri=addresses["mongodb"]))
            token = store.create("bench-gateway")
            client.close()
            channels = [grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS)]
            stub = gateway_pb2_grpc.FaceServiceStub(with_token(channels[0], token))
            channels += [grpc.insecure_channel(addresses[f"shard-{i}"], options=CHANNEL_OPTIONS) for i in range(2)]
            shards = [shard_pb2_grpc.ShardStub(ch) for ch in channels[1:]]
            with grpc.insecure_channel(addresses["extractor"]) as ch:
                info = extractor_pb2_grpc.ExtractorStub(ch).Info(extractor_pb2.InfoRequest(), timeout=60)
            model, dim = info.embedder_model_id, info.descriptor_dim

            vectors = rng.standard_normal((args.faces_n + 64, dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            stored, queries = vectors[:args.faces_n], vectors[args.faces_n:]
            imported = sum(len(r.ids) for r in stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest(faces=[
                gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=model, dim=dim, vector=v.tobytes()))
                for v in stored])]), timeout=600))
            for data in photos:
                stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data)), timeout=60)
            print(f"  {imported} descriptors imported and {len(photos)} photos enrolled", flush=True)

            descriptors = [common_pb2.Descriptor(model_id=model, dim=dim, vector=q.tobytes()) for q in queries]
            none = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)
            by_descriptor = [gateway_pb2.IdentifyRequest(descriptor=d, n=N, threshold=none) for d in descriptors]
            # What the gateway asks each shard: the default gallery, n plus its margin, no threshold (cosine -1).
            shard_requests = [shard_pb2.SearchRequest(queries=[d], gallery="default", k=N + JOIN_MARGIN,
                                                      threshold=-1.0) for d in descriptors]
            by_photo = gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=query))
            body, content_type = multipart({}, {"photo": ("photo.jpg", query)})
            host, _, port = addresses["http"].removeprefix("http://").rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)

            def gateway_search(i: int) -> None:
                reply = stub.Identify(by_descriptor[i % len(by_descriptor)], timeout=10)
                if reply.shards_answered != 2 or len(reply.results[0].matches) != N:
                    raise RuntimeError(f"gateway answered {reply.shards_answered}/2 shards, "
                                       f"{len(reply.results[0].matches)} matches")

            def shards_search(i: int) -> None:
                # Both at once, as the gateway fans out: the time is the slower one's.
                futures = [s.Search.future(shard_requests[i % len(shard_requests)], timeout=10) for s in shards]
                if sum(len(f.result().results[0].hits) for f in futures) < N:
                    raise RuntimeError("the shards found fewer than n faces")

            def grpc_photo(i: int) -> None:
                stub.Identify(by_photo, timeout=60)

            def http_photo(i: int) -> None:
                conn.request("POST", "/v1/identify", body=body,
                             headers={"Content-Type": content_type, "Authorization": f"Token {token}"})
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"HTTP identify answered {reply.status}")

            paired(shards_search, gateway_search, WARMUP)
            paired(grpc_photo, http_photo, 4)
            rows = []
            for r in range(args.rounds):
                shard_t, gateway_t = paired(shards_search, gateway_search, args.calls)
                grpc_t, http_t = paired(grpc_photo, http_photo, args.photo_calls)
                rows.append((p50(shard_t), p50(gateway_t), p50(grpc_t), p50(http_t),
                             p50([h - g for h, g in zip(http_t, grpc_t)])))
                print(f"  round {r + 1}: shards {rows[-1][0]:.2f} ms, gateway {rows[-1][1]:.2f} ms, "
                      f"photo gRPC {rows[-1][2]:.1f} ms, HTTP {rows[-1][3]:.1f} ms", flush=True)
            conn.close()
            for ch in channels:
                ch.close()
        finally:
            cluster.stop()

    def med(column: int) -> float:
        return statistics.median(row[column] for row in rows)

    print(f"\n{imported} faces in 2 shards; {args.rounds} rounds of {args.calls} descriptor and {args.photo_calls} "
          f"photo pairs; medians over the rounds of each round's p50:")
    print(f"  identify by descriptor, both shards' Search directly   {med(0):7.2f} ms")
    print(f"  identify by descriptor through the gateway             {med(1):7.2f} ms")
    overhead = statistics.median(row[1] - row[0] for row in rows)
    print(f"  gateway overhead                                       {overhead:+7.2f} ms  (target: at most 3 ms)")
    print(f"  identify by photo ({len(query) // 1024} KB), gRPC FaceService.Identify {med(2):9.2f} ms")
    print(f"  identify by photo, HTTP POST /v1/identify              {med(3):7.2f} ms")
    print(f"  HTTP gateway overhead (median of per-call differences) {med(4):+7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
