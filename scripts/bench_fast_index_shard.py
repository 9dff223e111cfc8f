"""The fast index inside one shard's index, without servers: build time, memory, CPU per query and recall.

Usage: python scripts/bench_fast_index_shard.py [--n 500000] [--shards 2] [--kind clustered|uniform]
                                                [--queries 300] [--nprobe 16,32,64,128]

Makes the descriptors of a gallery of N x SHARDS faces (bench_fast_index.clustered: people of a few thousand
looks, 3-12 photos each; or uniform random directions) and keeps every SHARDS-th one, as one shard of a cluster
holds them; builds that shard's FaceIndex and its fast index as a shard does (one thread, one faiss thread); then
asks the same queries (new photos of stored faces, cosine ~0.85 to them) with every row scanned and through the
fast index at each nprobe, in one run. Figures: CPU time per query (process time, less moved by other load than
wall time); how often the planted face comes first; the overlap of the top 10 with the full scan's; and that
overlap counting only the full scan's hits scoring 0.4 or more (faces a search at any preset threshold could
return; the rest of a top 10 are strangers whose order is chance). Exact re-scoring (Tarantool's float16 copy)
is left out on both sides.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_fast_index import DIM, clustered, unit  # noqa: E402

from findface_grpc.shard.fast_index import FastIndexes  # noqa: E402
from findface_grpc.shard.index import DEFAULT_GALLERY, FaceIndex  # noqa: E402

STRONG = 0.4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--kind", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nprobe", default="16,32,64,128")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    population = args.n * args.shards
    gallery = clustered(rng, population) if args.kind == "clustered" else unit(
        rng.standard_normal((population, DIM), dtype=np.float32))
    vectors = gallery[::args.shards].copy()
    del gallery
    index = FaceIndex(DIM, capacity=args.n)
    for start in range(0, args.n, 50_000):
        block = vectors[start:start + 50_000]
        index.upsert(np.arange(start + 1, start + len(block) + 1), block, [()] * len(block))
    probes = [int(p) for p in args.nprobe.split(",")]
    fast = FastIndexes("bench", 10**12, probes[0], 20_000, None)
    wall, cpu = time.perf_counter(), time.process_time()
    fast._build(index, DEFAULT_GALLERY, probes[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    state = index.stats().fast[DEFAULT_GALLERY]
    rows = rng.choice(args.n, args.queries, replace=False)
    queries = unit(vectors[rows] + rng.standard_normal((args.queries, DIM), dtype=np.float32) * (0.6 / np.sqrt(DIM)))

    def run(full_scan: bool) -> tuple[float, list[list[int]], list[list[float]]]:
        times, ids, scores = [], [], []
        for query in queries:
            began = time.process_time()
            hits = index.search(query, DEFAULT_GALLERY, 10, full_scan=full_scan)[0]
            times.append(time.process_time() - began)
            ids.append([hit.face_id for hit in hits])
            scores.append([hit.score for hit in hits])
        return float(np.median(times) * 1000), ids, scores

    full_ms, exact, exact_scores = run(True)
    first_full = np.mean([top[0] == row + 1 for top, row in zip(exact, rows)])
    print(f"{args.kind} gallery of {population} faces; this shard's {args.n}: {state.lists} lists; "
          f"build {wall:.0f} s wall, {cpu:.0f} s CPU; {state.nbytes / args.n:.1f} bytes a face beyond the codes")
    print(f"full scan: CPU per query p50 {full_ms:.2f} ms, planted face first {first_full:.3f}")
    print(f"{'nprobe':>6} {'CPU ms':>7} {'x faster':>8} {'first':>6} {'top-10':>7} {'top-10 >= ' + str(STRONG):>12}")
    fast_index = index._fast[DEFAULT_GALLERY]
    for nprobe in probes:
        fast_index.nprobe = nprobe
        ms, found, _ = run(False)
        first = np.mean([top[0] == row + 1 for top, row in zip(found, rows)])
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
        strong = [({i for i, s in zip(b, sc) if s >= STRONG}, set(a)) for a, b, sc in zip(found, exact, exact_scores)]
        strong_overlap = np.mean([len(s & a) / len(s) for s, a in strong if s])
        print(f"{nprobe:>6} {ms:>7.2f} {full_ms / ms:>8.1f} {first:>6.3f} {overlap:>7.3f} {strong_overlap:>12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
