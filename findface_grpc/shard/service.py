"""The shard's domain service: Tarantool is the durable copy, the in-memory index answers searches.

Writes go to Tarantool first and reach the index only once Tarantool has acknowledged them, one write at a time,
so the index never holds a face that a restart would lose and both apply writes in the same order. At start the
index is rebuilt from Tarantool with the packed scan.

At start the index comes from its snapshot plus the writes Tarantool acknowledged since (snapshot.py), or when
there is no usable snapshot, from a full scan of Tarantool.

The index holds compact int8 rows; a search re-scores its best candidates exactly, from the rows' residuals in
memory (`[shard] rescore = memory`, the default) or with their float16 descriptors read from Tarantool over a
connection of its own (writes never queue in front of it). Searches never depend on Tarantool: while it is down,
Add/Remove/UpdateGalleries/Get/ListIds fail with UNAVAILABLE but Search keeps answering from memory, which holds
every acknowledged write (with the approximate scores of the compact rows, within about 1e-3, where the exact ones
would come from Tarantool). Identification is the traffic that matters most, and refusing it would turn a storage
hiccup into an outage of the whole cluster's search.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from findface_grpc.errors import ConfigError, InvalidArgument, NotFound, Unavailable
from findface_grpc.observability import metrics
from findface_grpc.tasks import cancel_and_wait
from findface_grpc.shard.batching import SearchBatcher
from findface_grpc.shard.config import ShardConfig
from findface_grpc.shard.index import FaceIndex, Hit
from findface_grpc.shard.index_fast import FastIndexState
from findface_grpc.shard.locks import WouldBlock
from findface_grpc.outage import OutageBreaker
from findface_grpc.shard import snapshot
from findface_grpc.shard.fast_index import FastIndexes, FastState
from findface_grpc.shard.rows import code_scale
from findface_grpc.shard.store import Model, StoredFace, TarantoolStore, as_stored, decode_vectors, stored_bytes

log = logging.getLogger(__name__)

# Descriptors must be unit length (cosine = dot product); this much slack allows for float16 round trips.
NORM_TOLERANCE = 1e-2


@dataclass(frozen=True)
class NewFace:
    face_id: int
    galleries: tuple[str, ...]
    model: Model
    vector: np.ndarray  # float32, model.dim values


@dataclass(frozen=True)
class Face:
    face_id: int
    galleries: tuple[str, ...]
    vector: np.ndarray | None  # None unless asked for


@dataclass(frozen=True)
class ShardStats:
    shard_id: str
    face_count: int
    gallery_counts: dict[str, int]
    model: Model
    index_bytes: int
    rss_bytes: int
    tarantool_arena_bytes: int
    fast_indexes: list[FastState]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def check_unit_vectors(vectors: np.ndarray, what: str, labels: Sequence[object]) -> None:
    """Refuse non-finite or non-unit descriptors: they would give scores outside [-1, 1] for every search."""
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1) > NORM_TOLERANCE))
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"{what} {labels[i]} is not a unit-length descriptor (norm {norms[i]:.4g})")


# Re-scoring reads wait at most this long for Tarantool before a search answers with approximate scores.
RESCORE_TIMEOUT_S = 2.0
# A search that scores at most this many rows (queries x rows each; a few ms at most) is answered on the event loop,
# in the calling coroutine: the batcher's queue and the hand-off to a search thread and back cost more CPU than
# such a search (a shard server at 5,000 faces: about a quarter of its CPU per Search call at concurrency 8). A fast
# index's search is one: about 3,000 rows a query at 500,000 faces.
SEARCH_HERE_MAX_ROWS = 100_000


def _probed_rows(fast: FastIndexState) -> int:
    """About how many rows a fast-index search scores per query: its probed lists (of about equal size) and the
    faces not merged into them yet."""
    return fast.listed * fast.nprobe // max(1, fast.lists) + fast.delta


class ShardService:
    def __init__(self, config: ShardConfig, store: TarantoolStore) -> None:
        self.config = config
        self.store = store
        host, port = config.tarantool_address
        self._rescore_store = TarantoolStore(host, port, min(config.tarantool_timeout_s, RESCORE_TIMEOUT_S))
        # While Tarantool is down, searches skip re-scoring at once instead of each waiting for a connection.
        self._rescore_breaker = OutageBreaker(f"shard storage (Tarantool at {self.store.address})")
        self.model = Model(config.model_id, config.dim)
        self.index: FaceIndex | None = None
        self._residuals = config.rescore == "memory"
        # Tarantool calls block; they run here. The store serialises them on its one connection anyway.
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shard-io")
        self._search_pool = ThreadPoolExecutor(max_workers=config.search_workers, thread_name_prefix="shard-search")
        # One write at a time from Tarantool call to index update, so that both see writes in the same order.
        self._write_lock = threading.Lock()
        # Ids whose write failed after it may have reached Tarantool (connection lost mid-call): before the next
        # write the index re-reads them, so it cannot keep disagreeing with the store.
        self._unsure: set[int] = set()
        self.batcher = SearchBatcher(self._search, self._search_pool, config.search_batch_max, config.search_workers,
                                     self._search_here)
        self._snapshot_path = Path(config.snapshot_dir) / snapshot.FILE_NAME if config.snapshot_dir else None
        self._snapshot_version = -1  # the version the snapshot on disk was taken at
        self._snapshotter: asyncio.Task | None = None
        # The ids written since the snapshot the index was loaded from (a fast index saved with it lists them
        # under their old descriptors).
        self._changed_since_snapshot: set[int] = set()
        self.fast = FastIndexes(
            config.shard_id, config.fast_index_min_faces, config.fast_index_nprobe, config.fast_index_merge_batch,
            Path(config.snapshot_dir) if config.snapshot_dir else None,
        )
        self.fast.on_built = self._save_fast_soon
        self._fast_keeper: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _in_io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._in_io(self._wait_for_store)
        await self._in_io(self._load)
        self.batcher.start()
        if self._snapshot_path is not None:
            self._snapshotter = asyncio.create_task(self._snapshot_loop())
        self._fast_keeper = asyncio.create_task(self._fast_index_loop())

    async def stop(self) -> None:
        if self._fast_keeper is not None:
            await cancel_and_wait(self._fast_keeper)
        self.fast.close()
        if self._snapshotter is not None:
            await cancel_and_wait(self._snapshotter)
            try:
                await self._in_io(self._take_snapshot)
            except Exception as exc:  # noqa: BLE001 - the next start rebuilds instead; stopping must go on
                log.warning("no snapshot at stop: %s", exc)
        await self.batcher.stop()
        self._search_pool.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        self._rescore_store.close()

    def _wait_for_store(self) -> None:
        deadline = time.monotonic() + self.config.tarantool_connect_timeout_s
        while True:
            try:
                self.store.ping()
                return
            except Unavailable as exc:
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"{exc}; gave up after {self.config.tarantool_connect_timeout_s:.0f}s"
                    ) from None
                log.info("waiting for Tarantool at %s", self.store.address)
                time.sleep(0.5)

    def _load(self) -> None:
        stored = self.store.get_model()
        if self.model.known:
            if stored.known and stored != self.model:
                raise ConfigError(
                    f"Tarantool at {self.store.address} holds descriptors of {stored.model_id}/{stored.dim}, "
                    f"the config says {self.model.model_id}/{self.model.dim}"
                )
            if not stored.known:
                self.store.set_model(self.model)
        else:
            self.model = stored
        if not self.model.known:
            count = self.store.stats().face_count
            if count:
                raise ConfigError(f"Tarantool at {self.store.address} holds {count} faces but no model")
            log.info("shard %s is empty; it will take the model of its first Add", self.config.shard_id)
            return
        self.index = self._from_snapshot(self.model.dim) or self._rebuild(self.model.dim)
        self.fast.load(self.index, self.model.model_id, self.model.dim, self._changed_since)

    def _changed_since(self, version: int) -> set[int]:
        """The ids Tarantool wrote after `version`."""
        if version == self._snapshot_version:
            return self._changed_since_snapshot
        changed: set[int] = set()
        after = version
        while True:
            page, last = self.store.changes_since(after, self.config.rebuild_page, self.model.dim)
            if not len(page.ids):
                return changed
            changed.update(int(i) for i in page.ids)
            after = last

    def _from_snapshot(self, dim: int) -> FaceIndex | None:
        """The snapshot brought up to date with what Tarantool changed since, or None to rebuild instead."""
        if self._snapshot_path is None:
            return None
        began = time.monotonic()
        loaded = snapshot.read(self._snapshot_path, self.model.model_id, dim, code_scale(dim), self._residuals)
        if loaded is None:
            return None
        index, version = loaded.index, loaded.version
        removed = 0
        while batch := self.store.removed_since(version, self.config.rebuild_page):
            removed += index.remove([face_id for _, face_id in batch])
            version = batch[-1][0]
        written, after = 0, loaded.version
        while True:
            page, last = self.store.changes_since(after, self.config.rebuild_page, dim)
            if not len(page.ids):
                break
            index.upsert(page.ids, page.vectors, page.galleries)
            self._changed_since_snapshot.update(int(i) for i in page.ids)
            written, after = written + len(page.ids), last
        stored = self.store.stats().face_count
        if len(index) != stored:
            log.warning(
                "shard %s: snapshot at version %d plus changes holds %d faces, Tarantool %d: rebuilding instead",
                self.config.shard_id, loaded.version, len(index), stored,
            )
            return None
        self._snapshot_version = loaded.version
        log.info(
            "shard %s: index from its snapshot (version %d, %d faces) plus %d writes and %d deletes since, in %.2fs",
            self.config.shard_id, loaded.version, len(index) - written, written, removed, time.monotonic() - began,
        )
        return index

    async def _snapshot_loop(self) -> None:
        while True:
            try:
                await self._in_io(self._take_snapshot)
            except Exception as exc:  # noqa: BLE001 - tried again next interval; a restart can always rebuild
                log.warning("shard %s: snapshot failed: %s", self.config.shard_id, exc)
            await asyncio.sleep(self.config.snapshot_interval_s)

    def _take_snapshot(self) -> None:
        """Write the index to disk as of Tarantool's latest version, unless nothing changed since the last one.

        Holds the write lock throughout (writes wait, searches do not): every acknowledged write reaches the index
        under that lock, so while it is held the index is exactly Tarantool at `version`.
        """
        if self.index is None or self._snapshot_path is None:
            return
        with self._write_lock:
            self._resync_unsure()
            version = self.store.version()
            self.fast.save(self.index, version, self.model.model_id, self.model.dim)
            if version == self._snapshot_version:
                return
            began = time.monotonic()
            image = self.index.image()
            self._snapshot_path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.write(self._snapshot_path, image, self.index.codes_blocks(image.count), self.model.model_id,
                           self.model.dim, version)
            self._snapshot_version = version
        forgotten = self.store.forget_removed(version)
        log.info("shard %s: snapshot of %d faces at version %d in %.2fs (%d deletes forgotten)",
                 self.config.shard_id, image.count, version, time.monotonic() - began, forgotten)

    def _save_fast_soon(self) -> None:
        """A fast index was built: save it now (a restart would otherwise build it again)."""
        if self._loop is not None and self._snapshot_path is not None:
            self._loop.call_soon_threadsafe(lambda: self._io.submit(self._save_fast))

    def _save_fast(self) -> None:
        if self.index is None:
            return
        try:
            with self._write_lock:
                self._resync_unsure()
                self.fast.save(self.index, self.store.version(), self.model.model_id, self.model.dim)
        except Exception as exc:  # noqa: BLE001 - saved again with the next snapshot
            log.warning("shard %s: fast index not saved: %s", self.config.shard_id, exc)

    async def _fast_index_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.fast_index_check_s)
            if self.index is None:
                continue
            try:
                await self._in_io(self.fast.maintain, self.index)
            except Exception as exc:  # noqa: BLE001 - tried again next time; searches go on exactly
                log.warning("shard %s: fast index upkeep failed: %s", self.config.shard_id, exc)

    def build_fast_index(self, gallery: str, nprobe: int) -> FastState:
        if self.index is None:
            raise NotFound(f"shard {self.config.shard_id} holds no faces")
        return self.fast.build(self.index, gallery, nprobe)

    def drop_fast_index(self, gallery: str) -> FastState:
        if self.index is None:
            raise NotFound(f"shard {self.config.shard_id} holds no faces")
        return self.fast.drop(self.index, gallery)

    def _rebuild(self, dim: int) -> FaceIndex:
        began = time.monotonic()
        index = FaceIndex(dim, capacity=self.store.stats().face_count, residuals=self._residuals)
        size = self.config.rebuild_page
        # The next page is fetched while this one goes into the index: Tarantool packs pages in its own process,
        # so its work and ours overlap instead of taking turns.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-rebuild") as fetcher:
            page = self.store.scan(0, size, dim)
            migrated = 0
            while len(page.ids):
                following = fetcher.submit(self.store.scan, int(page.ids[-1]), size, dim)
                index.upsert(page.ids, as_stored(page.vectors) if page.legacy else page.vectors, page.galleries)
                if page.legacy:
                    self.store.add([(int(i), g, stored_bytes(v)) for i, g, v in zip(page.ids, page.galleries, page.vectors)])
                    migrated += len(page.ids)
                page = following.result()
            if migrated:
                log.info("shard %s: %d float32 descriptors rewritten as float16", self.config.shard_id, migrated)
        seconds = time.monotonic() - began
        log.info(
            "shard %s: index rebuilt from Tarantool: %d faces of %s/%d in %.2fs (%.0f faces/s)",
            self.config.shard_id, len(index), self.model.model_id, dim, seconds, len(index) / max(seconds, 1e-9),
        )
        return index

    # Writes: all run in the io pool, one at a time under the write lock.

    def _resync_unsure(self) -> None:
        if not self._unsure or self.index is None:
            return
        ids = sorted(self._unsure)
        stored = self.store.get(ids, with_vectors=True)
        present = {f.face_id for f in stored}
        if stored:
            self.index.upsert(
                [f.face_id for f in stored],
                np.concatenate([decode_vectors(f.vector, 1, self.index.dim) for f in stored]),
                [f.galleries for f in stored],
            )
        self.index.remove([i for i in ids if i not in present])
        self._unsure.clear()

    def _write(self, ids: Sequence[int], call: Callable):
        with self._write_lock:
            self._resync_unsure()
            try:
                return call()
            except Unavailable:
                self._unsure.update(ids)
                raise

    def _adopt_model(self, candidate: Model) -> None:
        """Give an empty, unconfigured shard the model of its first Add (recorded in Tarantool for restarts)."""
        adopted = self.store.set_model(candidate)
        if adopted != self.model:
            self.model = adopted
            self.index = FaceIndex(adopted.dim, residuals=self._residuals)
            log.info("shard %s now holds descriptors of %s/%d", self.config.shard_id, adopted.model_id, adopted.dim)

    def _add(self, faces: Sequence[NewFace], vectors: np.ndarray) -> tuple[int, int]:
        # The model is checked (and for a new shard adopted) under the write lock, so two first Adds of
        # different models cannot both succeed.
        if not self.model.known:
            self._adopt_model(faces[0].model)
        for face in faces:
            if face.model != self.model:
                raise InvalidArgument(
                    f"face {face.face_id}: descriptor of {face.model.model_id}/{face.model.dim}, "
                    f"this shard holds {self.model.model_id}/{self.model.dim}"
                )
        counts = self.store.add([(f.face_id, f.galleries, stored_bytes(f.vector)) for f in faces])
        self.index.upsert([f.face_id for f in faces], vectors, [f.galleries for f in faces])
        return counts

    async def add(self, faces: Sequence[NewFace]) -> tuple[int, int]:
        """Insert or replace faces; durable in Tarantool when it returns. Returns (added, replaced)."""
        if not faces:
            return 0, 0
        dims = {f.vector.shape for f in faces}
        if len(dims) != 1:
            raise InvalidArgument(f"descriptors of one Add must have one dimension, got {sorted(dims)}")
        vectors = np.stack([f.vector for f in faces])
        check_unit_vectors(vectors, "face", [f.face_id for f in faces])
        vectors = as_stored(vectors)
        return await self._in_io(self._write, [f.face_id for f in faces], lambda: self._add(faces, vectors))

    async def remove(self, ids: Sequence[int]) -> int:
        def call():
            removed = self.store.remove(ids)
            if self.index is not None:
                self.index.remove(ids)
            return removed

        return await self._in_io(self._write, ids, call)

    async def update_galleries(
        self, ids: Sequence[int], add: Sequence[str], remove: Sequence[str], replace: bool
    ) -> int:
        def call():
            changed = self.store.update_galleries(ids, add, remove, replace)
            if self.index is not None:
                self.index.set_galleries(changed)
            return len(changed)

        return await self._in_io(self._write, ids, call)

    # Reads.

    async def get(self, ids: Sequence[int], with_vectors: bool) -> list[Face]:
        stored: list[StoredFace] = await self._in_io(self.store.get, ids, with_vectors)
        return [
            Face(f.face_id, f.galleries, decode_vectors(f.vector, 1, self.model.dim)[0] if with_vectors else None)
            for f in stored
        ]

    async def list_ids(self, after_id: int, limit: int) -> list[int]:
        return await self._in_io(self.store.list_ids, after_id, limit)

    def _search(self, gallery: str, queries: np.ndarray, ks: list[int], thresholds: list[float],
                full_scan: bool, wait: bool = True) -> list[list[Hit]]:
        index = self.index
        if index is None:
            return [[] for _ in range(len(queries))]
        stats = index.stats()
        hits = index.search_many(queries, gallery, ks, thresholds, exact=self._stored_vectors, full_scan=full_scan,
                                 wait=wait)
        fast = None if full_scan else stats.fast.get(gallery)
        if fast is None:  # one pass over the gallery's rows for all the queries
            metrics.SHARD_SEARCHES.labels("full").inc(len(queries))
            metrics.SHARD_ROWS_SCANNED.inc(stats.gallery_counts.get(gallery, 0))
        else:
            metrics.SHARD_SEARCHES.labels("fast").inc(len(queries))
            metrics.SHARD_ROWS_SCANNED.inc(len(queries) * _probed_rows(fast))
        return hits

    def _search_here(self, gallery: str, queries: np.ndarray, ks: list[int], thresholds: list[float],
                     full_scan: bool) -> list[list[Hit]] | None:
        """The search done on the calling thread (the event loop) when it is cheap and need not wait for a writer or
        for Tarantool; None: it is for a search thread."""
        index = self.index
        if index is None or not self._residuals:
            return None
        stats = index.stats()
        fast = None if full_scan else stats.fast.get(gallery)
        per_query = stats.gallery_counts.get(gallery, 0) if fast is None else _probed_rows(fast)
        if per_query * len(queries) > SEARCH_HERE_MAX_ROWS:
            return None
        try:
            return self._search(gallery, queries, ks, thresholds, full_scan, wait=False)
        except WouldBlock:
            return None

    def _stored_vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        self._rescore_breaker.before_call()
        try:
            vectors = self._rescore_store.vectors(ids, self.model.dim)
        except Unavailable as exc:
            self._rescore_breaker.failed(exc.message)
            raise
        self._rescore_breaker.answered()
        return vectors

    async def search(self, queries: np.ndarray, models: Sequence[Model], gallery: str, k: int,
                     threshold: float, full_scan: bool = False) -> list[list[Hit]]:
        """Per query, the k best faces of the gallery at or above threshold, best first."""
        if not self.model.known:
            return [[] for _ in range(len(queries))]
        for i, model in enumerate(models):
            if model != self.model:
                raise InvalidArgument(
                    f"query {i}: descriptor of {model.model_id}/{model.dim}, "
                    f"this shard holds {self.model.model_id}/{self.model.dim}"
                )
        check_unit_vectors(queries, "query", range(len(queries)))
        return await self.batcher.search(gallery, queries, k, threshold, full_scan)

    async def stats(self) -> ShardStats:
        index_stats = self.index.stats() if self.index is not None else None
        try:
            arena = (await self._in_io(self.store.stats)).arena_used
        except Unavailable as exc:
            # Counts come from memory and stay useful for monitoring while the store is down.
            log.warning("stats without Tarantool's arena: %s", exc)
            arena = 0
        return ShardStats(
            shard_id=self.config.shard_id,
            face_count=index_stats.face_count if index_stats else 0,
            gallery_counts=index_stats.gallery_counts if index_stats else {},
            model=self.model,
            index_bytes=index_stats.nbytes if index_stats else 0,
            rss_bytes=rss_bytes(),
            tarantool_arena_bytes=arena,
            fast_indexes=self.fast.states(self.index),
        )
