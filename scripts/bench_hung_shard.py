"""What a hung shard costs the enrollment that meets it: shard_hang_s against shard_timeout_s (the hung-shard issue).

Usage: python scripts/bench_hung_shard.py [--hang 5] [--timeout 30] [--pack scrfd-mbf]

Two shards (Tarantool and shard server each), the real extractor and SecantusDB on loopback, in a temporary folder.
For each setting, the hang check off (shard_hang_s above shard_timeout_s: the baseline) then --hang, a gateway is
started (8 cells, so that consecutive ids spread over both shards); after a warm-up import, shard 1's server is
stopped with SIGSTOP (connected, answering nothing), and timed are an ImportFaces of 20 faces (about half of them
for shard 1: the one that finds it out), then 3 more of 5 (which should not wait), with where their faces went.
Then the shard is resumed and the gateway stopped. Prints seconds and the ratio of the first import to the
baseline's.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc import launch  # noqa: E402
from findface_grpc.gateway.cells import CellMap  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2  # noqa: E402
from tests.gateway.harness import (  # noqa: E402
    ShardSet,
    address,
    face_stub,
    gateway_process,
    make_token,
    mongo_server,
    running_extractor,
    start_healthy,
)

CELLS = 8
MODELS = {"scrfd-mbf": ("w600k_mbf", 512), "yunet-sface": ("sface_2021dec", 128)}


def importer(stub, model: str, dim: int):
    rng = np.random.default_rng(1)

    def run(count: int) -> tuple[float, list[int]]:
        vectors = rng.normal(size=(count, dim)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faces = [gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=model, dim=dim, vector=v.tobytes()))
                 for v in vectors]
        started = time.monotonic()
        (reply,) = stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest(faces=faces)]), timeout=120)
        return time.monotonic() - started, list(reply.ids)
    return run


def measure(base: Path, name: str, shards: ShardSet, extractor: str, mongo: str, hang: float, timeout: float,
            model: str, dim: int) -> dict:
    listen = address(launch.free_port())
    gateway = gateway_process(name, base, listen, shards.addresses, extractor, mongo, "bench_hung", cells=CELLS,
                              shard_hang_s=hang, shard_timeout_s=timeout)
    start_healthy([(gateway, listen)])
    owner = CellMap.from_config(CELLS, 2).shard_of
    channel, stub = face_stub(listen, make_token(mongo, "bench_hung"))
    run = importer(stub, model, dim)
    try:
        run(20)
        pid = shards.servers[1].proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            first, ids = run(20)
            after = [run(5) for _ in range(3)]
        finally:
            os.kill(pid, signal.SIGCONT)
        placed = sorted({owner(i) for i in ids + [i for _, more in after for i in more]})
        return {"first": first, "after": [t for t, _ in after], "shards": placed}
    finally:
        channel.close()
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hang", type=float, default=5.0, help="shard_hang_s to measure")
    parser.add_argument("--timeout", type=float, default=30.0, help="shard_timeout_s in both runs")
    parser.add_argument("--pack", default="scrfd-mbf", choices=sorted(MODELS))
    args = parser.parse_args()
    model, dim = MODELS[args.pack]
    with tempfile.TemporaryDirectory(prefix="bench-hung-") as tmp:
        base = Path(tmp)
        shards = ShardSet(base, 2)
        with mongo_server(base / "mongo") as mongo, running_extractor(base, args.pack) as extractor:
            shards.start_tarantools()
            try:
                start_healthy(shards.server_items())
                rows = {}
                for label, hang in [("off (baseline)", args.timeout * 100), (f"{args.hang:g} s", args.hang)]:
                    rows[label] = measure(base, f"gateway-{len(rows)}", shards, extractor, mongo, hang, args.timeout,
                                          model, dim)
            finally:
                shards.stop()
    base_first = rows["off (baseline)"]["first"]
    print(f"a SIGSTOPped shard server, shard_timeout_s {args.timeout:g} s")
    print(f"{'shard_hang_s':16} {'first import s':>15} {'x baseline':>11} {'next imports s':>22} {'faces on':>9}")
    for label, row in rows.items():
        after = ", ".join(f"{t:.4f}" for t in row["after"])
        print(f"{label:16} {row['first']:15.2f} {row['first'] / base_first:11.3f} {after:>22} "
              f"{','.join(map(str, row['shards'])):>9}")


if __name__ == "__main__":
    main()
