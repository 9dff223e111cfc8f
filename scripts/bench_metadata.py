"""The gateway's metadata reads at scale on SecantusDB: the query shapes before and after face_pages.py and
history_pages.py.

Usage: python scripts/bench_metadata.py [--faces 100000] [--events 0] [--reps 3] [--data-dir DIR] [--only TEXT]

Starts SecantusDB (findface_grpc.launch.mongo_process), fills it with --faces face documents shaped as enrollment
writes them (face_docs.new_face_doc, the indexes of MetadataStore.ensure_schema): every face in "default", every
10th also in "tenth", every 5000th also in "sparse"; 2% being deleted; half with meta "", 10 with meta "rare",
the rest in 1000 values; 4 in 5 with a person (a uuid-like hex id shared by 3 consecutive faces). With --data-dir an earlier run's store there is used again when it holds as many.
With --events, a history of that many events too (fill_history says how they are shaped); --faces 0 leaves the
faces out.
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
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from findface_grpc import launch  # noqa: E402
from findface_grpc.gateway.domain import Descriptor, NewFace  # noqa: E402
from findface_grpc.gateway.face_docs import ACTIVE, DELETING, PENDING, new_face_doc  # noqa: E402
from findface_grpc.gateway.face_pages import FacePageStore  # noqa: E402
from findface_grpc.gateway.history import (  # noqa: E402
    EVENT_ID_COUNTER, HistoryQuery, HistoryStore, Sighting, event_doc, new_event)
from findface_grpc.gateway.metadata import FACE_ID_COUNTER, MetadataStore, utcnow  # noqa: E402
from findface_grpc.gateway.persons import PersonStore  # noqa: E402

DB = "bench_metadata"
BATCH = 2000
HISTORY_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


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


def fill_history(store: MetadataStore, n: int) -> HistoryStore:
    """n events as HistoryStore.insert writes them, with its indexes: one every 2 s of frame time (1 in 10 a
    minute late, as a camera's queue makes them), from 20 cameras, each of 1000 persons in about 1 in 1000 and the
    person "rare" in 20; a 1 kB thumbnail each."""
    history = HistoryStore(store)
    if history.collection.estimated_document_count() == n:
        return history
    history.collection.drop()
    asyncio.run(history.ensure_schema())
    now = utcnow()
    thumbnail = bytes(1024)
    began = time.perf_counter()
    for first in range(1, n + 1, BATCH):
        events = []
        for i in range(first, min(n, first + BATCH - 1) + 1):
            frame = HISTORY_T0 + timedelta(seconds=2 * i - (60 if i % 10 == 3 else 0))
            person = "rare" if i % (n // 20) == 11 else f"person-{(i * 7919) % 1000}"
            event = new_event(Sighting(f"cam{i % 20}", frame), (0, 0, 1, 1), thumbnail, None, person, ["default"])
            events.append(event_doc(replace(event, id=i, created_at=now)))
        history.collection.insert_many(events, ordered=False)
    store.counters.update_one({"_id": EVENT_ID_COUNTER}, {"$set": {"value": n}}, upsert=True)
    print(f"filled {n} events in {time.perf_counter() - began:.0f} s", flush=True)
    return history


def old_events(history: HistoryStore, query: HistoryQuery, max_id: int, limit: int) -> list[int]:
    """A page as the gateway read it before history_pages.py: one query, sorted and limited by the server."""
    where: dict = {}
    if query.person_id:
        where["person_id"] = query.person_id
    if query.camera_ids:
        where["camera"] = {"$in": list(query.camera_ids)}
    if query.start is not None or query.end is not None:
        where["frame"] = {k: v for k, v in (("$gte", query.start), ("$lt", query.end)) if v is not None}
    if max_id:
        where["_id"] = {"$lt": max_id}
    cursor = history.collection.find(where, {"thumbnail": 0}).sort("_id", pymongo.DESCENDING).limit(limit)
    return [d["_id"] for d in cursor]


def old_newer_events(history: HistoryStore, min_id: int, limit: int) -> list[int]:
    cursor = history.collection.find({"_id": {"$gte": min_id}}, {"_id": 1}).sort("_id", pymongo.ASCENDING)
    return [d["_id"] for d in cursor.limit(limit)]


def old_replay(history: HistoryStore, camera: str, after_id: int, limit: int) -> list[int]:
    where = {"camera": {"$in": [camera]}, "_id": {"$gt": after_id}}
    return [d["_id"] for d in history.collection.find(where).sort("_id", pymongo.ASCENDING).limit(limit)]


def history_reads(history: HistoryStore, n: int) -> tuple[dict, dict]:
    """The history reads as the gateway makes them now, and as it made them before, by name."""
    end = HISTORY_T0 + timedelta(seconds=2 * n)
    queries = {
        "History, first page of 100": (HistoryQuery(), 0),
        "History, page of 100 at max_id N/2": (HistoryQuery(), n // 2),
        "History of a person (1 in 1000), first page": (HistoryQuery(person_id="person-7"), 0),
        "History of person 'rare' (20 events)": (HistoryQuery(person_id="rare"), 0),
        "History of 1 camera in 20, page at N/2": (HistoryQuery(camera_ids=("cam3",)), n // 2),
        "History of 3 cameras, first page": (HistoryQuery(camera_ids=("cam1", "cam2", "cam3")), 0),
        "History, the last 24 h": (HistoryQuery(start=end - timedelta(days=1)), 0),
        "History, 1 h at N/4": (HistoryQuery(start=end - timedelta(seconds=1.5 * n), end=end - timedelta(
            seconds=1.5 * n - 3600)), 0),
        "History, 1 camera, 1 h at N/4": (HistoryQuery(camera_ids=("cam5",), start=end - timedelta(
            seconds=1.5 * n), end=end - timedelta(seconds=1.5 * n - 3600)), 0),
    }
    new = {name: (lambda q=q, m=m: history.older(q, m, 101, False)) for name, (q, m) in queries.items()}
    old = {name: (lambda q=q, m=m: old_events(history, q, m, 101)) for name, (q, m) in queries.items()}
    new["prev page: newer_ids of the history at N/2"] = lambda: history.newer_ids(HistoryQuery(), n // 2, 101)
    old["prev page: newer_ids of the history at N/2"] = lambda: old_newer_events(history, n // 2, 101)
    new["Replay (WatchEvents) of 1 camera, 100 after N-5000"] = lambda: history.after(["cam4"], n - 5000, 100)
    old["Replay (WatchEvents) of 1 camera, 100 after N-5000"] = lambda: old_replay(history, "cam4", n - 5000, 100)
    return new, old


def face_reads(store: MetadataStore, n: int) -> tuple[dict, dict]:
    """The face reads as the gateway makes them now, and as it made them before, by name."""
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
        "Quota count (the journal and pending; + the shards' Stats)": lambda: store.faces_under_way(),
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
        "Quota count (the journal and pending; + the shards' Stats)": lambda: store.faces.count_documents(
            {"state": {"$in": [PENDING, ACTIVE]}}),
    }
    return new, old


def ids_of(name: str, got) -> list | None:
    """The ids a read answered, where before and after must agree on them."""
    if name.startswith(("ListFaces", "ListPersons")):
        return [x.id for x in got]
    if name.startswith(("prev", "History", "Replay")):
        return [x if isinstance(x, int) else x.id for x in got]
    return None


def compare(new: dict, old: dict, reps: int, skip_baseline: bool, only: str) -> bool:
    """Prints each read's median before and after (of the reads whose names hold `only`); False when they answer
    different ids."""
    print(f"{'read':60} {'before':>10} {'after':>9} {'ratio':>7}")
    for name, fn in new.items():
        if only not in name:
            continue
        after, got = median_ms(lambda: asyncio.run(fn()), reps)
        if skip_baseline:
            print(f"{name:60} {'-':>10} {after:9.1f}", flush=True)
            continue
        before, expected = median_ms(old[name], reps)
        ids = ids_of(name, got)
        if ids is not None and ids != expected:
            print(f"MISMATCH in {name}: {ids[:5]}... vs {expected[:5]}...")
            return False
        print(f"{name:60} {before:10.1f} {after:9.1f} {before / after:7.1f}x", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="only the new reads (the old ones take long)")
    parser.add_argument("--only", default="", help="only the reads whose names hold this")
    args = parser.parse_args(argv)
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_metadata_"))
    port = launch.free_ports(1)
    proc = launch.mongo_process(base / "mongo", port).start()
    try:
        launch.wait_tcp("127.0.0.1", port, 60, proc)
        store = MetadataStore(f"mongodb://127.0.0.1:{port}/?directConnection=true", DB, timeout_s=600)
        ok = True
        if args.faces:
            fill(store, args.faces)
            print(f"{args.faces} faces on SecantusDB, median of {args.reps} (ms):")
            ok = compare(*face_reads(store, args.faces), args.reps, args.skip_baseline, args.only)
        if ok and args.events:
            history = fill_history(store, args.events)
            print(f"{args.events} history events on SecantusDB, median of {args.reps} (ms):")
            ok = compare(*history_reads(history, args.events), args.reps, args.skip_baseline, args.only)
        store.close()
    finally:
        proc.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
