"""The gateway's metadata reads at scale on SecantusDB: the query shapes before and after face_pages.py.

Usage: python scripts/bench_metadata.py [--faces 100000] [--reps 3] [--data-dir DIR]

Starts SecantusDB (findface_grpc.launch.mongo_process), fills it with --faces face documents shaped as enrollment
writes them (face_docs.new_face_doc, the indexes of MetadataStore.ensure_schema): every face in "default", every
10th also in "tenth", every 5000th also in "sparse"; 2% being deleted; half with meta "", 10 with meta "rare",
the rest in 1000 values; 4 in 5 with a person (a uuid-like hex id shared by 3 consecutive faces). With --data-dir an earlier run's store there is used again when it holds as many.
Prints the median of --reps for each read, the way the gateway did it before (the baseline, run here too) and
the way it does now, and the ratio.
"""
from __future__ import annotations

import argparse
import hashlib
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc import launch  # noqa: E402
from findface_grpc.gateway.domain import Descriptor, NewFace  # noqa: E402
from findface_grpc.gateway.face_docs import ACTIVE, DELETING, new_face_doc  # noqa: E402
from findface_grpc.gateway.face_pages import FacePageStore  # noqa: E402
from findface_grpc.gateway.metadata import FACE_ID_COUNTER, MetadataStore, utcnow  # noqa: E402
from findface_grpc.gateway.persons import PersonStore  # noqa: E402

DB = "bench_metadata"
BATCH = 2000


def galleries_of(i: int) -> tuple[str, ...]:
    return ("default",) + (("tenth",) if i % 10 == 0 else ()) + (("sparse",) if i % 5000 == 0 else ())


def meta_of(i: int, n: int) -> str:
    if i % (n // 10) == 7:
        return "rare"
    return "" if i % 2 else f"person-{i % 1000}"


def person_of(i: int) -> str:
    return "" if i % 5 == 4 else hashlib.md5(str(i // 3).encode()).hexdigest()


def fill(store: MetadataStore, n: int) -> None:
    if store.faces.estimated_document_count() == n:
        return
    store.faces.drop()
    asyncio.run(store.ensure_schema())
    descriptor = Descriptor("bench", np.zeros(4, np.float32))
    now = utcnow()
    began = time.perf_counter()
    for first in range(1, n + 1, BATCH):
        docs = []
        for i in range(first, min(n, first + BATCH - 1) + 1):
            face = NewFace(descriptor, galleries_of(i), meta=meta_of(i, n), person_id=person_of(i))
            doc = new_face_doc(i, face, now, DELETING if i % 50 == 3 else ACTIVE)
            docs.append(doc)
        store.faces.insert_many(docs, ordered=False)
    store.counters.update_one({"_id": FACE_ID_COUNTER}, {"$set": {"value": n}})
    print(f"filled {n} faces in {time.perf_counter() - began:.0f} s", flush=True)


def median_ms(fn, reps: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000, result


def old_list(store: MetadataStore, gallery: str, max_id: int, limit: int, meta: str | None) -> list[int]:
    query: dict = {"galleries": gallery, "state": ACTIVE}
    if max_id:
        query["_id"] = {"$lt": max_id}
    if meta is not None:
        query["meta"] = meta
    return [d["_id"] for d in store.faces.find(query, {"_id": 1}).sort("_id", pymongo.DESCENDING).limit(limit)]


def old_newer(store: MetadataStore, gallery: str, min_id: int, limit: int) -> list[int]:
    query = {"galleries": gallery, "state": ACTIVE, "_id": {"$gte": min_id}}
    return [d["_id"] for d in store.faces.find(query, {"_id": 1}).sort("_id", pymongo.ASCENDING).limit(limit)]


def old_meta(store: MetadataStore, gallery: str) -> list:
    return list(store.faces.aggregate([
        {"$match": {"galleries": gallery, "state": ACTIVE}}, {"$sort": {"_id": -1}},
        {"$group": {"_id": "$meta", "count": {"$sum": 1}, "face": {"$first": "$$ROOT"}}}, {"$sort": {"_id": 1}},
    ]))


def old_persons(store: MetadataStore, after_id: str, limit: int) -> list[str]:
    return [row["_id"] for row in store.faces.aggregate([
        {"$match": {"state": ACTIVE, "person_id": {"$gt": after_id}}}, {"$sort": {"_id": -1}},
        {"$group": {"_id": "$person_id", "count": {"$sum": 1}, "face": {"$first": "$$ROOT"}}},
        {"$sort": {"_id": 1}}, {"$limit": limit},
    ])]


def old_gallery_counts(store: MetadataStore) -> dict:
    return {r["_id"]: r["count"] for r in store.faces.aggregate([
        {"$match": {"state": ACTIVE}}, {"$unwind": "$galleries"}, {"$group": {"_id": "$galleries", "count": {"$sum": 1}}},
    ])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="only the new reads (the old ones take long)")
    args = parser.parse_args(argv)
    n = args.faces
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_metadata_"))
    port = launch.free_ports(1)
    proc = launch.mongo_process(base / "mongo", port).start()
    try:
        launch.wait_tcp("127.0.0.1", port, 60, proc)
        store = MetadataStore(f"mongodb://127.0.0.1:{port}/?directConnection=true", DB, timeout_s=600)
        fill(store, n)
        pages = FacePageStore(store)
        persons = PersonStore(store)
        new = {
            "ListFaces default, first page of 100": lambda: pages.list_faces("default", 0, 101, None),
            "ListFaces default, page of 100 at max_id N/2": lambda: pages.list_faces("default", n // 2, 101, None),
            "ListFaces 'tenth', page of 20 at max_id N/2": lambda: pages.list_faces("tenth", n // 2, 21, None),
            "ListFaces 'sparse' (1 in 5000), first page of 20": lambda: pages.list_faces("sparse", 0, 21, None),
            "ListFaces 'tenth' meta 'rare' (10 faces)": lambda: pages.list_faces("tenth", 0, 101, "rare"),
            "prev page: newer_ids default at N/2, 101": lambda: pages.newer_ids("default", n // 2, 101, None),
            "ListMeta 'sparse'": lambda: pages.list_meta("sparse"),
            "ListPersons, first page of 100": lambda: persons.page("", 101),
            "ListPersons, page of 100 after '8'": lambda: persons.page("8", 101),
            "ListGalleries (names; counts from the shards)": lambda: store.list_galleries(),
            "ClusterStatus's counts (faces: the shards')": lambda: store.gallery_count(),
        }
        old = {
            "ListFaces default, first page of 100": lambda: old_list(store, "default", 0, 101, None),
            "ListFaces default, page of 100 at max_id N/2": lambda: old_list(store, "default", n // 2, 101, None),
            "ListFaces 'tenth', page of 20 at max_id N/2": lambda: old_list(store, "tenth", n // 2, 21, None),
            "ListFaces 'sparse' (1 in 5000), first page of 20": lambda: old_list(store, "sparse", 0, 21, None),
            "ListFaces 'tenth' meta 'rare' (10 faces)": lambda: old_list(store, "tenth", 0, 101, "rare"),
            "prev page: newer_ids default at N/2, 101": lambda: old_newer(store, "default", n // 2, 101),
            "ListMeta 'sparse'": lambda: old_meta(store, "sparse"),
            "ListPersons, first page of 100": lambda: old_persons(store, "", 101),
            "ListPersons, page of 100 after '8'": lambda: old_persons(store, "8", 101),
            "ListGalleries (names; counts from the shards)": lambda: old_gallery_counts(store),
            "ClusterStatus's counts (faces: the shards')": lambda: store.faces.count_documents({"state": ACTIVE}),
        }
        print(f"{n} faces on SecantusDB, median of {args.reps} (ms):")
        print(f"{'read':52} {'before':>10} {'after':>9} {'ratio':>7}")
        for name, fn in new.items():
            after, got = median_ms(lambda: asyncio.run(fn()), args.reps)
            if args.skip_baseline:
                print(f"{name:52} {'-':>10} {after:9.1f}", flush=True)
                continue
            before, expected = median_ms(old[name], args.reps)
            if name.startswith(("ListFaces", "prev", "ListPersons")):
                ids = [f.id for f in got] if name.startswith("ListFaces") else got
                ids = [p.id for p in got] if name.startswith("ListPersons") else ids
                if ids != expected:
                    print(f"MISMATCH in {name}: {ids[:5]}... vs {expected[:5]}...")
                    return 1
            print(f"{name:52} {before:10.1f} {after:9.1f} {before / after:7.1f}x", flush=True)
        store.close()
    finally:
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
