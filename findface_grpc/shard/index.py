"""The shard's in-memory exact search index: every descriptor in one float32 matrix, searched by matrix product.

Descriptors are unit length, so the dot product is the cosine similarity. Rows are kept dense (a removed face's
row is filled with the last row), so a search over the whole shard is one pass over one contiguous block.
Gallery membership is kept per gallery as a dense array of rows, so that a small gallery is searched by gathering
only its rows instead of scoring the whole shard.

Pure numpy: no gRPC and no Tarantool here. The durable copy lives in Tarantool; this index is rebuilt from it.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from findface_grpc.errors import InvalidArgument

# Every face is in this gallery, whatever else it is in; it is not stored as a member set.
DEFAULT_GALLERY = "default"
# A gallery holding at least this share of the shard is searched by one product over the whole matrix and its
# columns picked afterwards. Gathering scattered rows costs several times what streaming them does (measured: a
# 10% gallery of 1M x 512 gathered took as long as the whole pass), so only small galleries are gathered.
FULL_PASS_SHARE = 0.1
# Most scores computed in one product (256 MB of float32: a batch of 64 queries over a million faces); bigger
# query batches are cut into blocks of queries so that 1024 queries over a million faces do not need 4 GB at once.
SCORE_BLOCK = 64 * 1024 * 1024
# Rows of a gallery gathered and scored at once (32 MB of 512-d rows).
GATHER_ROWS = 16384
# From this many queries on, queries x rows is the faster shape of the product (see _product).
WIDE_QUERY_BATCH = 16
_MIN_CAPACITY = 1024
# Size of a Python int object as the dicts hold them, for the memory estimate in stats().
_INT_BYTES = 32


@dataclass(frozen=True, slots=True)
class Hit:
    face_id: int
    score: float


@dataclass(frozen=True)
class IndexStats:
    face_count: int
    gallery_counts: dict[str, int]
    nbytes: int


class ReadWriteLock:
    """Many searches at once, or one writer alone.

    Searches spend their time in BLAS, which releases the GIL, so several can run in parallel; a writer must
    not move rows under them. Writers are preferred: once one waits, new searches queue behind it, so a steady
    stream of searches cannot starve Adds (whose work under the lock is short: copying rows).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _Members:
    """The rows of one gallery: a dense array (ready for fancy indexing) and each row's place in it."""

    __slots__ = ("rows", "size", "place")

    def __init__(self) -> None:
        self.rows = np.empty(16, np.intp)
        self.size = 0
        self.place: dict[int, int] = {}

    def _reserve(self, needed: int) -> None:
        if needed > len(self.rows):
            grown = np.empty(max(needed, len(self.rows) * 3 // 2), np.intp)
            grown[: self.size] = self.rows[: self.size]
            self.rows = grown

    def extend(self, rows: np.ndarray) -> None:
        """Add rows known not to be members yet."""
        start = self.size
        self._reserve(start + len(rows))
        self.rows[start : start + len(rows)] = rows
        self.place.update(zip(rows.tolist(), range(start, start + len(rows))))
        self.size += len(rows)

    def add(self, row: int) -> None:
        if row not in self.place:
            self._reserve(self.size + 1)
            self.rows[self.size] = row
            self.place[row] = self.size
            self.size += 1

    def discard(self, row: int) -> None:
        at = self.place.pop(row, None)
        if at is None:
            return
        self.size -= 1
        if at != self.size:
            moved = int(self.rows[self.size])
            self.rows[at] = moved
            self.place[moved] = at

    def relabel(self, old: int, new: int) -> None:
        at = self.place.pop(old)
        self.rows[at] = new
        self.place[new] = at

    def view(self) -> np.ndarray:
        return self.rows[: self.size]

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + sys.getsizeof(self.place)


class FaceIndex:
    """Exact top-k search over the faces of one shard, for one model (one dimension)."""

    def __init__(self, dim: int, capacity: int = 0) -> None:
        if dim <= 0:
            raise InvalidArgument(f"index dimension must be > 0, not {dim}")
        self.dim = dim
        capacity = max(capacity, _MIN_CAPACITY)
        self._vectors = np.empty((capacity, dim), np.float32)
        self._ids = np.empty(capacity, np.uint64)
        self._n = 0
        self._row_of: dict[int, int] = {}
        # Per row, the face's galleries other than the default one. The sets are interned: a million faces in the
        # same few galleries share a few objects.
        self._galleries: list[frozenset[str]] = []
        self._interned: dict[frozenset[str], frozenset[str]] = {}
        self._members: dict[str, _Members] = {}
        # Searches share `_lock`; a mutation holds it exclusively only while it changes rows. Mutations also take
        # `_writer` for their whole length, so that one can copy the matrix into a bigger one under the shared
        # lock (searches go on) knowing that no other mutation changes it meanwhile.
        self._lock = ReadWriteLock()
        self._writer = threading.Lock()

    def __len__(self) -> int:
        return self._n

    def __contains__(self, face_id: int) -> bool:
        return face_id in self._row_of

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` faces at once, instead of growing step by step."""
        with self._writer:
            self._make_room(capacity)

    def _make_room(self, needed: int) -> None:
        """Grow the arrays to hold `needed` faces (by half at least, so that growth is amortised). Needs `_writer`.

        Copying a million rows takes a while; it runs under the shared lock so that searches are not held up, and
        only the swap to the new arrays is exclusive.
        """
        capacity = len(self._ids)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 3 // 2)
        with self._lock.shared():
            vectors = np.empty((capacity, self.dim), np.float32)
            vectors[: self._n] = self._vectors[: self._n]
            ids = np.empty(capacity, np.uint64)
            ids[: self._n] = self._ids[: self._n]
        with self._lock.exclusive():
            self._vectors, self._ids = vectors, ids

    def _intern(self, galleries: Iterable[str]) -> frozenset[str]:
        key = frozenset(galleries) - {DEFAULT_GALLERY}
        return self._interned.setdefault(key, key)

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
            rows = [self._row_of.get(face_id) for face_id in id_list]
            fresh = np.fromiter((row is None for row in rows), dtype=bool, count=len(rows))
            self._make_room(self._n + int(fresh.sum()))
            with self._lock.exclusive():
                for i, row in enumerate(rows):
                    if row is not None:
                        self._vectors[row] = vectors[i]
                        self._set_galleries(row, gallery_sets[i])
                if fresh.all():
                    self._append(ids, vectors, gallery_sets)
                elif fresh.any():
                    self._append(ids[fresh], vectors[fresh], [g for g, f in zip(gallery_sets, fresh) if f])

    def _append(self, ids: np.ndarray, vectors: np.ndarray, gallery_sets: list[frozenset[str]]) -> None:
        start, count = self._n, len(ids)
        self._vectors[start : start + count] = vectors
        self._ids[start : start + count] = ids
        self._row_of.update(zip(ids.tolist(), range(start, start + count)))
        self._galleries.extend(gallery_sets)
        self._n += count
        by_gallery: dict[str, list[int]] = {}
        for offset, names in enumerate(gallery_sets):
            for name in names:
                by_gallery.setdefault(name, []).append(start + offset)
        for name, rows in by_gallery.items():
            self._members.setdefault(name, _Members()).extend(np.asarray(rows, dtype=np.intp))

    def _set_galleries(self, row: int, new: frozenset[str]) -> None:
        old = self._galleries[row]
        if old is new:
            return
        for name in old - new:
            self._leave(name, row)
        for name in new - old:
            self._members.setdefault(name, _Members()).add(row)
        self._galleries[row] = new

    def _leave(self, name: str, row: int) -> None:
        members = self._members[name]
        members.discard(row)
        if members.size == 0:
            del self._members[name]

    def remove(self, ids: Iterable[int]) -> int:
        """Drop faces by id; returns how many were present."""
        removed = 0
        with self._writer, self._lock.exclusive():
            for face_id in ids:
                row = self._row_of.pop(int(face_id), None)
                if row is None:
                    continue
                removed += 1
                for name in self._galleries[row]:
                    self._leave(name, row)
                last = self._n - 1
                if row != last:
                    # Keep rows dense: the last face moves into the hole, and every map that names its row follows.
                    moved_id = int(self._ids[last])
                    self._vectors[row] = self._vectors[last]
                    self._ids[row] = moved_id
                    self._row_of[moved_id] = row
                    moved_galleries = self._galleries[last]
                    self._galleries[row] = moved_galleries
                    for name in moved_galleries:
                        self._members[name].relabel(last, row)
                self._galleries.pop()
                self._n = last
        return removed

    def set_galleries(self, changes: Iterable[tuple[int, Iterable[str]]]) -> None:
        """Give faces exactly these galleries (unknown ids are ignored)."""
        with self._writer, self._lock.exclusive():
            for face_id, galleries in changes:
                row = self._row_of.get(int(face_id))
                if row is not None:
                    self._set_galleries(row, self._intern(galleries))

    # Reads.

    def galleries_of(self, face_id: int) -> frozenset[str] | None:
        with self._lock.shared():
            row = self._row_of.get(face_id)
            return None if row is None else self._galleries[row] | {DEFAULT_GALLERY}

    def vector_of(self, face_id: int) -> np.ndarray | None:
        with self._lock.shared():
            row = self._row_of.get(face_id)
            return None if row is None else self._vectors[row].copy()

    def stats(self) -> IndexStats:
        with self._lock.shared():
            counts = {name: members.size for name, members in self._members.items()}
            counts[DEFAULT_GALLERY] = self._n
            memberships = sum(m.size for m in self._members.values())
            nbytes = (
                self._vectors.nbytes
                + self._ids.nbytes
                + sys.getsizeof(self._row_of)
                + sys.getsizeof(self._galleries)
                + sum(m.nbytes for m in self._members.values())
                # The int objects that the id -> row and row -> place dicts hold: two per entry.
                + 2 * _INT_BYTES * (self._n + memberships)
            )
            return IndexStats(self._n, counts, nbytes)

    def search(self, queries: np.ndarray, gallery: str, k: int, threshold: float = -1.0) -> list[list[Hit]]:
        """Per query, the `k` best faces of `gallery` scoring at least `threshold`, best first, ties by id."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        count = len(queries)
        return self.search_many(queries, gallery, [k] * count, [threshold] * count)

    def search_many(
        self, queries: np.ndarray, gallery: str, ks: Sequence[int], thresholds: Sequence[float]
    ) -> list[list[Hit]]:
        """Like `search`, with each query's own k and threshold (queries of several calls searched together)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidArgument(f"queries must be Qx{self.dim}, got {queries.shape}")
        if len(ks) != len(queries) or len(thresholds) != len(queries):
            raise InvalidArgument("one k and one threshold per query are needed")
        if any(k < 1 for k in ks):
            raise InvalidArgument("k must be >= 1")
        with self._lock.shared():
            n = self._n
            if gallery == DEFAULT_GALLERY:
                rows = None
            else:
                members = self._members.get(gallery)
                if members is None:
                    return [[] for _ in range(len(queries))]
                rows = members.view()
            width = n if rows is None else len(rows)
            if width == 0:
                return [[] for _ in range(len(queries))]
            full_pass = rows is None or width >= FULL_PASS_SHARE * n
            ids = self._ids[:n] if rows is None else self._ids[rows]
            block = max(1, SCORE_BLOCK // (n if full_pass else width))
            hits: list[list[Hit]] = []
            for start in range(0, len(queries), block):
                batch = queries[start : start + block]
                if full_pass:
                    scores = _product(batch, self._vectors[:n])
                    if rows is not None:
                        scores = scores[:, rows]
                else:
                    scores = _product(batch, self._vectors, rows)
                for i, row_scores in enumerate(scores):
                    hits.append(_top_k(row_scores, ids, ks[start + i], thresholds[start + i]))
            return hits


def _product(queries: np.ndarray, matrix: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Dot products of the queries with every row of `matrix`, or with `matrix[rows]`: Q x width.

    The whole matrix is one BLAS call: many small calls were faster on an idle machine but erratic (up to 10x
    slower) when other processes shared the cores, since each call waits for BLAS's threads to be scheduled. With
    few queries, rows x queries is the better-shaped product; with many, queries x rows. A gallery's rows are
    gathered and scored a slice at a time, so that they never exist as one big copy.
    """
    if rows is None:
        if len(queries) >= WIDE_QUERY_BATCH:
            return queries @ matrix.T
        return np.ascontiguousarray((matrix @ queries.T).T)
    out = np.empty((len(rows), len(queries)), np.float32)
    columns = np.ascontiguousarray(queries.T)
    for start in range(0, len(rows), GATHER_ROWS):
        stop = min(start + GATHER_ROWS, len(rows))
        np.matmul(matrix[rows[start:stop]], columns, out=out[start:stop])
    return np.ascontiguousarray(out.T)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int, threshold: float) -> list[Hit]:
    """The k best of one query's scores at or above threshold, best first, equal scores by ascending id."""
    threshold = np.float32(threshold)
    if threshold > -1:
        # A useful threshold leaves few candidates: filter first, then there is little left to partition.
        candidates = np.flatnonzero(scores >= threshold)
        values = scores[candidates]
    else:
        candidates = None
        values = scores
    if len(values) > k:
        part = np.argpartition(values, len(values) - k)[len(values) - k :]
        kth = values[part].min()
        # Every score equal to the k-th competes for the last places by id, not only those argpartition kept.
        chosen = np.flatnonzero(values >= kth)
    else:
        chosen = np.arange(len(values))
    chosen_values = values[chosen]
    positions = chosen if candidates is None else candidates[chosen]
    chosen_ids = ids[positions]
    order = np.lexsort((chosen_ids, -chosen_values))[:k]
    return [Hit(face_id, score) for face_id, score in zip(chosen_ids[order].tolist(), chosen_values[order].tolist())]
