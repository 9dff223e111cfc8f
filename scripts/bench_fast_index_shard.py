"""The fast index inside one shard's index, without servers: build time, memory, CPU per query and recall.

Usage: python scripts/bench_fast_index_shard.py [--n 500000] [--queries 200]

Builds a FaceIndex of N clustered 512-d descriptors (bench_fast_index.clustered: people of a few thousand looks,
3-12 photos each), builds its fast index as a shard does (one faiss thread), then times the same queries (new
photos of stored faces, cosine ~0.85 to them) with every row scanned and through the fast index, in one run:
CPU time per query (process time, less moved by other load than wall time), and how often the planted face comes
first and the top 10 agree. Exact re-scoring (Tarantool's float16 copy) is left out on both sides.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, default=32)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    vectors = clustered(rng, args.n)
    index = FaceIndex(DIM, capacity=args.n)
    for start in range(0, args.n, 50_000):
        block = vectors[start:start + 50_000]
        index.upsert(np.arange(start + 1, start + len(block) + 1), block, [()] * len(block))
    fast = FastIndexes("bench", 10**12, args.nprobe, 20_000, None)
    wall, cpu = time.perf_counter(), time.process_time()
    fast._build(index, DEFAULT_GALLERY, args.nprobe)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    state = index.stats().fast[DEFAULT_GALLERY]
    rows = rng.choice(args.n, args.queries, replace=False)
    queries = unit(vectors[rows] + rng.standard_normal((args.queries, DIM), dtype=np.float32) * (0.6 / np.sqrt(DIM)))
    results = {}
    for full_scan in (True, False):
        times, tops = [], []
        for query in queries:
            began = time.process_time()
            hits = index.search(query, DEFAULT_GALLERY, 10, full_scan=full_scan)[0]
            times.append(time.process_time() - began)
            tops.append([hit.face_id for hit in hits])
        results[full_scan] = (np.median(times) * 1000, tops)
    first = np.mean([top[0] == row + 1 for top, row in zip(results[False][1], rows)])
    first_full = np.mean([top[0] == row + 1 for top, row in zip(results[True][1], rows)])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(results[False][1], results[True][1])])
    print(f"N = {args.n} clustered faces x {DIM}-d; {state.lists} lists, nprobe {state.nprobe}")
    print(f"build: {wall:.0f} s wall, {cpu:.0f} s CPU; {state.nbytes / args.n:.1f} bytes a face beyond the codes")
    print(f"CPU per query, p50: full scan {results[True][0]:.2f} ms, fast index {results[False][0]:.2f} ms "
          f"({results[True][0] / results[False][0]:.1f}x)")
    print(f"planted face first: fast index {first:.3f}, full scan {first_full:.3f}; top-10 overlap {overlap:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
