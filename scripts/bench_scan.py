"""Exhaustive scan kernels on this CPU: how the shard's compact rows were chosen (issue 13).

Usage: python scripts/bench_scan.py [--n 1000000] [--reps 7]

Over the same N x 512 unit vectors, times a top-10 per query (median of --reps, one thread each):
- numpy float32 `matrix @ q` + argpartition (the baseline; what the shard did before);
- faiss IndexScalarQuantizer QT_fp16 and QT_8bit (trained per dimension), float query;
- faiss QT_8bit_direct_signed in 16384-row segments, as findface_grpc/shard/rows.py runs it, for 1, 8 and 32
  queries at once;
- SimSIMD int8 dot products and usearch's exact int8 search, when those packages are installed (they are not
  dependencies: `pip install simsimd usearch` to include them).
Prints each as ms per query and as a ratio to the numpy baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc.shard.rows import CompactRows  # noqa: E402

DIM = 512


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.n, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = rng.standard_normal((32, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows: list[tuple[str, float]] = []

    def numpy_top10() -> None:
        scores = matrix @ queries[0]
        np.argpartition(-scores, 10)[:10]

    baseline = median_ms(numpy_top10, args.reps)
    rows.append(("numpy float32 matmul + argpartition", baseline))

    for name, kind in (("faiss QT_fp16", faiss.ScalarQuantizer.QT_fp16),
                       ("faiss QT_8bit (per-dimension ranges)", faiss.ScalarQuantizer.QT_8bit)):
        index = faiss.IndexScalarQuantizer(DIM, kind, faiss.METRIC_INNER_PRODUCT)
        index.train(matrix[: min(args.n, 100_000)])
        index.add(matrix)
        rows.append((name, median_ms(lambda: index.search(queries[:1], 10), args.reps)))
        del index

    compact = CompactRows(DIM)
    compact.reserve(args.n)
    compact.write(0, matrix)
    for count in (1, 8, 32):
        ms = median_ms(lambda: compact.scan(queries[:count], args.n, 10, None), args.reps) / count
        rows.append((f"faiss QT_8bit_direct_signed, segments, {count} queries/pass (the shard)", ms))

    codes = np.clip(np.rint(matrix * compact.scale), -127, 127).astype(np.int8)
    query_codes = np.clip(np.rint(queries * 127 / np.abs(queries).max()), -127, 127).astype(np.int8)
    try:
        import simsimd

        def simsimd_top10() -> None:
            scores = np.asarray(simsimd.cdist(query_codes[:1], codes, metric="dot", dtype="int8"))[0]
            np.argpartition(-scores, 10)[:10]

        rows.append(("SimSIMD int8 dot + argpartition", median_ms(simsimd_top10, args.reps)))
    except ImportError:
        rows.append(("SimSIMD int8 (not installed)", float("nan")))
    try:
        from usearch.index import search as usearch_search

        rows.append(("usearch exact int8", median_ms(
            lambda: usearch_search(codes, query_codes[:1], 10, metric="ip", exact=True, threads=1), args.reps)))
    except ImportError:
        rows.append(("usearch exact int8 (not installed)", float("nan")))

    print(f"top-10 over {args.n} x {DIM}, one thread, median of {args.reps}")
    print(f"{'kernel':<72} {'ms/query':>9} {'vs numpy':>9}")
    for name, ms in rows:
        print(f"{name:<72} {ms:>9.1f} {ms / baseline:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
