"""The FaceIndex's side of its fast indexes (ann.py): what a build reads, installing, merging and dropping the
lists, and searching through them. Kept apart from index.py, which owns the rows and their exact scan; the
FaceIndex inherits these methods and holds the state they use (rows, ids, gallery bitmaps, locks, `_fast`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from findface_grpc.shard.ann import GalleryIndex, Layout, has_bits
from findface_grpc.shard.idmap import IdRows
from findface_grpc.shard.rows import decode, scattered_count

# Every face is in this gallery, whatever else it is in; it is not stored as a bitmap.
DEFAULT_GALLERY = "default"


@dataclass(frozen=True)
class FastIndexState:
    """A gallery's fast index: faces in its lists, faces searched exactly beside them (the delta), its size."""

    listed: int
    delta: int
    lists: int
    nprobe: int
    nbytes: int


class FastIndexAccess:
    def _fast_state(self, gallery: str, fast: GalleryIndex) -> FastIndexState:
        members = self._n if gallery == DEFAULT_GALLERY else self._counts.get(gallery, 0)
        return FastIndexState(fast.listed, members - fast.listed, fast.lists, fast.nprobe, fast.nbytes)

    # Fast indexes (ann.py): built by the shard service from these reads, installed, merged, dropped.

    def _member_rows(self, gallery: str, first: int, end: int) -> np.ndarray:
        rows = np.arange(first, min(end, self._n))
        if gallery == DEFAULT_GALLERY:
            return rows
        bits = self._bitmaps.get(gallery)
        return rows[has_bits(bits, rows)] if bits is not None else rows[:0]

    def member_count(self, gallery: str) -> int:
        with self._lock.shared():
            return self._n if gallery == DEFAULT_GALLERY else self._counts.get(gallery, 0)

    def sample_vectors(self, gallery: str, count: int, seed: int) -> np.ndarray:
        """Up to `count` of the gallery's descriptors, as their codes hold them, picked at random."""
        with self._lock.shared():
            rows = self._member_rows(gallery, 0, self._n)
            if len(rows) > count:
                rows = np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))
            return decode(self._rows.gather(rows), self._rows.scale)

    def member_blocks(self, gallery: str, block: int = 16384) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The gallery's (ids, descriptors as coded), a block of rows at a time, each block read under the shared
        lock and handed out after it: writes go on between blocks. A face moved by a removal meanwhile can be
        missed (it stays in the delta) or seen twice (installing keeps one)."""
        first = 0
        while True:
            with self._lock.shared():
                if first >= self._n:
                    return
                rows = self._member_rows(gallery, first, first + block)
                ids = self._ids[rows].copy()
                codes = self._rows.gather(rows) if len(rows) else None
            first += block
            if codes is not None:
                yield ids, decode(codes, self._rows.scale)

    @contextmanager
    def overwrites_watched(self) -> Iterator[set[int]]:
        """The ids whose descriptors are overwritten while the context lasts (a build's assignment of those is
        stale)."""
        watcher: set[int] = set()
        with self._writer:
            self._overwrite_watchers.append(watcher)
        try:
            yield watcher
        finally:
            with self._writer:
                self._overwrite_watchers.remove(watcher)

    def install_fast(self, gallery: str, layout: Layout, nprobe: int, stale: Iterable[int] = ()) -> FastIndexState:
        """Search `gallery` through these lists from now on. Ids of the layout that are gone, no longer in the
        gallery, or `stale` (overwritten since it was computed) are left out: they are searched in the delta."""
        with self._writer:
            rows = self._row_of.rows_of(layout.ids)
            _, first = np.unique(layout.ids, return_index=True)
            unique = np.zeros(len(rows), bool)
            unique[first] = True
            rows[~unique] = -1
            stale = np.fromiter(stale, np.uint64)
            if len(stale):
                rows[np.isin(layout.ids, stale)] = -1
            if gallery != DEFAULT_GALLERY:
                bits = self._bitmaps.get(gallery)
                present = rows >= 0
                if bits is None:
                    rows[:] = -1
                else:
                    rows[present] = np.where(has_bits(bits, rows[present]), rows[present], -1)
            fast = GalleryIndex.from_layout(layout, rows, len(self._ids), nprobe)
            with self._lock.exclusive():
                self._fast[gallery] = fast
                return self._fast_state(gallery, fast)

    def cluster_rows(self, gallery: str) -> bool:
        """Lay the rows out in the order of the gallery's lists, each list's rows next to each other; the rows that
        are in no list follow, in their order. Returns whether any row moved.

        A search then reads each probed list as one run of memory instead of picking 512-byte rows out of the whole
        shard, each a cache and TLB miss: a fast-index query over 500,000 faces 2.5 -> 1.4 ms. Rows have one
        layout: the caller chooses whose (fast_index.lay_out_rows) and when to lay out again, as faces merged or
        moved by removals since sit apart from their lists (rows_out_of_place). The rows are copied under the
        writer mutex (searches go on over the old ones, writes wait: about a second per million faces) and swapped
        in under the exclusive lock; the copy needs the rows' memory a second time meanwhile.
        """
        with self._writer:
            fast = self._fast.get(gallery)
            if fast is None:
                return False
            count = self._n
            listed = fast.listed_rows()
            rest = np.ones(count, bool)
            rest[listed] = False
            order = np.concatenate([listed, np.flatnonzero(rest)])
            self._laid_out_for = gallery
            if np.array_equal(order, np.arange(count)):
                return False
            new_row_of = np.empty(count, np.int64)
            new_row_of[order] = np.arange(count)
            rows = self._rows.permuted(order)
            ids = np.zeros_like(self._ids)
            ids[:count] = self._ids[order]
            row_of = IdRows.from_rows(ids[:count])
            galleries = [self._galleries[row] for row in order.tolist()]
            bitmaps = {}
            for name, bits in self._bitmaps.items():
                members = np.unpackbits(bits, bitorder="little")[:count][order]
                packed = np.zeros_like(bits)
                packed[: (count + 7) // 8] = np.packbits(members, bitorder="little")
                bitmaps[name] = packed
            fasts = {name: index.renumbered(new_row_of) for name, index in self._fast.items()}
            with self._lock.exclusive():
                self._rows, self._ids, self._row_of, self._galleries = rows, ids, row_of, galleries
                self._bitmaps, self._fast = bitmaps, fasts
            return True

    def rows_out_of_place(self, gallery: str) -> int | None:
        """How many of the gallery's listed rows sit apart from their lists' runs (faces merged or moved by removals
        since the rows were laid out): a search gathers those one by one. None when the rows are not laid out for
        this gallery's lists."""
        with self._lock.shared():
            fast = self._fast.get(gallery)
            if fast is None or self._laid_out_for != gallery:
                return None
            return scattered_count(fast.listed_rows())

    def drop_fast(self, gallery: str) -> bool:
        with self._writer, self._lock.exclusive():
            return self._fast.pop(gallery, None) is not None

    def fast_layout(self, gallery: str) -> Layout | None:
        with self._lock.shared():
            fast = self._fast.get(gallery)
            return None if fast is None else fast.layout(self._ids)

    def fast_galleries(self) -> list[str]:
        with self._lock.shared():
            return list(self._fast)

    def delta_vectors(self, gallery: str, most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Up to `most` faces of the gallery's delta: (ids, descriptors as coded, the lists' centroids)."""
        with self._lock.shared():
            fast = self._fast.get(gallery)
            if fast is None:
                return np.empty(0, np.uint64), np.empty((0, self.dim), np.float32), None
            delta = self._delta_bits(gallery, fast)
            rows = np.flatnonzero(np.unpackbits(delta, bitorder="little")[: self._n])[:most]
            codes = self._rows.gather(rows)
            return self._ids[rows].copy(), decode(codes, self._rows.scale), fast.centroids

    def merge_fast(self, gallery: str, ids: np.ndarray, lists: np.ndarray, centroids: np.ndarray,
                   stale: Iterable[int] = ()) -> int:
        """Put these delta faces into these lists (of the index with these centroids); returns how many went in.
        Faces gone, out of the gallery, already listed or `stale` (overwritten since `lists` was computed) are
        left in the delta, as are all of them when the index was rebuilt meanwhile.

        The new lists are computed under the writer mutex (rows cannot move; searches go on with the old lists)
        and swapped in under the exclusive lock.
        """
        with self._writer:
            fast = self._fast.get(gallery)
            if fast is None or fast.centroids is not centroids or not len(ids):
                return 0
            rows = self._row_of.rows_of(ids)
            keep = rows >= 0
            stale = np.fromiter(stale, np.uint64)
            if len(stale):
                keep &= ~np.isin(ids, stale)
            keep[keep] = ~has_bits(fast.bits, rows[keep])
            if gallery != DEFAULT_GALLERY:
                keep[keep] = has_bits(self._bitmaps[gallery], rows[keep]) if gallery in self._bitmaps else False
            if not keep.any():
                return 0
            merged = fast.merged(rows[keep], lists[keep])
            with self._lock.exclusive():
                self._fast[gallery] = merged
            return int(keep.sum())

    def _delta_bits(self, gallery: str, fast: GalleryIndex) -> np.ndarray:
        """The bitmap of the gallery's rows that are not in the lists; no bit at or past the last row."""
        if gallery == DEFAULT_GALLERY:
            delta = ~fast.bits
            used = self._n >> 3
            delta[used + 1 :] = 0
            if used < len(delta):
                delta[used] &= np.uint8((1 << (self._n & 7)) - 1)
            return delta
        return self._bitmaps[gallery] & ~fast.bits

    def _fast_scan(self, fast: GalleryIndex, gallery: str, members: np.ndarray | None, queries: np.ndarray,
                   pool: int) -> tuple[np.ndarray, np.ndarray]:
        """Like CompactRows.scan, through the fast index: the rows of each query's nearest lists, and the delta."""
        count = len(queries)
        scores = np.full((count, pool), -np.inf, np.float32)
        rows = np.full((count, pool), -1, np.int64)
        delta = self._delta_bits(gallery, fast)
        delta_scores = delta_rows = None
        if delta.any():
            delta_scores, delta_rows = self._rows.scan(queries, self._n, pool, delta)
        probes = fast.probe(queries)
        for i in range(count):
            listed = fast.rows_of_lists(probes[i])
            if members is not None:
                listed = listed[has_bits(members, listed)]
            found_scores, found_rows = self._rows.score_rows(queries[i], listed, pool)
            if delta_scores is not None:
                found_scores = np.concatenate([found_scores, delta_scores[i]])
                found_rows = np.concatenate([found_rows, delta_rows[i]])
            order = np.argsort(-found_scores, kind="stable")[:pool]
            scores[i, : len(order)] = found_scores[order]
            rows[i, : len(order)] = found_rows[order]
        scores[rows < 0] = -np.inf
        return scores, rows
