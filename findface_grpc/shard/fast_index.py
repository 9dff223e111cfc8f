"""The shard's fast indexes over time: when to build one, building it in the background, merging the faces
enrolled since into its lists, saving it beside the snapshot and loading it at start.

The structure itself is ann.py's and the index's (index.py); this module decides and schedules. Builds run on
one thread of their own with one faiss thread, so that a build takes a core at most and searches and writes go
on beside it: the gallery is scanned exactly until the new lists are installed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from findface_grpc.errors import NotFound
from findface_grpc.shard import snapshot
from findface_grpc.shard.ann import (
    REFINE_STEPS,
    TRAINING_PER_LIST,
    Layout,
    add_to_nearest,
    lists_for,
    moved_centroids,
    nearest_lists,
    train_centroids,
)
from findface_grpc.shard.index import FaceIndex

log = logging.getLogger(__name__)

BUILDING, READY, FAILED, DROPPED = "BUILDING", "READY", "FAILED", "DROPPED"
# A build's share of its work spent on the sample's k-means (the rest: passes over every face, to refine the
# centroids and then to assign each face to a list).
TRAINING_SHARE = 0.15
# The share of a fast index's faces that may sit apart from their lists' runs of rows (merged, or moved by
# removals, since the rows were laid out) before the rows are laid out again: a search gathers each such face
# alone, and laying out costs about a second per million faces, during which writes wait.
RELAYOUT_SHARE = 0.1


@dataclass(frozen=True)
class FastState:
    gallery: str
    state: str
    progress: float = 0.0
    listed: int = 0
    delta: int = 0
    lists: int = 0
    nprobe: int = 0
    nbytes: int = 0
    error: str = ""
    built_at: float = 0.0


def build_layout(index: FaceIndex, gallery: str, progress: Callable[[float], None] = lambda done: None) -> Layout:
    """The lists of a gallery's faces: k-means on a sample, REFINE_STEPS Lloyd steps over every face, then each
    face in its nearest list. `progress` hears the share done, from 0 to 1."""
    faces = index.member_count(gallery)
    lists = lists_for(faces)
    centroids = train_centroids(index.sample_vectors(gallery, lists * TRAINING_PER_LIST, seed=faces), lists)
    progress(TRAINING_SHARE)
    passes = REFINE_STEPS + 1
    for step in range(REFINE_STEPS):
        sums = np.zeros_like(centroids)
        for _, vectors in index.member_blocks(gallery):
            add_to_nearest(vectors, centroids, sums)
        centroids = moved_centroids(sums, centroids)
        progress(TRAINING_SHARE + (1 - TRAINING_SHARE) * (step + 1) / passes)
    ids, assigned, done = [], [], 0
    for block_ids, vectors in index.member_blocks(gallery):
        ids.append(block_ids)
        assigned.append(nearest_lists(vectors, centroids)[:, 0])
        done += len(block_ids)
        progress(TRAINING_SHARE + (1 - TRAINING_SHARE) * (REFINE_STEPS + min(1.0, done / max(faces, 1))) / passes)
    return Layout.grouped(centroids, _joined(ids), _joined(assigned))


def lay_out_rows(index: FaceIndex) -> None:
    """Lay the rows out in the list order of the biggest gallery with a fast index (rows have one order: a small
    gallery's index built later must not scatter a big one's lists)."""
    fast = index.stats().fast
    if fast:
        index.cluster_rows(max(fast, key=lambda gallery: (fast[gallery].listed, gallery)))


class FastIndexes:
    def __init__(self, shard_id: str, min_faces: int, nprobe: int, merge_batch: int, directory: Path | None) -> None:
        self.shard_id = shard_id
        self.min_faces = min_faces
        self.nprobe = nprobe
        self.merge_batch = merge_batch
        self.directory = directory
        self._lock = threading.Lock()
        self._progress: dict[str, float] = {}  # galleries being built
        self._failed: dict[str, str] = {}
        self._built_at: dict[str, float] = {}
        self._nprobe_of: dict[str, int] = {}
        self._unsaved: set[str] = set()
        self._saved: set[str] = set()
        # The rows are to be laid out again at the next check: their index was dropped, or laying them out failed.
        self._layout_due = False
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-fast-index")
        # Called after a build is installed, to save it at once rather than at the next snapshot.
        self.on_built: Callable[[], None] = lambda: None

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)

    # Operator's requests.

    def build(self, index: FaceIndex, gallery: str, nprobe: int = 0) -> FastState:
        if index.member_count(gallery) == 0:
            raise NotFound(f"gallery {gallery!r} has no faces on shard {self.shard_id}")
        with self._lock:
            if gallery not in self._progress:
                self._progress[gallery] = 0.0
                self._failed.pop(gallery, None)
                self._builder.submit(self._build, index, gallery, nprobe or self.nprobe)
        return self.state(index, gallery)

    def drop(self, index: FaceIndex, gallery: str) -> FastState:
        dropped = index.drop_fast(gallery)
        with self._lock:
            failed = self._failed.pop(gallery, None) is not None
            self._built_at.pop(gallery, None)
            self._unsaved.discard(gallery)
            # The rows may have followed this index's lists: the biggest one left gets them, at the next check
            # (in the upkeep's thread: this call runs on the server's event loop, which the copy would stop).
            self._layout_due |= dropped
        if self.directory is not None:
            snapshot.remove_fast(self.directory, gallery)
            self._saved.discard(gallery)
        if not (dropped or failed):
            raise NotFound(f"gallery {gallery!r} has no fast index on shard {self.shard_id}")
        return FastState(gallery, DROPPED)

    def states(self, index: FaceIndex | None) -> list[FastState]:
        ready = index.stats().fast if index is not None else {}
        with self._lock:
            names = sorted(set(ready) | set(self._progress) | set(self._failed))
        return [self._state(ready, name) for name in names]

    def state(self, index: FaceIndex, gallery: str) -> FastState:
        return self._state(index.stats().fast, gallery)

    def _state(self, ready: dict, gallery: str) -> FastState:
        with self._lock:
            if gallery in self._progress:
                return FastState(gallery, BUILDING, progress=self._progress[gallery])
            if gallery in self._failed:
                return FastState(gallery, FAILED, error=self._failed[gallery])
            built_at = self._built_at.get(gallery, 0.0)
        fast = ready.get(gallery)
        if fast is None:
            return FastState(gallery, DROPPED)
        return FastState(gallery, READY, 1.0, fast.listed, fast.delta, fast.lists, fast.nprobe, fast.nbytes,
                         built_at=built_at)

    # Building.

    def _build(self, index: FaceIndex, gallery: str, nprobe: int) -> None:
        faiss.omp_set_num_threads(1)
        began = time.monotonic()
        try:
            with index.overwrites_watched() as stale:
                layout = build_layout(index, gallery, lambda done: self._set_progress(gallery, done))
                installed = index.install_fast(gallery, layout, nprobe, stale)
        except Exception as exc:  # noqa: BLE001 - reported in the gallery's state; searches go on exactly
            log.exception("shard %s: fast index of %r failed", self.shard_id, gallery)
            with self._lock:
                self._progress.pop(gallery, None)
                self._failed[gallery] = str(exc) or type(exc).__name__
            return
        with self._lock:
            self._progress.pop(gallery, None)
            self._built_at[gallery] = time.time()
            self._unsaved.add(gallery)
        log.info("shard %s: fast index of %r built in %.1fs: %d faces in %d lists (nprobe %d), %d in the delta",
                 self.shard_id, gallery, time.monotonic() - began, installed.listed, installed.lists, nprobe,
                 installed.delta)
        self._lay_out(index)
        self.on_built()

    def _set_progress(self, gallery: str, progress: float) -> None:
        with self._lock:
            self._progress[gallery] = progress

    def _lay_out(self, index: FaceIndex, gallery: str | None = None) -> bool:
        """Lay the rows out for the gallery's lists, or (lay_out_rows) for the biggest fast index's after a build, a
        load or a drop; whether that was done. The layout only speeds searches up: when it fails (the copy needs
        the rows' memory a second time) the rows stay as they were, every index answers from them, and the layout
        is tried again at the next check."""
        with self._lock:
            self._layout_due = False
        try:
            if gallery is None:
                lay_out_rows(index)
            else:
                index.cluster_rows(gallery)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("shard %s: rows not laid out for the fast indexes' lists (tried again at the next check): "
                        "%s: %s", self.shard_id, type(exc).__name__, exc)
            with self._lock:
                self._layout_due = True
            return False
        return True

    # Upkeep, run every few seconds by the service.

    def maintain(self, index: FaceIndex) -> None:
        """Build the fast index of every gallery that reached min_faces; merge each index's delta; lay the rows out
        when that is due."""
        counts = index.stats().gallery_counts
        with self._lock:
            known = set(self._progress) | set(self._failed)
        present = set(index.fast_galleries())
        for gallery, count in counts.items():
            if count >= self.min_faces and gallery not in present and gallery not in known:
                log.info("shard %s: gallery %r holds %d faces (fast index from %d): building its fast index",
                         self.shard_id, gallery, count, self.min_faces)
                self.build(index, gallery)
        for gallery in present:
            self._merge(index, gallery)
        with self._lock:
            due = self._layout_due
        if due:
            self._lay_out(index)
            return
        for gallery in present:
            self._relayout(index, gallery)

    def _relayout(self, index: FaceIndex, gallery: str) -> None:
        """Lay the rows out again once RELAYOUT_SHARE of the lists' faces sit apart from their lists: those are
        gathered row by row on every search."""
        apart = index.rows_out_of_place(gallery)
        listed = index.stats().fast.get(gallery)
        if apart is None or listed is None or apart <= RELAYOUT_SHARE * max(listed.listed, 1):
            return
        began = time.monotonic()
        if self._lay_out(index, gallery):
            log.info("shard %s: rows laid out again for the lists of %r in %.1fs (%d faces had been apart from theirs)",
                     self.shard_id, gallery, time.monotonic() - began, apart)

    def _merge(self, index: FaceIndex, gallery: str) -> None:
        with index.overwrites_watched() as stale:
            ids, vectors, centroids = index.delta_vectors(gallery, self.merge_batch)
            if not len(ids):
                return
            merged = index.merge_fast(gallery, ids, nearest_lists(vectors, centroids)[:, 0], centroids, stale)
        if merged:
            with self._lock:
                self._unsaved.add(gallery)
            log.debug("shard %s: %d faces merged into the fast index of %r", self.shard_id, merged, gallery)

    # On disk.

    def save(self, index: FaceIndex, version: int, model_id: str, dim: int) -> None:
        """Write the indexes changed since they were last saved, and remove the files of dropped ones. The
        caller holds off writes, so that the lists are those of Tarantool at `version`."""
        if self.directory is None:
            return
        present = set(index.fast_galleries())
        with self._lock:
            unsaved = self._unsaved & present
            self._unsaved -= unsaved
            built_at = dict(self._built_at)
        for gallery in sorted(unsaved):
            layout = index.fast_layout(gallery)
            if layout is not None:
                nprobe = index.stats().fast[gallery].nprobe
                snapshot.write_fast(self.directory, snapshot.SavedFastIndex(
                    gallery, layout, nprobe, version, built_at.get(gallery, time.time())), model_id, dim)
                self._saved.add(gallery)
        for gallery in self._saved - present:
            snapshot.remove_fast(self.directory, gallery)
            self._saved.discard(gallery)

    def load(self, index: FaceIndex, model_id: str, dim: int, changed_since: Callable[[int], set[int]]) -> None:
        """Install the saved indexes. Faces whose descriptors changed after an index was saved stay in its delta
        (`changed_since(version)` names them); faces gone since are left out."""
        if self.directory is None:
            return
        for saved in snapshot.read_fast_all(self.directory, model_id, dim):
            began = time.monotonic()
            state = index.install_fast(saved.gallery, saved.layout, saved.nprobe, changed_since(saved.version))
            with self._lock:
                self._built_at[saved.gallery] = saved.built_at
            self._saved.add(saved.gallery)
            log.info("shard %s: fast index of %r loaded in %.2fs: %d faces listed, %d in the delta",
                     self.shard_id, saved.gallery, time.monotonic() - began, state.listed, state.delta)
        self._lay_out(index)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0, np.int64)
