"""The shard's in-memory search index: compact rows scanned exhaustively, the best candidates re-scored exactly.

Descriptors are unit length, so the dot product is the cosine similarity. Every face is one row of int8 codes
(rows.py); a search scans the rows of a gallery for each query's best candidates by approximate score, then
re-scores those candidates exactly, so the results are ranked as a float32 scan would rank them: from the rows'
residuals when the index keeps them (rows.py), otherwise (and for a row whose residuals cannot give it back) from
their stored descriptors (float16 in Tarantool, handed in by the caller). Without either (Tarantool down) the
approximate scores answer, within about 1e-3.

Rows are kept dense (a removed face's row is filled with the last row). Gallery membership is a bitmap over rows
per gallery, which the scan checks per row; a small gallery's scan skips the segments that hold none of it.

Pure numpy and faiss: no gRPC and no Tarantool here. The durable copy lives in Tarantool; this index is rebuilt
from it.
"""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from findface_grpc.errors import InvalidArgument, Unavailable
from findface_grpc.shard.ann import GalleryIndex
from findface_grpc.shard.idmap import IdRows
from findface_grpc.shard.index_fast import DEFAULT_GALLERY, FastIndexAccess, FastIndexState
from findface_grpc.shard.locks import ReadWriteLock, WouldBlock
from findface_grpc.shard.rows import CompactRows

log = logging.getLogger(__name__)

# Candidates re-scored per query: 2k + RESCORE_EXTRA. The quantisation error (about 1e-3 on a 512-d score) can
# only swap a true top-k face with one that scores almost the same, which is among these.
RESCORE_EXTRA = 32
# A candidate whose approximate score is this far below a query's threshold cannot reach it exactly.
APPROXIMATION_MARGIN = 0.03
# Only candidates scoring approximately within RESCORE_STEPS code steps (rows.py: 1 / scale) of the k-th best
# are re-scored. A code's score is off by about a third of a step (std; measured on 512-d: 7e-4 with a step of
# 2.1e-3, the largest of 120,000 pairs 3.1e-3), so the k-th exact score is at least the k-th approximate one less
# that error, and a candidate a few errors below cannot reach it. Of a 512-d pool of 52 for k = 10, about 18 are
# re-scored: a third of the bytes read from Tarantool per search. For the same reason a full scan whose last
# candidate is that close to the k-th repeats with a bigger pool (identical descriptors enrolled many times, say):
# a face left out might belong in the top k.
RESCORE_STEPS = 4.0
_MIN_CAPACITY = 1024

# Stored descriptors of some face ids, as float32 rows: ids that no longer exist are left out.
ExactVectors = Callable[[list[int]], dict[int, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Hit:
    face_id: int
    score: float


@dataclass(frozen=True)
class IndexImage:
    """An index's faces apart from their codes: ids by row, each row's gallery set (an index into gallery_sets)."""

    ids: np.ndarray
    set_of_row: np.ndarray
    gallery_sets: list[list[str]]
    count: int
    scale: float
    residuals: bool


@dataclass(frozen=True)
class IndexStats:
    face_count: int
    gallery_counts: dict[str, int]
    nbytes: int
    fast: dict[str, FastIndexState]


class FaceIndex(FastIndexAccess):
    """Top-k search over the faces of one shard, for one model (one dimension)."""

    def __init__(self, dim: int, capacity: int = 0, residuals: bool = False) -> None:
        if dim <= 0:
            raise InvalidArgument(f"index dimension must be > 0, not {dim}")
        self.dim = dim
        self._rows = CompactRows(dim, residuals)
        self._ids = np.empty(0, np.uint64)
        self._n = 0
        self._row_of = IdRows()
        # Per row, the face's galleries other than the default one. The sets are interned: a million faces in the
        # same few galleries share a few objects.
        self._galleries: list[frozenset[str]] = []
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        # Per gallery, one bit per row (bit r of byte r // 8), and how many bits are set.
        self._bitmaps: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        # Per gallery with a fast index (ann.py), its lists over these rows.
        self._fast: dict[str, GalleryIndex] = {}
        # The gallery whose lists the rows were last laid out for (cluster_rows), if any.
        self._laid_out_for: str | None = None
        # Sets collecting the ids whose descriptors are overwritten while a fast index is being built.
        self._overwrite_watchers: list[set[int]] = []
        # Searches share `_lock`; a mutation holds it exclusively. `_writer` keeps mutations one at a time.
        self._lock = ReadWriteLock()
        self._writer = threading.Lock()
        self._make_room(max(capacity, _MIN_CAPACITY))

    def __len__(self) -> int:
        return self._n


    def __contains__(self, face_id: int) -> bool:
        return self._row_of.get(face_id) is not None

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` faces at once, instead of growing step by step."""
        with self._writer, self._lock.exclusive():
            self._make_room(capacity)

    def _make_room(self, needed: int) -> None:
        """Grow to hold `needed` faces. Row segments are added as needed, never copied, so no slack is kept for
        later growth (it would cost 512 bytes a row); the ids and bitmaps (8 bytes and a bit per row) are copied
        into arrays one segment bigger. Needs the exclusive lock (or no other user yet)."""
        if needed <= len(self._ids):
            return
        self._rows.reserve(needed)
        capacity = self._rows.capacity
        ids = np.zeros(capacity, np.uint64)
        ids[: self._n] = self._ids[: self._n]
        self._ids = ids
        for name, bits in self._bitmaps.items():
            grown = np.zeros(capacity // 8, np.uint8)
            grown[: len(bits)] = bits
            self._bitmaps[name] = grown
        for fast in self._fast.values():
            fast.grow(capacity)

    def _intern(self, galleries: Iterable[str]) -> frozenset[str]:
        key = frozenset(galleries) - {DEFAULT_GALLERY}
        return self._interned.setdefault(key, key)

    # Gallery bits.

    def _join(self, name: str, row: int) -> None:
        bits = self._bitmaps.get(name)
        if bits is None:
            bits = self._bitmaps[name] = np.zeros(len(self._ids) // 8, np.uint8)
            self._counts[name] = 0
        bits[row >> 3] |= np.uint8(1 << (row & 7))
        self._counts[name] += 1

    def _leave(self, name: str, row: int) -> None:
        self._bitmaps[name][row >> 3] &= np.uint8(~(1 << (row & 7)) & 0xFF)
        self._counts[name] -= 1
        if self._counts[name] == 0:
            del self._bitmaps[name], self._counts[name]
            self._fast.pop(name, None)

    # Mutations. Each takes the writer mutex, and the exclusive lock once for its whole batch.

    def upsert(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray, galleries: Sequence[Iterable[str]]) -> None:
        """Insert new faces and overwrite existing ones. A repeated id within the batch: the last one wins."""
        ids = np.asarray(ids, dtype=np.uint64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim) or len(galleries) != len(ids):
            raise InvalidArgument(
                f"upsert of {len(ids)} ids needs {len(ids)}x{self.dim} vectors and {len(ids)} gallery lists, "
                f"got {vectors.shape} and {len(galleries)}"
            )
        id_list = ids.tolist()
        if len(set(id_list)) != len(id_list):
            last = {face_id: i for i, face_id in enumerate(id_list)}
            keep = sorted(last.values())
            ids, vectors, id_list = ids[keep], vectors[keep], [id_list[i] for i in keep]
            galleries = [galleries[i] for i in keep]
        codes = self._rows.encode(vectors)
        with self._writer:
            # Faces of a batch mostly share a few gallery lists (a rebuild page hands over the very same tuples),
            # so each distinct list is turned into an interned set once.
            seen: dict[tuple[str, ...], frozenset[str]] = {}
            gallery_sets = []
            for g in galleries:
                key = g if isinstance(g, tuple) else tuple(g)
                found = seen.get(key)
                if found is None:
                    found = seen[key] = self._intern(key)
                gallery_sets.append(found)
            rows = self._row_of.rows_of(ids)
            fresh = rows < 0
            with self._lock.exclusive():
                self._make_room(self._n + int(fresh.sum()))
                for i in np.flatnonzero(~fresh).tolist():
                    row = int(rows[i])
                    self._rows.write_codes(row, codes[i : i + 1])
                    self._set_galleries(row, gallery_sets[i])
                    # A new descriptor may belong in another list: searched in the delta until merged.
                    for fast in self._fast.values():
                        fast.forget(row)
                    for watcher in self._overwrite_watchers:
                        watcher.add(id_list[i])
                if fresh.all():
                    self._append(ids, codes, gallery_sets)
                elif fresh.any():
                    self._append(ids[fresh], codes[fresh], [g for g, f in zip(gallery_sets, fresh) if f])


    def _append(self, ids: np.ndarray, codes: np.ndarray, gallery_sets: list[frozenset[str]]) -> None:
        start, count = self._n, len(ids)
        self._rows.write_codes(start, codes)
        self._ids[start : start + count] = ids
        self._row_of.add(ids, np.arange(start, start + count))
        self._galleries.extend(gallery_sets)
        self._n += count
        for offset, names in enumerate(gallery_sets):
            for name in names:
                self._join(name, start + offset)

    def _set_galleries(self, row: int, new: frozenset[str]) -> None:
        old = self._galleries[row]
        if old is new:
            return
        for name in old - new:
            self._leave(name, row)
        for name in new - old:
            self._join(name, row)
        self._galleries[row] = new

    def remove(self, ids: Iterable[int]) -> int:
        """Drop faces by id; returns how many were present."""
        removed: list[int] = []
        with self._writer, self._lock.exclusive():
            for face_id in dict.fromkeys(int(i) for i in ids):
                row = self._row_of.get(face_id)
                if row is None:
                    continue
                removed.append(face_id)
                for name in self._galleries[row]:
                    self._leave(name, row)
                for fast in self._fast.values():
                    fast.forget(row)
                last = self._n - 1
                if row != last:
                    for fast in self._fast.values():
                        fast.move(last, row)
                    # Keep rows dense: the last face moves into the hole, and its gallery bits follow.
                    moved_id = int(self._ids[last])
                    self._rows.move(last, row)
                    self._ids[row] = moved_id
                    self._row_of.move(moved_id, row)
                    moved_galleries = self._galleries[last]
                    self._galleries[row] = moved_galleries
                    for name in moved_galleries:
                        self._leave(name, last)
                        self._join(name, row)
                self._galleries.pop()
                self._n = last
            # Dropped from the id map last and all at once: each drop is a pass over the map.
            self._row_of.discard(removed)
        return len(removed)

    def set_galleries(self, changes: Iterable[tuple[int, Iterable[str]]]) -> None:
        """Give faces exactly these galleries (unknown ids are ignored)."""
        with self._writer, self._lock.exclusive():
            for face_id, galleries in changes:
                row = self._row_of.get(int(face_id))
                if row is not None:
                    self._set_galleries(row, self._intern(galleries))

    # Whole-index images, for snapshots (snapshot.py).

    def image(self) -> IndexImage:
        """Everything a restore needs, copied out under the shared lock; codes are read row block by row block
        through `codes_blocks` while the caller holds off writers."""
        with self._lock.shared():
            sets: dict[frozenset[str], int] = {}
            set_of_row = np.fromiter(
                (sets.setdefault(names, len(sets)) for names in self._galleries), dtype=np.uint32, count=self._n
            )
            return IndexImage(
                self._ids[: self._n].copy(), set_of_row, [sorted(names) for names in sets], self._n, self._rows.scale,
                self._rows.residuals,
            )

    def codes_blocks(self, count: int) -> Iterator[np.ndarray]:
        """The codes (and residuals) of rows 0..count-1 in rows.CompactRows.blocks's order (views: valid until the
        next write)."""
        yield from self._rows.blocks(count)

    @classmethod
    def restore(cls, dim: int, image: IndexImage, fill_codes: Callable[[np.ndarray], None]) -> "FaceIndex":
        """An index holding `image`'s faces; `fill_codes(block)` fills each block of codes_blocks in order."""
        index = cls(dim, capacity=image.count, residuals=image.residuals)
        for block in index._rows.blocks(image.count):
            fill_codes(block)
        index._n = image.count
        index._ids[: image.count] = image.ids
        index._row_of = IdRows.from_rows(image.ids)
        interned = [index._intern(names) for names in image.gallery_sets]
        index._galleries = [interned[i] for i in image.set_of_row.tolist()]
        capacity = len(index._ids)
        for name in {name for names in interned for name in names}:
            holders = [i for i, names in enumerate(interned) if name in names]
            rows = np.isin(image.set_of_row, holders)
            bits = np.zeros(capacity // 8, np.uint8)
            packed = np.packbits(rows, bitorder="little")
            bits[: len(packed)] = packed
            index._bitmaps[name] = bits
            index._counts[name] = int(rows.sum())
        return index

    # Reads.

    def galleries_of(self, face_id: int) -> frozenset[str] | None:
        with self._lock.shared():
            row = self._row_of.get(face_id)
            return None if row is None else self._galleries[row] | {DEFAULT_GALLERY}

    def approximate_vector(self, face_id: int) -> np.ndarray | None:
        """The face's descriptor as its codes hold it (each component within half a code step)."""
        with self._lock.shared():
            row = self._row_of.get(face_id)
            return None if row is None else self._rows.approximate(row)

    def stats(self) -> IndexStats:
        with self._lock.shared():
            counts = dict(self._counts)
            counts[DEFAULT_GALLERY] = self._n
            nbytes = (
                self._rows.nbytes
                + self._ids.nbytes
                + self._row_of.nbytes
                + sys.getsizeof(self._galleries)
                + sum(bits.nbytes for bits in self._bitmaps.values())
                + sum(fast.nbytes for fast in self._fast.values())
            )
            fast = {name: self._fast_state(name, index) for name, index in self._fast.items()}
            return IndexStats(self._n, counts, nbytes, fast)

    def search(self, queries: np.ndarray, gallery: str, k: int, threshold: float = -1.0,
               exact: ExactVectors | None = None, full_scan: bool = False) -> list[list[Hit]]:
        """Per query, the `k` best faces of `gallery` scoring at least `threshold`, best first, ties by id.

        `exact`: where the candidates' stored descriptors come from; without it (or when it raises
        Unavailable), the scores are the approximate ones of the codes. `full_scan`: every row of the gallery is
        scanned even when it has a fast index (whose candidates are approximate: a face may be missed).
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        count = len(queries)
        return self.search_many(queries, gallery, [k] * count, [threshold] * count, exact, full_scan)

    def search_many(
        self, queries: np.ndarray, gallery: str, ks: Sequence[int], thresholds: Sequence[float],
        exact: ExactVectors | None = None, full_scan: bool = False, wait: bool = True,
    ) -> list[list[Hit]]:
        """Like `search`, with each query's own k and threshold (queries of several calls searched together).
        `wait` False: WouldBlock instead of waiting for a writer or asking `exact`."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidArgument(f"queries must be Qx{self.dim}, got {queries.shape}")
        if len(ks) != len(queries) or len(thresholds) != len(queries):
            raise InvalidArgument("one k and one threshold per query are needed")
        if any(k < 1 for k in ks):
            raise InvalidArgument("k must be >= 1")
        pool = 2 * max(ks) + RESCORE_EXTRA
        margin = RESCORE_STEPS / self._rows.scale
        with self._lock.shared(wait):
            members = None
            if gallery != DEFAULT_GALLERY:
                members = self._bitmaps.get(gallery)
                if members is None:
                    return [[] for _ in range(len(queries))]
            if self._n == 0:
                return [[] for _ in range(len(queries))]
            fast = None if full_scan else self._fast.get(gallery)
            if fast is not None:
                scores, rows = self._fast_scan(fast, gallery, members, queries, pool)
            else:
                while True:
                    scores, rows = self._rows.scan(queries, self._n, pool, members)
                    if pool >= self._n or _pool_settles(scores, ks, thresholds, margin):
                        break
                    pool *= 4
            ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], 0)
            candidates = []
            for i in range(len(queries)):
                keep = (rows[i] >= 0) & (scores[i] >= _rescore_floor(scores[i], ks[i], thresholds[i], margin))
                rescored = (self._rows.exact_scores(queries[i], rows[i][keep]) if self._rows.residuals
                            else np.full(int(keep.sum()), np.nan, np.float32))
                candidates.append(_Candidates(ids[i][keep], scores[i][keep], rescored))
        vectors = self._stored_vectors(candidates, exact, wait)
        return [_top_k(*c.scored(queries[i], vectors), ks[i], thresholds[i]) for i, c in enumerate(candidates)]

    @staticmethod
    def _stored_vectors(candidates: list["_Candidates"], exact: ExactVectors | None,
                        wait: bool) -> dict[int, np.ndarray] | None:
        """The stored descriptors of the candidates not re-scored yet; None when there are none to be had."""
        wanted = sorted({face_id for c in candidates for face_id in c.ids[np.isnan(c.exact)].tolist()})
        if not wanted:
            return {}
        if exact is None:
            return None
        if not wait:
            raise WouldBlock(f"{len(wanted)} faces to re-score from their stored descriptors")
        try:
            return exact(wanted)
        except Unavailable as exc:
            log.warning("scores from the compact rows only: %s", exc.message)
            return None


@dataclass(frozen=True, slots=True)
class _Candidates:
    """One query's candidates: their ids, approximate scores, and exact scores (NaN where not known yet)."""

    ids: np.ndarray
    approximate: np.ndarray
    exact: np.ndarray

    def scored(self, query: np.ndarray, stored: dict[int, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores): exact where known, else from the `stored` descriptors (a face they lack no longer exists),
        else (no stored descriptors to be had) the approximate scores."""
        missing = np.flatnonzero(np.isnan(self.exact))
        if not len(missing):
            return self.ids, self.exact
        scores = self.exact.copy()
        if stored is None:
            scores[missing] = np.clip(self.approximate[missing], -1.0, 1.0)
            return self.ids, scores
        keep = np.ones(len(self.ids), bool)
        found = []
        for at in missing.tolist():
            vector = stored.get(int(self.ids[at]))
            if vector is None:
                keep[at] = False
            else:
                found.append((at, vector))
        if found:
            where, vectors = zip(*found)
            scores[list(where)] = np.stack(vectors) @ query
        return self.ids[keep], scores[keep]


def _pool_settles(scores: np.ndarray, ks: Sequence[int], thresholds: Sequence[float], margin: float) -> bool:
    """Whether no face outside the pool can be in any query's exact top k."""
    if scores.shape[1] == 0:
        return True
    last = scores[:, -1]
    for i, k in enumerate(ks):
        if last[i] >= thresholds[i] - APPROXIMATION_MARGIN and last[i] >= scores[i, min(k, scores.shape[1]) - 1] - margin:
            return False
    return True


def _rescore_floor(scores: np.ndarray, k: int, threshold: float, margin: float) -> float:
    """The lowest approximate score (of one query's pool, best first) that may still be in its exact top k."""
    floor = threshold - APPROXIMATION_MARGIN
    if len(scores) >= k and np.isfinite(scores[k - 1]):
        floor = max(floor, float(scores[k - 1]) - margin)
    return floor


def _top_k(ids: np.ndarray, scores: np.ndarray, k: int, threshold: float) -> list[Hit]:
    """The k best of the scored ids at or above threshold, best first, equal scores by ascending id."""
    scores = np.asarray(scores, np.float32)
    keep = scores >= np.float32(threshold)
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return [Hit(face_id, score) for face_id, score in zip(ids[order].tolist(), scores[order].tolist())]
