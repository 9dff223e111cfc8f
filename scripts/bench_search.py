"""Search benchmark: bulk import into 2 shards, identify-by-descriptor through the gateway vs bare numpy.

Usage: python scripts/bench_search.py [--n 100000] [--shards 2] [--calls 200]

In one run: start SecantusDB, N Tarantools + shard servers, the extractor (the gateway takes the model id and
dimension from it) and the gateway; import N synthetic L2-normalised 512-d descriptors through ImportFaces; time
Identify by descriptor (n=10) at concurrency 1 and 8 (p50, p99, QPS); time a bare numpy float32 top-10 over the
same N x 512 matrix in this process; check the gateway's top-10 against the exact float32 ranking, for random
queries and for queries planted near stored faces; stop the shard servers (SIGTERM, then kill -9) and time until they are
healthy again; memory per face as the growth of the shard servers' and Tarantools' RSS during the import.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import launch  # noqa: E402
from findface_grpc.auth import TokenStore  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc  # noqa: E402

DIM = 512
MODEL = "w600k_mbf"
HOST = "127.0.0.1"
# Scores this close are a tie for a float16 copy of the descriptors (float16 keeps about 3 decimal digits).
TIE = 1e-4


def vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.standard_normal((count, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def timed_calls(fn, queries: np.ndarray, concurrency: int, calls: int) -> tuple[list[float], float]:
    def one(i: int) -> float:
        t0 = time.perf_counter()
        fn(queries[i % len(queries)])
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, range(calls)))
    return times, calls / (time.perf_counter() - t0)


class Bench:
    def __init__(self, work: Path, shards: int, memtx_mb: int, gateway_env: dict[str, str] | None = None) -> None:
        self.work = work
        self.procs: list[launch.ManagedProcess] = []
        self.mongo_port = launch.free_port()
        self.tt_ports = [launch.free_port() for _ in range(shards)]
        self.shards = [f"{HOST}:{launch.free_port()}" for _ in range(shards)]
        self.extractor = f"{HOST}:{launch.free_port()}"
        self.gateway = f"{HOST}:{launch.free_port()}"
        self.memtx_mb = memtx_mb
        self.shard_procs: list[launch.ManagedProcess] = []
        self.gateway_env = {"FINDFACE_GATEWAY_CELLS": "1024", **(gateway_env or {})}

    def _start(self, proc: launch.ManagedProcess) -> launch.ManagedProcess:
        self.procs.append(proc)
        return proc.start()

    def shard_server(self, i: int) -> launch.ManagedProcess:
        return launch.python_server(
            f"shard-{i}", "findface_grpc.shard.server",
            ["--listen", self.shards[i], "--tarantool", f"{HOST}:{self.tt_ports[i]}", "--shard-id", f"shard-{i}",
             "--snapshot-dir", str(self.work / f"index-{i}")],
            self.work / f"shard-{i}.log",
            launch.ALLOCATOR_ENV,
        )

    def start(self, token_name: str = "bench") -> str:
        mongo = self._start(launch.mongo_process(self.work / "mongo", self.mongo_port))
        tts = [
            self._start(launch.tarantool_process(self.work / f"tt-{i}", port, self.memtx_mb, name=f"tarantool-{i}"))
            for i, port in enumerate(self.tt_ports)
        ]
        launch.wait_tcp(HOST, self.mongo_port, 60, mongo)
        for tt, port in zip(tts, self.tt_ports):
            launch.wait_tcp(HOST, port, 60, tt)
        self.shard_procs = [self._start(self.shard_server(i)) for i in range(len(self.shards))]
        ext = self._start(launch.python_server(
            "extractor", "findface_grpc.extractor.server", ["--listen", self.extractor], self.work / "extractor.log"))
        for proc, addr in zip(self.shard_procs, self.shards):
            launch.wait_grpc_healthy(addr, 120, proc)
        launch.wait_grpc_healthy(self.extractor, 120, ext)
        mongo_uri = f"mongodb://{HOST}:{self.mongo_port}/?directConnection=true"
        gw = self._start(launch.python_server(
            "gateway", "findface_grpc.gateway.server",
            ["--listen", self.gateway, "--extractor", self.extractor, "--shards", ",".join(self.shards),
             "--mongo-uri", mongo_uri],
            self.work / "gateway.log",
            env=self.gateway_env,
        ))
        launch.wait_grpc_healthy(self.gateway, 120, gw)
        import pymongo

        client = pymongo.MongoClient(mongo_uri)
        token = TokenStore(client["findface"]).create(token_name)
        client.close()
        return token

    def restart_shards(self, kill: bool) -> float:
        """Seconds from the shard servers' stop (SIGTERM, or kill -9) to all of them healthy again."""
        for proc in self.shard_procs:
            if kill:
                proc.proc.kill()
                proc.proc.wait()
            else:
                proc.stop()
        t0 = time.perf_counter()
        self.shard_procs = [self._start(self.shard_server(i)) for i in range(len(self.shards))]
        for proc, addr in zip(self.shard_procs, self.shards):
            launch.wait_grpc_healthy(addr, 600, proc)
        return time.perf_counter() - t0

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(7)
    matrix = vectors(rng, args.n)
    queries = vectors(rng, 64)
    planted_rows = rng.choice(args.n, 64, replace=False)
    planted = matrix[planted_rows] + 0.03 * rng.standard_normal((64, DIM), dtype=np.float32)
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    # Per shard, Tarantool holds a face's float16 vector plus about 170 bytes of tuple and index.
    memtx_mb = max(256, int(args.n / args.shards * (DIM * 2 + 200) * 1.2 / 2**20) + 256)
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        bench = Bench(Path(tmp), args.shards, memtx_mb)
        try:
            token = bench.start()
            metadata = (("authorization", f"Token {token}"),)
            channel = grpc.insecure_channel(bench.gateway, options=CHANNEL_OPTIONS)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)

            def requests():
                for start in range(0, args.n, args.batch):
                    block = matrix[start : start + args.batch]
                    yield gateway_pb2.ImportFacesRequest(faces=[
                        gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=v.tobytes()))
                        for v in block
                    ])

            holders = [p.proc.pid for p in bench.procs if p.name.startswith(("shard-", "tarantool-"))]
            rss_before = sum(launch.rss_bytes(pid) for pid in holders)
            t0 = time.perf_counter()
            ids: list[int] = []
            for reply in stub.ImportFaces(requests(), metadata=metadata, timeout=7200):
                ids.extend(reply.ids)
            imported = len(ids)
            import_s = time.perf_counter() - t0
            rss_growth = sum(launch.rss_bytes(pid) for pid in holders) - rss_before
            row_of = {face_id: row for row, face_id in enumerate(ids)}

            def identify(q: np.ndarray) -> list[int]:
                reply = stub.Identify(gateway_pb2.IdentifyRequest(
                    descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=q.tobytes()), n=10,
                    threshold=common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE),
                ), metadata=metadata, timeout=60)
                if reply.shards_answered != reply.shards_total:
                    raise RuntimeError("a shard did not answer")
                return [row_of[m.face.id] for m in reply.results[0].matches]

            def exact_top10(q: np.ndarray) -> list[int]:
                scores = matrix @ q
                top = np.argpartition(-scores, 10)[:10]
                return top[np.argsort(-scores[top], kind="stable")].tolist()

            def agreement(q: np.ndarray) -> tuple[bool, bool]:
                """(the same ten rows in the same order; the same up to faces whose float32 scores are within TIE
                of each other, which float16 storage cannot tell apart)"""
                got, want = identify(q), exact_top10(q)
                if got == want:
                    return True, True
                scores = matrix @ q
                # Place by place, a face scoring within TIE of the exact ranking's face at that place.
                tied = len(set(got)) == len(got) == len(want) and all(
                    abs(float(scores[a]) - float(scores[b])) <= TIE for a, b in zip(got, want))
                if not tied:
                    differences.append(f"got {[(r, round(float(scores[r]), 5)) for r in got]}\n"
                                       f"  want {[(r, round(float(scores[r]), 5)) for r in want]}")
                return False, tied

            differences: list[str] = []

            checks = [agreement(q) for q in queries]
            planted_checks = [agreement(q) for q in planted]
            planted_first = sum(identify(q)[0] == row for q, row in zip(planted, planted_rows))

            for q in queries[:5]:
                identify(q)  # warm-up
            g1, qps1 = timed_calls(identify, queries, 1, args.calls)
            g8, qps8 = timed_calls(identify, queries, 8, args.calls * 2)

            n1, nqps1 = timed_calls(exact_top10, queries, 1, args.calls)

            stats = []
            for addr in bench.shards:
                with grpc.insecure_channel(addr) as ch:
                    stats.append(shard_pb2_grpc.ShardStub(ch).Stats(shard_pb2.StatsRequest(), timeout=10))
            restarts = "not measured"
            try:
                restart_s = bench.restart_shards(kill=False)
                # A few writes after the snapshot that the clean stop left, then kill -9: the restart loads the
                # snapshot and replays those writes.
                late = vectors(rng, 1000)
                list(stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest(faces=[
                    gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=v.tobytes()))
                    for v in late
                ])]), metadata=metadata, timeout=600))
                kill_restart_s = bench.restart_shards(kill=True)
                restarts = (f"after a clean stop {restart_s:.1f} s, after kill -9 (and 1000 writes since the "
                            f"snapshot) {kill_restart_s:.1f} s")
            except (RuntimeError, grpc.RpcError) as exc:
                restarts = f"FAILED: {exc}"
            channel.close()
        finally:
            bench.stop()

    print(f"N = {args.n} faces x {DIM}-d in {args.shards} shards ({imported} imported); {args.calls} calls per figure")
    print(f"import: {import_s:.1f} s, {imported / import_s:.0f} faces/s through ImportFaces (batches of {args.batch})")
    print(f"{'search':<32} {'p50 ms':>8} {'p99 ms':>8} {'QPS':>8}")
    print(f"{'gateway Identify, concurrency 1':<32} {percentile(g1, 50):>8.1f} {percentile(g1, 99):>8.1f} {qps1:>8.1f}")
    print(f"{'gateway Identify, concurrency 8':<32} {percentile(g8, 50):>8.1f} {percentile(g8, 99):>8.1f} {qps8:>8.1f}")
    print(f"{'bare numpy float32 top-10':<32} {percentile(n1, 50):>8.1f} {percentile(n1, 99):>8.1f} {nqps1:>8.1f}")
    print(f"ratio gateway p50 / numpy p50 (concurrency 1): {percentile(g1, 50) / percentile(n1, 50):.2f}  (target <= 0.3 at 1M)")
    print(f"ratio QPS concurrency 8 / concurrency 1: {qps8 / qps1:.2f}  (target >= 1.5 at 1M)")
    for label, found in (("random", checks), ("planted", planted_checks)):
        strict, tied = sum(c[0] for c in found), sum(c[1] for c in found)
        print(f"top-10 vs the float32 ranking, {label} queries: identical {strict}/{len(found)}, "
              f"identical up to ties within {TIE:g} {tied}/{len(found)}")
    print(f"planted face first: {planted_first}/{len(planted)}")
    for difference in differences:
        print(f"differs beyond ties: {difference}")
    print(f"shard restart (all, to healthy): {restarts}  (target <= 5 s at 1M)")
    print(f"memory: RSS growth of shard servers + Tarantools during the import = {rss_growth / 2**20:.0f} MiB, "
          f"{rss_growth / max(1, imported):.0f} bytes per face  (target <= 1536)")
    print(f"shards' own estimate: index {sum(s.index_bytes for s in stats) / 2**20:.0f} MiB, "
          f"Tarantool arena {sum(s.tarantool_arena_bytes for s in stats) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
