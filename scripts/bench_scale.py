"""Faces per host: the shards alone at millions of faces (memory, search, restart), without the metadata store.

Usage: python scripts/bench_scale.py [--n 5000000] [--shards 2] [--calls 100]

Imports through ImportFaces are bound by the metadata store (bench_import.py; SecantusDB here), which would make a
5M run take hours; this loads N random 512-d descriptors straight into S shard servers (each with its Tarantool,
snapshots on, the launcher's allocator setting) with the shards' own `Add`, then:
- memory: the growth of every shard server's and Tarantool's RSS during the load, per face;
- search: `Search` (k = 10) sent to every shard at once and the answers merged, as the gateway does, p50/p99 at
  concurrency 1 (the gateway adds its own few ms on top, bench_search.py);
- restart: all shard servers stopped (SIGTERM, then kill -9 after 1000 more writes), to all healthy again.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc import launch  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, shard_pb2, shard_pb2_grpc  # noqa: E402

DIM = 512
HOST = "127.0.0.1"
BATCH = 5000


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.standard_normal((count, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def descriptor(v: np.ndarray) -> common_pb2.Descriptor:
    return common_pb2.Descriptor(model_id="bench", dim=DIM, vector=v.tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ff-scale-"))
    per_shard = -(-args.n // args.shards)
    memtx_mb = int(per_shard * 1300 / 2**20) + 256
    tarantools, servers, addresses = [], [], []
    try:
        for i in range(args.shards):
            port = launch.free_port()
            tt = launch.tarantool_process(work / f"tt-{i}", port, memtx_mb, name=f"tarantool-{i}").start()
            launch.wait_tcp(HOST, port, 60, tt)
            address = f"{HOST}:{launch.free_port()}"

            def server(i=i, port=port, address=address) -> launch.ManagedProcess:
                return launch.python_server(
                    f"shard-{i}", "findface_grpc.shard.server",
                    ["--listen", address, "--tarantool", f"{HOST}:{port}", "--shard-id", f"shard-{i}",
                     "--snapshot-dir", str(work / f"index-{i}")],
                    work / f"shard-{i}.log", launch.ALLOCATOR_ENV)

            tarantools.append(tt)
            servers.append((server, server().start()))
            addresses.append(address)
        for (_, proc), address in zip(servers, addresses):
            launch.wait_grpc_healthy(address, 120, proc)
        channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in addresses]
        stubs = [shard_pb2_grpc.ShardStub(c) for c in channels]
        rng = np.random.default_rng(11)
        for stub in stubs:  # the model is adopted with the first Add; its memory is not the faces'
            stub.Add(shard_pb2.AddRequest(faces=[shard_pb2.ShardFace(id=10**12, descriptor=descriptor(unit(rng, 1)[0]))]))

        def holders() -> int:
            pids = [t.proc.pid for t in tarantools] + [p.proc.pid for _, p in servers]
            return sum(launch.rss_bytes(pid) for pid in pids)

        before = holders()
        began = time.perf_counter()

        def load(shard: int) -> None:
            local = np.random.default_rng(100 + shard)
            for start in range(shard * per_shard, min(args.n, (shard + 1) * per_shard), BATCH):
                block = unit(local, min(BATCH, args.n - start))
                stubs[shard].Add(shard_pb2.AddRequest(faces=[
                    shard_pb2.ShardFace(id=start + j + 1, descriptor=descriptor(v)) for j, v in enumerate(block)
                ]), timeout=600)

        with ThreadPoolExecutor(args.shards) as pool:
            list(pool.map(load, range(args.shards)))
        load_s = time.perf_counter() - began
        growth = holders() - before

        queries = unit(rng, 32)
        fan_out = ThreadPoolExecutor(args.shards)

        def search(q: np.ndarray) -> float:
            t0 = time.perf_counter()
            request = shard_pb2.SearchRequest(queries=[descriptor(q)], gallery="default", k=10, threshold=-1.0)
            replies = list(fan_out.map(lambda s: s.Search(request, timeout=60), stubs))
            hits = sorted((h for r in replies for h in r.results[0].hits), key=lambda h: -h.score)[:10]
            assert len(hits) == 10
            return time.perf_counter() - t0

        for q in queries[:3]:
            search(q)
        times = np.array([search(queries[i % len(queries)]) for i in range(args.calls)]) * 1000

        def restart(kill: bool) -> float:
            for index, (_, proc) in enumerate(servers):
                proc.kill() if kill else proc.stop(timeout=120)
            t0 = time.perf_counter()
            for index, (factory, _) in enumerate(servers):
                servers[index] = (factory, factory().start())
            for (_, proc), address in zip(servers, addresses):
                launch.wait_grpc_healthy(address, 900, proc)
            return time.perf_counter() - t0

        clean = restart(kill=False)
        late = unit(rng, 1000)
        for shard, stub in enumerate(stubs):
            stub.Add(shard_pb2.AddRequest(faces=[
                shard_pb2.ShardFace(id=10**11 + shard * 1000 + j, descriptor=descriptor(v)) for j, v in enumerate(late)
            ]), timeout=600)
        killed = restart(kill=True)
        for c in channels:
            c.close()
        fan_out.shutdown()
    finally:
        for _, proc in servers:
            proc.stop()
        for tt in tarantools:
            tt.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"N = {args.n} faces x {DIM}-d in {args.shards} shards, loaded with the shards' Add (batches of {BATCH})")
    print(f"load: {load_s:.0f} s, {args.n / load_s:.0f} faces/s")
    print(f"memory: RSS growth of shard servers + Tarantools = {growth / 2**30:.2f} GiB, "
          f"{growth / args.n:.0f} bytes per face")
    print(f"search, all shards, k=10, concurrency 1: p50 {np.percentile(times, 50):.1f} ms, "
          f"p99 {np.percentile(times, 99):.1f} ms ({args.calls} calls)")
    print(f"restart, all shards to healthy: after a clean stop {clean:.1f} s, after kill -9 (1000 writes since "
          f"the snapshot) {killed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
