"""Bulk import benchmark: ImportFaces into a 2-shard cluster, next to the metadata store's own insert rate.

Usage: python scripts/bench_import.py [--n 100000] [--batch 10000] [--shards 2] [--mongo-uri URI]

In one run: start a cluster with the launcher (license server, SecantusDB unless --mongo-uri names a MongoDB,
the Tarantools and shard servers, the extractor, the gateway; no HTTP gateway), then measure

- **store**: `insert_many(ordered=False)` straight into a scratch collection of the same database, of the same
  face documents the gateway writes (active, imported: no photo fields), with the same indexes as the gateway's
  `faces` collection, in batches of --batch: the most any import can get out of this metadata store, since an
  import writes each face's document once;
- **shards**: the shards' own `Add`, called directly (scratch ids far above the cluster's, removed again), in
  batches of --batch split by cell as the gateway splits them;
- **import**: N random L2-normalised 512-d descriptors through one `ImportFaces` stream in batches of --batch
  (the gateway checks, journals, reserves quota, adds to the shards and inserts the documents), the messages
  built on the fly as a client would; the seconds the client spent building them are printed apart.

It prints faces/s of each and import / store, how close the import comes to the store's limit.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import pymongo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import auth  # noqa: E402
from findface_grpc.cluster import Cluster  # noqa: E402
from findface_grpc.gateway.cells import CellMap  # noqa: E402
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Descriptor, NewFace  # noqa: E402
from findface_grpc.gateway.metadata import ACTIVE, new_face_doc, utcnow  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc  # noqa: E402
from tests.helpers import bench_cluster_config, with_token  # noqa: E402

DIM = 512
MODEL = "w600k_mbf"
SCRATCH_ID = 10**15  # shard ids of the shards' own measure: far above any the cluster allocates


def vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.standard_normal((count, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def store_rate(mongo_uri: str, db: str, count: int, batch: int) -> float:
    """Documents/s of insert_many(ordered=False) of imported faces' documents into a copy of `faces`' indexes."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        faces = client[db]["faces"]
        scratch = client["bench_import_scratch"]["faces"]
        scratch.drop()
        for name, spec in faces.index_information().items():
            if name != "_id_":
                options = {k: spec[k] for k in ("sparse", "unique", "partialFilterExpression") if k in spec}
                scratch.create_index(spec["key"], **options)
        face = NewFace(Descriptor(MODEL, np.zeros(DIM, np.float32)), (DEFAULT_GALLERY,))
        seconds = 0.0
        for first in range(1, count + 1, batch):
            now = utcnow()
            docs = [{**new_face_doc(i, face, now), "state": ACTIVE}
                    for i in range(first, min(first + batch, count + 1))]
            started = time.perf_counter()
            scratch.insert_many(docs, ordered=False)
            seconds += time.perf_counter() - started
        client.drop_database("bench_import_scratch")
        return count / seconds
    finally:
        client.close()


def shard_rate(addresses: list[str], cells: CellMap, count: int, batch: int, rng: np.random.Generator) -> float:
    """Faces/s of the shards' own Add, every shard at once per batch, as the gateway calls them."""
    channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in addresses]
    stubs = [shard_pb2_grpc.ShardStub(c) for c in channels]
    try:
        seconds = 0.0
        for first in range(SCRATCH_ID, SCRATCH_ID + count, batch):
            ids = list(range(first, min(first + batch, SCRATCH_ID + count)))
            block = vectors(rng, len(ids))
            groups: dict[int, list[shard_pb2.ShardFace]] = {}
            for i, v in zip(ids, block):
                groups.setdefault(cells.shard_of(i), []).append(shard_pb2.ShardFace(
                    id=i, galleries=[DEFAULT_GALLERY],
                    descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=v.tobytes())))
            started = time.perf_counter()
            calls = [stubs[s].Add.future(shard_pb2.AddRequest(faces=items), timeout=600) for s, items in groups.items()]
            for call in calls:
                call.result()
            seconds += time.perf_counter() - started
        for first in range(SCRATCH_ID, SCRATCH_ID + count, batch):
            ids = list(range(first, min(first + batch, SCRATCH_ID + count)))
            for s in range(len(stubs)):
                stubs[s].Remove(shard_pb2.RemoveRequest(ids=[i for i in ids if cells.shard_of(i) == s]), timeout=600)
        return count / seconds
    finally:
        for c in channels:
            c.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="faces to import (default 100000)")
    parser.add_argument("--batch", type=int, default=10_000, help="faces per ImportFaces message (default 10000)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--baseline-n", type=int, default=0,
                        help="documents and faces of the store's and the shards' own measures (default: --n, so "
                             "that the store's figure is for a collection grown as large as the import's)")
    parser.add_argument("--mongo-uri", default="", help="a MongoDB to use instead of starting SecantusDB")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(13)
    baseline_n = min(args.baseline_n or args.n, args.n)
    # Per shard, a face costs its float32 vector in Tarantool plus overheads.
    memtx_mb = max(256, int((args.n + baseline_n) / args.shards * DIM * 4 * 1.6 / 2**20) + 256)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as work:
        cfg = dataclasses.replace(bench_cluster_config(work, args.shards, "scrfd-mbf"), http_port=0,
                                  tarantool_memtx_mb=memtx_mb, mongo_uri=args.mongo_uri)
        cluster = Cluster(cfg)
        try:
            print(f"starting a {args.shards}-shard cluster in {work} ...", flush=True)
            addresses = cluster.start()
            mongo_uri = args.mongo_uri or addresses["mongodb"]
            settings = auth.gateway_mongo(mongo_uri=mongo_uri)
            client, store = auth.open_store(settings)
            token = store.create("bench-import")
            client.close()
            channel = with_token(grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS), token)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            status = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=30)
            before = status.face_count

            store_per_s = store_rate(mongo_uri, settings.mongo_db, baseline_n, args.batch)
            print(f"store: insert_many of {baseline_n} face documents: {store_per_s:.0f} documents/s", flush=True)
            shard_addresses = [addresses[f"shard-{i}"] for i in range(args.shards)]
            # The gateway's default cell map (its [gateway].cells), so that the split is the gateway's.
            cells = CellMap.from_config(1024, args.shards)
            shards_per_s = shard_rate(shard_addresses, cells, baseline_n, args.batch, rng)
            print(f"shards: Add of {baseline_n} faces: {shards_per_s:.0f} faces/s", flush=True)

            building = 0.0

            def requests():
                nonlocal building
                for first in range(0, args.n, args.batch):
                    started = time.perf_counter()
                    block = vectors(rng, min(args.batch, args.n - first))
                    request = gateway_pb2.ImportFacesRequest(faces=[
                        gateway_pb2.ImportFace(descriptor=common_pb2.Descriptor(model_id=MODEL, dim=DIM,
                                                                                vector=v.tobytes()))
                        for v in block
                    ])
                    building += time.perf_counter() - started
                    yield request

            started = time.perf_counter()
            imported = 0
            marks = [started]  # when each reply came
            for reply in stub.ImportFaces(requests(), timeout=24 * 3600):
                imported += len(reply.ids)
                marks.append(time.perf_counter())
            seconds = time.perf_counter() - started
            tenth = max(1, (len(marks) - 1) // 10)
            first_part = tenth * args.batch / (marks[tenth] - marks[0])
            last_part = tenth * args.batch / (marks[-1] - marks[-1 - tenth])
            status = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=60)
            channel.close()
        finally:
            cluster.stop()
    per_s = imported / seconds
    print()
    print(f"N = {args.n} faces x {DIM}-d into {args.shards} shards, ImportFaces batches of {args.batch}")
    print(f"{'what':<52} {'per second':>11}")
    print(f"{'store: insert_many of the same documents (its limit)':<52} {store_per_s:>11.0f}")
    print(f"{'shards: Add, called directly':<52} {shards_per_s:>11.0f}")
    print(f"{'import: ImportFaces, end to end':<52} {per_s:>11.0f}")
    print(f"import: {imported} faces in {seconds:.1f} s (of which the client built its messages "
          f"{building:.1f} s); the cluster now shows {status.face_count - before} more faces")
    print(f"import, first and last tenth of the messages: {first_part:.0f} and {last_part:.0f} faces/s "
          f"(the store slows as the collection and its indexes grow)")
    print(f"import / store: {per_s / store_per_s:.2f}   import / shards: {per_s / shards_per_s:.2f}   "
          f"(target: 10000 faces/s)")
    return 0 if imported == args.n == status.face_count - before else 1


if __name__ == "__main__":
    raise SystemExit(main())
