"""Fast index benchmark: identify through the gateway with and without the shards' fast indexes, in one run.

Usage: python scripts/bench_fast_index.py [--n 1000000] [--kind clustered|uniform] [--calls 300] [--rounds 5]

Starts SecantusDB, 2 Tarantools + 2 shard servers, the extractor and the gateway (bench_search.Bench); imports
N synthetic 512-d descriptors; times identify by descriptor (n=10) with every row scanned (full_scan), then
builds the fast index (FaceService.BuildFastIndex) and times the same queries through it, at concurrency 1 and 8, in
--rounds rounds each (medians reported).
Recall is measured against the full scan of the same cluster: rank-1 of queries planted near stored faces (the
planted face must come first) and the overlap of the top 10.

`clustered` descriptors look like a face collection: people of a few thousand "looks" (cosine ~0.3 between people
of one look, ~0 across looks), each person 3-12 photos at cosine ~0.7 to each other. `uniform` descriptors are
independent random directions, the hardest case for any index (no structure to exploit).
Then the shards restart (clean stop) and the time until their fast indexes are READY again is taken.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import DIM, MODEL, Bench, percentile, timed_calls  # noqa: E402

from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc  # noqa: E402

READY = common_pb2.FastIndexState.State.READY
FAILED = common_pb2.FastIndexState.State.FAILED


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, count: int) -> np.ndarray:
    looks = unit(rng.standard_normal((max(16, count // 300), DIM), dtype=np.float32))
    people_count = max(1, count // 7)
    # cos(person, look) ~0.55: two people of one look ~0.3 apart.
    people = unit(looks[rng.integers(0, len(looks), people_count)]
                  + rng.standard_normal((people_count, DIM), dtype=np.float32) * (1.5 / np.sqrt(DIM)))
    owners = np.repeat(np.arange(people_count), rng.integers(3, 13, people_count))[:count]
    if len(owners) < count:
        owners = np.concatenate([owners, rng.integers(0, people_count, count - len(owners))])
    out = np.empty((count, DIM), np.float32)
    for start in range(0, count, 100_000):
        block = owners[start:start + 100_000]
        # cos(photo, person) ~0.84: two photos of one person ~0.7 apart.
        out[start:start + len(block)] = unit(
            people[block] + rng.standard_normal((len(block), DIM), dtype=np.float32) * (0.65 / np.sqrt(DIM)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--kind", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(11)
    matrix = clustered(rng, args.n) if args.kind == "clustered" else unit(rng.standard_normal((args.n, DIM), dtype=np.float32))
    planted_rows = rng.choice(args.n, args.queries, replace=False)
    # A new photo of a stored face's person: cosine ~0.85 to it.
    planted = unit(matrix[planted_rows] + rng.standard_normal((args.queries, DIM), dtype=np.float32) * (0.6 / np.sqrt(DIM)))
    memtx_mb = max(256, int(args.n / 2 * (DIM * 2 + 200) * 1.2 / 2**20) + 256)
    with tempfile.TemporaryDirectory(prefix="ff-bench-fast-") as tmp:
        # SecantusDB, the MongoDB stand-in, answers in Python on one thread: after a million inserts its answers
        # can take longer than the gateway's default 2 s outage limit, which a real MongoDB would not.
        bench = Bench(Path(tmp), 2, memtx_mb, gateway_env={"FINDFACE_GATEWAY_MONGO_TIMEOUT_S": "15"})
        try:
            token = bench.start(token_name="admin")  # BuildFastIndex is an admin's command
            metadata = (("authorization", f"Token {token}"),)
            channel = grpc.insecure_channel(bench.gateway, options=CHANNEL_OPTIONS)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)

            def requests():
                for start in range(0, args.n, args.batch):
                    yield gateway_pb2.ImportFacesRequest(faces=[
                        gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=v.tobytes()))
                        for v in matrix[start:start + args.batch]
                    ])

            t0 = time.perf_counter()
            ids: list[int] = []
            for reply in stub.ImportFaces(requests(), metadata=metadata, timeout=14400):
                ids.extend(reply.ids)
            import_s = time.perf_counter() - t0
            row_of = {face_id: row for row, face_id in enumerate(ids)}

            def identify(q: np.ndarray, full_scan: bool) -> list[int]:
                reply = stub.Identify(gateway_pb2.IdentifyRequest(
                    descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=q.tobytes()), n=10,
                    threshold=common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE), full_scan=full_scan,
                ), metadata=metadata, timeout=60)
                if reply.shards_answered != reply.shards_total:
                    raise RuntimeError("a shard did not answer")
                return [row_of[m.face.id] for m in reply.results[0].matches]

            exact = [identify(q, True) for q in planted]
            exact_times1, exact_qps1 = timed_calls(lambda q: identify(q, True), planted, 1, max(30, args.calls // 10))

            def states() -> list:
                # Straight from each shard's Stats, the same states ClusterStatus gathers.
                found = []
                for address in bench.shards:
                    with grpc.insecure_channel(address) as shard_channel:
                        stats = shard_pb2_grpc.ShardStub(shard_channel).Stats(shard_pb2.StatsRequest(), timeout=30)
                    found.extend(f for f in stats.fast_indexes if f.gallery == "default")
                return found

            t0 = time.perf_counter()
            stub.BuildFastIndex(gateway_pb2.FastIndexRequest(gallery="default"), metadata=metadata, timeout=60)
            while True:
                found = states()
                if any(f.state == FAILED for f in found):
                    raise RuntimeError(f"build failed: {[f.error for f in found]}")
                if len(found) == 2 and all(f.state == READY for f in found):
                    break
                time.sleep(2)
            build_s = time.perf_counter() - t0
            listed = sum(f.listed for f in found)
            index_bytes = sum(f.bytes for f in found)
            lists = [f.lists for f in found]
            nprobe = found[0].nprobe

            fast = [identify(q, False) for q in planted]
            rank1_fast = sum(f[0] == row for f, row in zip(fast, planted_rows)) / len(planted)
            rank1_exact = sum(e[0] == row for e, row in zip(exact, planted_rows)) / len(planted)
            overlap = float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(fast, exact)]))
            for q in planted[:5]:
                identify(q, False)
            # Rounds at each concurrency in turn, their medians reported: one round of a few seconds on this
            # machine moves by 10% with whatever else runs then (a snapshot being written, say).
            rounds1, rounds8 = [], []
            for _ in range(args.rounds):
                rounds1.append(timed_calls(lambda q: identify(q, False), planted, 1, args.calls))
                rounds8.append(timed_calls(lambda q: identify(q, False), planted, 8, args.calls * 2))

            restart_s = bench.restart_shards(kill=False)
            t0 = time.perf_counter()
            while not (len(found := states()) == 2 and all(f.state == READY for f in found)):
                time.sleep(0.2)
            ready_after_restart = restart_s + time.perf_counter() - t0
            after_restart = [identify(q, False) for q in planted[:50]]
            same_after_restart = sum(a == f for a, f in zip(after_restart, fast[:50]))
            channel.close()
        finally:
            bench.stop()

    print(f"N = {args.n} {args.kind} faces x {DIM}-d in 2 shards; import {import_s:.0f} s ({args.n / import_s:.0f} faces/s)")
    print(f"fast index: built in {build_s:.0f} s (both shards at once), {listed} faces listed, lists {lists}, "
          f"nprobe {nprobe}; {index_bytes / max(listed, 1):.1f} bytes a face beyond the codes")
    print(f"{'identify (n=10), through the gateway':<44} {'p50 ms':>8} {'p99 ms':>8} {'QPS':>8}")
    print(f"{'full scan, concurrency 1':<44} {percentile(exact_times1, 50):>8.1f} {percentile(exact_times1, 99):>8.1f} {exact_qps1:>8.1f}")
    medians = {}
    for concurrency, rounds in ((1, rounds1), (8, rounds8)):
        figures = [(percentile(times, 50), percentile(times, 99), qps) for times, qps in rounds]
        medians[concurrency] = [float(np.median(column)) for column in zip(*figures)]
        label = f"fast index, concurrency {concurrency} (median of {len(rounds)})"
        print(f"{label:<44} {medians[concurrency][0]:>8.1f} {medians[concurrency][1]:>8.1f} {medians[concurrency][2]:>8.1f}")
        print("    rounds: " + "; ".join(f"{p50:.1f} / {p99:.1f} ms, {qps:.1f}" for p50, p99, qps in figures))
    print(f"speed-up p50, fast / full scan: {percentile(exact_times1, 50) / medians[1][0]:.1f}x")
    print(f"planted face first: fast index {rank1_fast:.3f}, full scan {rank1_exact:.3f} ({len(planted)} queries)")
    print(f"top-10 overlap with the full scan: {overlap:.3f}")
    print(f"restart (clean stop) to fast indexes READY: {ready_after_restart:.1f} s; "
          f"same top-10 after it: {same_after_restart}/50")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
