"""Face and gallery metadata in MongoDB (pymongo, run in a thread pool so the event loop never blocks).

Collections:
- `faces`: one document per face, `_id` = the integer face id. `state` says where the face is in its life:
  "pending" (inserted, its descriptor may or may not be in its shard yet), "active" (in both stores, visible),
  "deleting" (being removed; invisible). Only "active" faces are ever shown. `sync`, when present, is a token
  saying the face's galleries changed here and may not have reached its shard yet. `rev` counts updates, for
  optimistic concurrency.
  Enrollment inserts a face's document once, as "active", after its descriptor is in its shard (see
  `imports`); "pending" documents are only those of enrollments by gateways from before the import journal.
- `imports`: the import journal, one small document per enrollment under way (`_id` its quota key, "enroll-<first
  id>"): `state` "pending" or "aborted", `ids` (its ids as [first, last] runs, the ids of faces moved off a failed
  shard included), `faces` (how many faces), `galleries`, `created`. enrollment.py says why it is safe.
- `galleries`: `_id` = the name; `state` "active" or "deleting"; `faces_version`, a token replaced after every
  change to what an active face of the gallery shows (its metadata, or its leaving "active"). A gateway caches the
  metadata of search hits per gallery and version (hitcache.py) and takes a version as current for at most
  hit_cache_ttl_s after reading it, and never past a change it made itself: a change shows in the searches of the
  gateway that made it once the call returns, and in every other gateway's within hit_cache_ttl_s.
- `counters`: the face id counter.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, ExecutionTimeout, WriteConcernError

from findface_grpc.errors import AlreadyExists, FailedPrecondition, Unavailable
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Face, Gallery, NewFace
from findface_grpc.gateway.face_docs import (
    ABORTED, ACTIVE, DELETING, PENDING, face_from_doc, id_filters, id_runs, ids_of_runs, new_face_doc,
)
from findface_grpc.gateway.limits import can_exist
from findface_grpc.outage import OutageBreaker

log = logging.getLogger(__name__)

FACE_ID_COUNTER = "face_id"
FACES_VERSION = "faces_version"


def redact(uri: str) -> str:
    """The URI without its password, for logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


def utcnow() -> datetime:
    # MongoDB keeps milliseconds; rounding here makes what we return equal what we later read back.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _in_thread(method: Callable) -> Callable:
    """Run a blocking pymongo method in the store's thread pool; a lost database becomes UNAVAILABLE."""

    def guarded(self: "MetadataStore", *args, **kwargs):
        # Checked on the worker thread, when the call is about to run, not when it is queued: calls queued behind
        # the ones that found MongoDB gone then fail at once instead of each waiting out the driver's timeout.
        self.outage.before_call()
        try:
            result = method(self, *args, **kwargs)
        except (ConnectionFailure, ExecutionTimeout, WriteConcernError) as exc:
            self.outage.failed(type(exc).__name__)
            raise Unavailable(f"metadata store (MongoDB) unavailable: {type(exc).__name__}") from exc
        except Exception:
            self.outage.answered()  # a refusal (a duplicate key, say) is an answer
            raise
        self.outage.answered()
        return result

    @functools.wraps(method)
    async def wrapper(self: "MetadataStore", *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(guarded, self, *args, **kwargs))

    return wrapper


class IncompleteInsert(Unavailable):
    """Some of the faces' documents were not inserted (a duplicate id: the id counter was lost and rebuilt
    meanwhile). `inserted`: how many of the faces' documents were."""

    def __init__(self, message: str, inserted: int) -> None:
        super().__init__(message)
        self.inserted = inserted


def new_version() -> str:
    return uuid.uuid4().hex


def ensure_counter(counters: Collection, name: str, collection: Collection) -> None:
    """Create the id counter `name` for `collection` unless it exists: once, rather than by an upserting $inc,
    because concurrent first upserts can race. Should the counter ever be lost, it restarts above the largest id
    in use, never reusing one. That largest id is looked up only then: with no filter some MongoDB-protocol
    servers (SecantusDB) sort the whole collection for it, 30 s at a million faces, at every gateway start."""
    if counters.find_one({"_id": name}, {"_id": 1}) is not None:
        return
    newest = collection.find_one({}, {"_id": 1}, sort=[("_id", pymongo.DESCENDING)])
    counters.update_one({"_id": name}, {"$setOnInsert": {"value": newest["_id"] if newest else 0}}, upsert=True)


class MetadataStore:
    def __init__(self, uri: str, db_name: str, timeout_s: float = 5.0, workers: int = 8) -> None:
        timeout_ms = int(timeout_s * 1000)
        self.client: pymongo.MongoClient = pymongo.MongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
        )
        self.db = self.client[db_name]
        self.faces = self.db["faces"]
        self.galleries = self.db["galleries"]
        self.counters = self.db["counters"]
        self.imports = self.db["imports"]
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mongo")
        self.outage = OutageBreaker("metadata store (MongoDB)")
        # How many times this process gave galleries a new faces_version: a search that remembers a version
        # (hitcache.py) reads it again once this moves, so that this gateway's own changes show at once.
        self.touches = 0
        self._touches_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _touch(self, galleries: Iterable[str] | None) -> None:
        """A new faces_version for these galleries (None: all), called after the change to their faces is written:
        the other order would let a search read the new version, then the old face, and cache it under that."""
        query = {} if galleries is None else {"_id": {"$in": sorted(set(galleries))}}
        self.galleries.update_many(query, {"$set": {FACES_VERSION: new_version()}})
        with self._touches_lock:
            self.touches += 1

    # ---- schema ----

    @_in_thread
    def ensure_schema(self) -> None:
        self.faces.create_index([("galleries", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)])
        # (meta, _id), not meta alone: a page of the faces with a meta is read by windows of ids (face_pages.py).
        self.faces.create_index([("meta", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)])
        self.faces.create_index([("state", pymongo.ASCENDING), ("created", pymongo.ASCENDING)])
        # ListPersons reads windows of person ids (persons.py).
        self.faces.create_index([("person_id", pymongo.ASCENDING)])
        self.faces.create_index([("sync", pymongo.ASCENDING)], sparse=True)
        # No query reads faces by photo_hash, and every index costs each inserted face (on SecantusDB about as
        # much as the document itself): the one earlier versions made is dropped (issue 13).
        indexes = self.faces.index_information()
        for gone in ("photo_hash_1", "meta_1"):
            if gone in indexes:
                self.faces.drop_index(gone)
        ensure_counter(self.counters, FACE_ID_COUNTER, self.faces)
        self.galleries.update_one(
            {"_id": DEFAULT_GALLERY},
            {"$setOnInsert": {"created": utcnow(), "state": ACTIVE, FACES_VERSION: new_version()}},
            upsert=True,
        )
        self.galleries.update_many({FACES_VERSION: {"$exists": False}}, {"$set": {FACES_VERSION: new_version()}})

    # ---- ids ----

    @_in_thread
    def allocate_ids(self, count: int) -> int:
        """Reserve `count` consecutive face ids; returns the first. Ids start at 1 and are never reused."""
        doc = self.counters.find_one_and_update(
            {"_id": FACE_ID_COUNTER}, {"$inc": {"value": count}}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise FailedPrecondition("the face id counter is missing; restarting the gateway recreates it")
        return int(doc["value"]) - count + 1

    # ---- face lifecycle ----

    @_in_thread
    def insert_faces(self, ids: Sequence[int], faces: Sequence[NewFace], state: str = ACTIVE,
                     retired: Sequence[int] = ()) -> list[Face]:
        """Insert the faces, faces[i] with ids[i], in one unordered bulk write; returns them as they will be
        shown. `retired`: ids given up on (faces moved off a shard that failed), inserted along as "deleting"
        so that repair removes whatever their shard kept of them. Raises IncompleteInsert when some failed."""
        now = utcnow()
        docs = [new_face_doc(face_id, f, now, state) for face_id, f in zip(ids, faces, strict=True)]
        tombstones = [{"_id": i, "state": DELETING, "galleries": [], "created": now, "updated": now} for i in retired]
        written = docs + tombstones
        try:
            self.faces.insert_many(written, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            failed = {e["index"] for e in errors}
            # A duplicate of a document of this very call (same id, same `created`) is ours: the driver sent the
            # write again after a lost connection while the first attempt still ran. The ids are this
            # enrollment's alone, so a document under one of them with this call's time can be no one else's.
            dups = [written[e["index"]]["_id"] for e in errors if e.get("code") == 11000]
            ours = {d["_id"] for f in id_filters(dups) for d in self.faces.find({**f, "created": now}, {"_id": 1})}
            failed = {k for k in failed if written[k]["_id"] not in ours}
            if failed:
                inserted = sum(1 for k in range(len(docs)) if k not in failed)
                raise IncompleteInsert(f"{len(docs) - inserted} of {len(docs)} face documents not inserted: "
                                       f"{errors[0].get('errmsg', exc)}", inserted) from None
            log.warning("%d of %d face documents were in already: a write sent again after a lost connection",
                        len(ours), len(written))
        return [face_from_doc(doc) for doc in docs]

    def _update_ids(self, ids: Sequence[int], query: dict, update: dict) -> int:
        return sum(self.faces.update_many({**f, **query}, update).modified_count for f in id_filters(ids))

    def _count_ids(self, ids: Sequence[int], query: dict) -> int:
        return sum(self.faces.count_documents({**f, **query}) for f in id_filters(ids))

    # ---- the import journal (see enrollment.py) ----

    @_in_thread
    def open_journal(self, key: str, ids: Sequence[int], faces: int, galleries: Iterable[str]) -> None:
        self.imports.insert_one({"_id": key, "state": PENDING, "ids": id_runs(ids), "faces": faces,
                                 "galleries": sorted(set(galleries)), "created": utcnow()})

    @_in_thread
    def extend_journal(self, key: str, ids: Sequence[int]) -> bool:
        """Add ids to a pending entry; False when it is no longer pending (aborted)."""
        result = self.imports.update_one({"_id": key, "state": PENDING}, {"$push": {"ids": {"$each": id_runs(ids)}}})
        return result.matched_count == 1

    @_in_thread
    def journal_state(self, key: str) -> str | None:
        doc = self.imports.find_one({"_id": key}, {"state": 1})
        return doc["state"] if doc else None

    @_in_thread
    def close_journal(self, key: str) -> bool:
        """Remove a pending entry: its faces are enrolled. False when it was aborted instead; an entry already
        gone was completed by repair (which found every face's document in place), so True as well."""
        if self.imports.delete_one({"_id": key, "state": PENDING}).deleted_count == 1:
            return True
        return self.imports.find_one({"_id": key}, {"_id": 1}) is None

    @_in_thread
    def complete_journal(self, key: str) -> bool:
        """Repair's: remove a pending entry whose faces all have their documents; False when it is no longer
        pending (the enrollment closed or aborted it meanwhile)."""
        return self.imports.delete_one({"_id": key, "state": PENDING}).deleted_count == 1

    @_in_thread
    def abort_journal(self, key: str) -> bool:
        """pending -> aborted; False when it was not pending (already aborted, completed, or never written)."""
        result = self.imports.update_one({"_id": key, "state": PENDING},
                                         {"$set": {"state": ABORTED, "aborted": utcnow()}})
        return result.modified_count == 1

    @_in_thread
    def mark_journal_cleaned(self, key: str) -> None:
        self.imports.update_one({"_id": key, "state": ABORTED}, {"$set": {"cleaned": utcnow()}})

    @_in_thread
    def drop_journal(self, key: str) -> None:
        self.imports.delete_one({"_id": key, "state": ABORTED})

    @_in_thread
    def journals(self, state: str, created_before: datetime | None = None) -> list[dict]:
        query: dict[str, Any] = {"state": state}
        if created_before is not None:
            query["created"] = {"$lt": created_before}
        return list(self.imports.find(query).sort("_id", pymongo.ASCENDING))

    @_in_thread
    def count_active(self, ids: Sequence[int]) -> int:
        return self._count_ids(ids, {"state": ACTIVE})

    @_in_thread
    def count_existing(self, ids: Sequence[int]) -> int:
        """Documents in any state among `ids`."""
        return self._count_ids(ids, {})

    @_in_thread
    def mark_deleting(self, ids: Sequence[int], from_states: Iterable[str] = (PENDING, ACTIVE)) -> int:
        from_states = list(from_states)
        marked = self._update_ids(ids, {"state": {"$in": from_states}},
                                  {"$set": {"state": DELETING, "updated": utcnow()}})
        if marked and ACTIVE in from_states:
            self._touch(None)  # a rollback, rare: which galleries its faces were in is not worth a read
        return marked

    @_in_thread
    def claim_for_delete(self, face_id: int) -> Face | None:
        """active -> deleting for one face; None when there is no such active face."""
        if not can_exist(face_id):
            return None
        doc = self.faces.find_one_and_update(
            {"_id": face_id, "state": ACTIVE},
            {"$set": {"state": DELETING, "updated": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        self._touch(doc.get("galleries", ()))
        return face_from_doc(doc)

    @_in_thread
    def delete_deleting(self, ids: Sequence[int]) -> int:
        """Drop the documents of faces in state deleting (whose descriptors are already gone)."""
        return sum(self.faces.delete_many({**f, "state": DELETING}).deleted_count for f in id_filters(ids))

    @_in_thread
    def set_urls(self, face_id: int, urls: dict[str, str]) -> None:
        """Record where the photo store keeps a face's photo, thumbnail and normalized crop."""
        doc = self.faces.find_one_and_update({"_id": face_id, "state": ACTIVE}, {"$set": urls}, {"galleries": 1})
        if doc is not None:
            self._touch(doc.get("galleries", ()))

    # ---- reads ----

    @_in_thread
    def get_active(self, face_id: int) -> Face | None:
        # Ids beyond int64 are asked for by clients (Verify by face_id, GetFace); MongoDB cannot even hold them.
        if not can_exist(face_id):
            return None
        doc = self.faces.find_one({"_id": face_id, "state": ACTIVE})
        return face_from_doc(doc) if doc else None

    @_in_thread
    def get_doc(self, face_id: int) -> dict | None:
        if not can_exist(face_id):
            return None
        return self.faces.find_one({"_id": face_id})

    @_in_thread
    def active_faces(self, ids: Sequence[int]) -> dict[int, Face]:
        """The active faces among `ids` (one batched lookup, chunked), by id."""
        found: dict[int, Face] = {}
        for f in id_filters(ids):
            for doc in self.faces.find({**f, "state": ACTIVE}):
                found[doc["_id"]] = face_from_doc(doc)
        return found

    # ---- updates ----

    @_in_thread
    def update_face(self, face_id: int, rev: int, changes: dict, sync_token: str | None) -> Face | None:
        """Apply `changes` if the face is still active at revision `rev`; None when it changed meanwhile."""
        update: dict[str, Any] = {"$set": {**changes, "updated": utcnow()}, "$inc": {"rev": 1}}
        if sync_token is not None:
            update["$set"]["sync"] = sync_token
        before = self.faces.find_one_and_update({"_id": face_id, "state": ACTIVE, "rev": rev}, update)
        if before is None:
            return None
        self._touch([*before.get("galleries", ()), *changes.get("galleries", ())])
        return face_from_doc({**before, **update["$set"], "rev": rev + 1})

    @_in_thread
    def clear_sync(self, face_id: int, token: str, galleries: Sequence[str]) -> bool:
        """Drop the sync mark if nobody changed the face's galleries since `token` was pushed to its shard."""
        result = self.faces.update_one(
            {"_id": face_id, "sync": token, "galleries": list(galleries)}, {"$unset": {"sync": ""}}
        )
        return result.modified_count == 1

    # ---- repair scans ----

    @_in_thread
    def stale_pending(self, older_than: datetime, limit: int) -> list[int]:
        cursor = self.faces.find({"state": PENDING, "created": {"$lt": older_than}}, {"_id": 1}).limit(limit)
        return [doc["_id"] for doc in cursor]

    @_in_thread
    def deleting_ids(self, limit: int, gallery: str | None = None, after_id: int = 0) -> list[int]:
        """Ids of faces being deleted, ascending, from after `after_id`."""
        query: dict[str, Any] = {"state": DELETING, "_id": {"$gt": after_id}}
        if gallery is not None:
            query["galleries"] = gallery
        cursor = self.faces.find(query, {"_id": 1}).sort("_id", pymongo.ASCENDING).limit(limit)
        return [doc["_id"] for doc in cursor]

    @_in_thread
    def unsynced(self, limit: int) -> list[dict]:
        query = {"sync": {"$exists": True}, "state": ACTIVE}
        return list(self.faces.find(query, {"_id": 1, "sync": 1, "galleries": 1}).limit(limit))

    @_in_thread
    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of `ids` that have a document in any state."""
        return {doc["_id"] for f in id_filters(ids) for doc in self.faces.find(f, {"_id": 1})}

    # ---- galleries ----

    @_in_thread
    def create_gallery(self, name: str) -> Gallery:
        now = utcnow()
        try:
            self.galleries.insert_one({"_id": name, "created": now, "state": ACTIVE, FACES_VERSION: new_version()})
        except DuplicateKeyError:
            raise AlreadyExists(f"gallery {name!r} already exists") from None
        return Gallery(name=name, face_count=0, created_at=now)

    @_in_thread
    def missing_galleries(self, names: Iterable[str]) -> list[str]:
        """Those of `names` that are not active galleries, in the given order."""
        names = list(dict.fromkeys(names))
        found = {doc["_id"] for doc in self.galleries.find({"_id": {"$in": names}, "state": ACTIVE}, {"_id": 1})}
        return [n for n in names if n not in found]

    @_in_thread
    def gallery_version(self, name: str) -> str | None:
        """The gallery's faces_version; None when there is no such active gallery, "" when it has none (made by a
        gateway from before versions: nothing of it is cached until a change gives it one)."""
        doc = self.galleries.find_one({"_id": name, "state": ACTIVE}, {FACES_VERSION: 1})
        return None if doc is None else str(doc.get(FACES_VERSION, ""))

    @_in_thread
    def claim_gallery_for_delete(self, name: str) -> bool:
        """active -> deleting; False when no such active gallery (a deletion already under way counts)."""
        doc = self.galleries.find_one_and_update({"_id": name}, {"$set": {"state": DELETING}})
        if doc is None:
            return False
        self._touch([name])  # this gateway's searches must not go on taking it as there
        return True

    @_in_thread
    def faces_under_way(self) -> int:
        """Faces that hold license quota and may not be on their shards yet: those of each pending journal entry
        that have no active document, and the pending documents of older gateways. The shards count the rest
        (status.faces_holding_quota says in which order). Index and id lookups: entries are few and small."""
        entries = list(self.imports.find({"state": PENDING}, {"ids": 1, "faces": 1}))
        under_way = sum(max(0, int(e["faces"]) - self._count_ids(ids_of_runs(e["ids"]), {"state": ACTIVE}))
                        for e in entries)
        return under_way + sum(1 for _ in self.faces.find({"state": PENDING}, {"_id": 1}))

    @_in_thread
    def mark_gallery_faces_deleting(self, name: str) -> int:
        """Every face in the gallery that is visible or being enrolled -> deleting; returns how many were active.

        Enrollments into the gallery under way are aborted first: those whose faces are not visible yet never
        make them so, and roll back (see enrollment.py); faces made visible before the mark are taken here."""
        self.imports.update_many({"state": PENDING, "galleries": name},
                                 {"$set": {"state": ABORTED, "aborted": utcnow()}})
        update = {"$set": {"state": DELETING, "updated": utcnow()}}
        active = self.faces.update_many({"galleries": name, "state": ACTIVE}, update).modified_count
        # Enrollments into the gallery still under way fail when they find their faces gone from pending.
        self.faces.update_many({"galleries": name, "state": PENDING}, update)
        if active:
            self._touch(None)  # its faces were in other galleries too
        return active

    @_in_thread
    def drop_gallery(self, name: str) -> bool:
        return self.galleries.delete_one({"_id": name, "state": DELETING}).deleted_count == 1

    @_in_thread
    def deleting_galleries(self) -> list[str]:
        return [doc["_id"] for doc in self.galleries.find({"state": DELETING}, {"_id": 1})]

    @_in_thread
    def list_galleries(self) -> list[Gallery]:
        """The active galleries by name, without face counts (the shards hold those: galleries.py)."""
        return [Gallery(name=doc["_id"], face_count=0, created_at=doc.get("created"))
                for doc in self.galleries.find({"state": ACTIVE}, {"created": 1}).sort("_id", pymongo.ASCENDING)]

    @_in_thread
    def gallery_count(self) -> int:
        """Active galleries, for the cluster status: a small collection, unlike the faces."""
        return self.galleries.count_documents({"state": ACTIVE})

    @_in_thread
    def ping(self) -> None:
        self.client.admin.command("ping")


class MetadataView:
    """A store of its own over MetadataStore's database, sharing its client, threads and outage breaker (so that
    `_in_thread` methods work on it as on MetadataStore)."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.faces = metadata.faces
        self.counters = metadata.counters
        self.outage = metadata.outage
        self._executor = metadata._executor
