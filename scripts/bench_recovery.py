"""Recovery benchmark: how long after kill -9 of a shard server with N faces is the full gallery served again?

Usage: python scripts/bench_recovery.py [--n 100000] [--killed-share 0.5] [--repeat 3] [--batch 10000]

Starts a 2-shard cluster with the launcher (`findface-cluster`, in a subprocess: it supervises, and restarts what
dies) on free ports in a temporary folder, without the HTTP gateway and the photo store. Loads N random
L2-normalised descriptors of the cluster's model, in the state ImportFaces leaves them in (an active metadata
document in MongoDB and the descriptor on the shard the cell map names) but written directly: documents with
insert_many, descriptors with the shards' Add, both in batches of --batch, several times faster than ImportFaces
(whose ~850 faces/s SecantusDB bounds, two writes per face). --killed-share of the 1024 cells (so of the faces)
belong to shard 0, the rest to shard 1: 0.5 splits them evenly; 0.999 puts nearly all N on shard 0. The gateway's
background repair and face-count rounds are set to hourly: each reads the whole faces collection, which SecantusDB
(a MongoDB-wire server in Python, for local use) takes minutes over at several hundred thousand documents.

Then kill -9 shard-0's server (its Tarantool keeps running) --repeat times with its index snapshot deleted
first (lost or damaged: the new server rebuilds its index from a full scan of Tarantool), then --repeat times
with the snapshot it took after its start (what the launcher's shards normally restart from: the snapshot plus
the writes Tarantool stamped since). Each kill comes once the server has run for 11 s (so that the launcher does
not count it towards giving up; it does double its restart delay from 0.5 s, as the server keeps failing within
a minute of its start) and times
- kill -> restart: until the launcher has started a new process (its pid in status.json);
- restart -> healthy: until the new server answers health checks SERVING, which it does once its index is
  loaded (its log is checked for the way it was, rebuilt or from the snapshot);
- restart -> whole: until the gateway serves the full gallery again: shard 0 reports all its faces, and
  Identify by descriptor, through the gateway, finds each of 5 sample faces of shard 0 as its best match with
  both shards answering.
Prints each repetition and the medians. Target (issue 12): whole within 30 s of the restart for a shard with 1M
faces.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pymongo
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import launch, supervise  # noqa: E402
from findface_grpc.gateway.cells import CellMap  # noqa: E402
from findface_grpc.gateway.domain import Descriptor, NewFace  # noqa: E402
from findface_grpc.gateway.metadata import ACTIVE, FACE_ID_COUNTER, new_face_doc, utcnow  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.shard.snapshot import FILE_NAME as SNAPSHOT_FILE  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc  # noqa: E402
from tests.helpers import start_cluster, with_token  # noqa: E402

CELLS = 1024
SHARDS = 2
SAMPLES = 5
WHOLE_TIMEOUT_S = 600.0


def cell_map(killed_cells: int) -> list[str]:
    """The first `killed_cells` cells on shard 0, the rest on shard 1."""
    return [f"0-{killed_cells - 1}:0", f"{killed_cells}-{CELLS - 1}:1"]


def write_config(path: Path, ports: dict[str, int], memtx_mb: int, killed_cells: int) -> None:
    # The gateway's repair and face-count rounds run at its start (before the load) and then not for an hour:
    # each reads the whole faces collection, which at hundreds of thousands of documents keeps SecantusDB (a
    # Python server) busy for minutes and starves the load and the benchmark's own calls.
    lines = ["[cluster]", *(f"{k} = {v}" for k, v in ports.items()), f"shards = {SHARDS}", "http_port = 0",
             "upload_port = 0", "metrics_base_port = 0", f"tarantool_memtx_mb = {memtx_mb}", "", "[gateway]", f"cells = {CELLS}",
             f"cell_map = {json.dumps(cell_map(killed_cells))}", "repair_interval_s = 3600",
             "license_reconcile_interval_s = 3600", ""]
    path.write_text("\n".join(lines))


class Loader:
    """Writes N faces straight into the stores, as ImportFaces would leave them: metadata documents (active) and
    the shards' descriptors, each side by its own thread, a bounded queue of batches ahead of each."""

    def __init__(self, mongo_uri: str, shards: list[str], cells: CellMap, model: common_pb2.Descriptor) -> None:
        self.mongo = pymongo.MongoClient(mongo_uri, tz_aware=True)
        self.db = self.mongo["findface"]
        self.channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in shards]
        self.stubs = [shard_pb2_grpc.ShardStub(c) for c in self.channels]
        self.cells = cells
        self.model = model
        self.errors: list[BaseException] = []

    def close(self) -> None:
        for c in self.channels:
            c.close()
        self.mongo.close()

    def allocate(self, count: int) -> int:
        doc = self.db.counters.find_one_and_update({"_id": FACE_ID_COUNTER}, {"$inc": {"value": count}},
                                                   return_document=pymongo.ReturnDocument.AFTER)
        return int(doc["value"]) - count + 1

    def _metadata(self, ids: np.ndarray) -> None:
        now = utcnow()
        empty = Descriptor(self.model.model_id, np.zeros(0, np.float32))
        docs = []
        for face_id in ids.tolist():
            doc = new_face_doc(face_id, NewFace(empty, ("default",)), now)
            doc["state"] = ACTIVE
            docs.append(doc)
        self.db.faces.insert_many(docs, ordered=False)

    def _descriptors(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for shard, group in self.cells.group(ids.tolist()).items():
            rows = np.searchsorted(ids, group)
            self.stubs[shard].Add(shard_pb2.AddRequest(faces=[
                shard_pb2.ShardFace(id=face_id, galleries=["default"], descriptor=common_pb2.Descriptor(
                    model_id=self.model.model_id, dim=self.model.dim, vector=vectors[row].tobytes()))
                for face_id, row in zip(group, rows)]), timeout=600)

    def _worker(self, work: queue.Queue, write) -> None:
        while (item := work.get()) is not None:
            try:
                write(*item)
            except BaseException as exc:  # noqa: BLE001 - reported by load()
                self.errors.append(exc)

    def load(self, n: int, batch: int, rng: np.random.Generator, keep: int = 0) -> dict[int, np.ndarray]:
        """Load `n` faces; returns the first `keep` vectors of shard 0, by id, to query with."""
        first = self.allocate(n)
        metadata, descriptors = queue.Queue(4), queue.Queue(4)
        workers = [threading.Thread(target=self._worker, args=(metadata, self._metadata)),
                   threading.Thread(target=self._worker, args=(descriptors, self._descriptors))]
        for w in workers:
            w.start()
        kept: dict[int, np.ndarray] = {}
        started = time.perf_counter()
        try:
            for start in range(0, n, batch):
                count = min(batch, n - start)
                ids = np.arange(first + start, first + start + count, dtype=np.int64)
                vectors = rng.standard_normal((count, self.model.dim), dtype=np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                for row, face_id in enumerate(ids.tolist()):
                    if len(kept) >= keep:
                        break
                    if self.cells.shard_of(face_id) == 0:
                        kept[face_id] = vectors[row]
                metadata.put((ids,))
                descriptors.put((ids, vectors))
                if self.errors:
                    break
                done = start + count
                if done % (batch * 10) == 0 or done == n:
                    print(f"  {done} faces generated, {time.perf_counter() - started:.0f} s", flush=True)
        finally:
            metadata.put(None)
            descriptors.put(None)
            for w in workers:
                w.join()
        if self.errors:
            raise self.errors[0]
        return kept


def face_count(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return shard_pb2_grpc.ShardStub(channel).Stats(shard_pb2.StatsRequest(), timeout=10).face_count


def status_child(data: Path, name: str) -> dict:
    return json.loads((data / supervise.STATUS_FILE).read_text())["children"][name]


def log_since(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def until(check, timeout: float, what: str, every: float = 0.02) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return time.monotonic()
        except (grpc.RpcError, OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="faces in the cluster (default 100000)")
    parser.add_argument("--killed-share", type=float, default=0.5,
                        help="share of the cells, and so of the faces, on shard 0, the one killed (default 0.5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args(argv)
    # Stopped with SIGTERM too, the cluster it started is stopped (the finally below), not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    killed_cells = min(CELLS - 1, max(1, round(CELLS * args.killed_share)))
    biggest = max(killed_cells, CELLS - killed_cells) / CELLS * args.n
    # Per shard, a face costs its float32 vector in Tarantool's arena plus overheads (see bench_search.py).
    memtx_mb = max(256, int(biggest * 512 * 4 * 1.6 / 2**20) + 256)
    rng = np.random.default_rng(12)
    with tempfile.TemporaryDirectory(prefix="ff-recovery-") as tmp:
        work = Path(tmp)
        ports = {k: launch.free_port() for k in ("gateway_port", "extractor_port", "mongo_port", "license_port")}
        ports["shard_base_port"] = launch.free_ports(SHARDS)
        ports["tarantool_base_port"] = launch.free_ports(SHARDS)
        config, data, log = work / "cluster.toml", work / "data", work / "launcher.log"
        write_config(config, ports, memtx_mb, killed_cells)
        print(f"starting a {SHARDS}-shard cluster in {work} ...", flush=True)
        launcher = start_cluster(config, data, log)
        try:
            token = re.search(r'API token "admin" \(.*?\): (\S+)', log.read_text()).group(1)
            shards = [f"127.0.0.1:{ports['shard_base_port'] + i}" for i in range(SHARDS)]
            gateway = with_token(grpc.insecure_channel(f"127.0.0.1:{ports['gateway_port']}", options=CHANNEL_OPTIONS),
                                 token)
            stub = gateway_pb2_grpc.FaceServiceStub(gateway)
            extractor = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=30).extractor
            model = common_pb2.Descriptor(model_id=extractor.embedder_model_id, dim=extractor.descriptor_dim)

            loader = Loader(f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true", shards,
                            CellMap.from_config(CELLS, SHARDS, cell_map(killed_cells)), model)
            print(f"loading {args.n} faces ({killed_cells}/{CELLS} cells on shard 0) ...", flush=True)
            t0 = time.perf_counter()
            try:
                samples = loader.load(args.n, args.batch, rng, keep=SAMPLES)
            finally:
                loader.close()
            load_s = time.perf_counter() - t0
            counts = [face_count(a) for a in shards]
            print(f"loaded in {load_s:.0f} s ({args.n / load_s:.0f} faces/s); shard 0 holds {counts[0]}, "
                  f"shard 1 {counts[1]}", flush=True)
            assert sum(counts) == args.n, counts

            def whole() -> bool:
                if face_count(shards[0]) != counts[0]:
                    return False
                for face_id, vector in samples.items():
                    reply = stub.Identify(gateway_pb2.IdentifyRequest(
                        descriptor=common_pb2.Descriptor(model_id=model.model_id, dim=model.dim,
                                                         vector=vector.tobytes()),
                        threshold=common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)), timeout=30)
                    if reply.partial or reply.results[0].matches[0].face.id != face_id:
                        return False
                return True

            until(whole, 120, "the full gallery served before any kill", every=0.5)
            health = grpc.insecure_channel(shards[0])
            shard_log = data / "logs" / "shard-0.log"
            snap = data / "shard-0" / "index" / SNAPSHOT_FILE
            started_at = time.time() - 3600  # the current shard-0's start (wall clock), long ago for the first
            log_from = 0
            rows: dict[str, list[tuple[float, ...]]] = {"rebuild": [], "snapshot": []}
            for path in ("rebuild", "snapshot"):
                for rep in range(args.repeat):
                    # Once a restarted server has taken its snapshot (at once; so that none is being written as it
                    # dies), and has run for longer than a fast failure, so that the launcher never counts these
                    # kills towards giving up. The first server took none yet: it started empty, before the load.
                    if path == "snapshot" or rep:
                        until(lambda: snap.exists() and not snap.with_name(snap.name + ".tmp").exists() and (
                            "index from its snapshot" in log_since(shard_log, log_from)
                            or ": snapshot of " in log_since(shard_log, log_from)), 600,
                            "shard-0's snapshot after its start", every=0.1)
                    time.sleep(max(0.0, started_at + supervise.FAST_FAILURE_S + 1 - time.time()))
                    if path == "rebuild":
                        snap.unlink(missing_ok=True)  # lost: the new server must rebuild its index from Tarantool
                    log_from = shard_log.stat().st_size  # what the next server logs comes after this
                    old = status_child(data, "shard-0")["pid"]
                    killed = time.monotonic()
                    os.kill(old, signal.SIGKILL)
                    restarted = until(lambda: status_child(data, "shard-0")["pid"] not in (None, old), 120,
                                      "shard-0 restarted")
                    started_at = time.time()
                    healthy = until(lambda: health_pb2_grpc.HealthStub(health).Check(
                        health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING,
                        WHOLE_TIMEOUT_S, "shard-0 healthy", every=0.05)
                    served = until(whole, WHOLE_TIMEOUT_S, "the full gallery served", every=0.05)
                    said = log_since(shard_log, log_from)
                    took = "index from its snapshot" if path == "snapshot" else "index rebuilt from Tarantool"
                    if took not in said:
                        raise RuntimeError(f"shard-0 did not start by {path}: its log says\n{said}")
                    row = (restarted - killed, healthy - restarted, served - restarted, served - killed)
                    rows[path].append(row)
                    print(f"  {path} {rep + 1}: restart {row[0]:.2f} s after the kill; healthy {row[1]:.2f} s and "
                          f"whole {row[2]:.2f} s after the restart ({row[3]:.2f} s after the kill)", flush=True)
            health.close()
            gateway.close()
        finally:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(120)

    print(f"N = {args.n} faces in {SHARDS} shards, {counts[0]} on shard 0 (killed); load {load_s:.0f} s")
    print(f"{'':<34} {'median s':>9}   each repetition")
    for path, label in (("rebuild", "index rebuilt from Tarantool"), ("snapshot", "index from its snapshot")):
        print(label)
        for i, what in enumerate(("kill -> restart", "restart -> healthy", "restart -> whole", "kill -> whole")):
            values = [r[i] for r in rows[path]]
            print(f"  {what:<32} {statistics.median(values):>9.2f}   " + " ".join(f"{v:.2f}" for v in values))
    print("target (issue 12): whole within 30 s of the restart for a shard with 1M faces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
