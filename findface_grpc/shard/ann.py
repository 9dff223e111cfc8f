"""The fast index of one gallery: an inverted file (IVF) over the shard's own compact rows.

A big gallery's exact scan reads every row; the fast index reads a few percent of them. k-means centroids split
the gallery's descriptors into lists; a search compares the query with the centroids, takes the rows of the
`nprobe` nearest lists and scores only those, with the same int8 kernels as the exact scan (rows.py). The best of
them are then re-scored exactly like any other candidates (index.py).

The lists hold row numbers, not copies of the codes: the index adds 8 bytes a face (its row in a list, and the
list slot of each row) plus the centroids, instead of a second copy of 512-byte codes. Rows move when a face is
removed (the index keeps rows dense), so the lists follow every move through `slot_of_row`.

Faces that are not in the lists (enrolled after the build, or whose descriptor was overwritten) are the delta:
the search scans them exactly beside the lists until a merge assigns them to their nearest lists. Faces removed,
or taken out of the gallery, are filtered out at search time by the gallery's bitmap, so they vanish at once.

Pure numpy and faiss: the building and its scheduling are the shard service's (fast_index.py); this module
keeps the structure and answers which rows to score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

# Descriptors sampled per list to train the centroids: faiss warns under 39, and more adds build time but
# little recall.
TRAINING_PER_LIST = 64
K_MEANS_ITERATIONS = 12
# Lloyd steps over the whole gallery after the sample's k-means. The sample holds a few dozen faces a list, too
# few to place centroids among groups of lookalikes; each full step costs about one assignment of the gallery.
# Measured on 500,000 clustered descriptors (scripts/bench_fast_index_shard.py), nprobe 32: planted face found
# 0.990 -> 0.997 and top-10 overlap 0.835 -> 0.896 with 4 steps; 25 steps reach 1.000 and 0.937 at 5x the build.
REFINE_STEPS = 6
# Lists for n faces: about 8 sqrt(n) (within faiss's advice of 4-16 sqrt(n)), the power of two at or below it.
# Lists must outnumber the groups of lookalikes a gallery holds, or k-means lumps groups together and their faces
# straddle lists. Measured on one shard's 500,000 clustered descriptors (people of 3,333 looks; top-10 overlap with
# the full scan, nprobe scanning 1.6% of the rows): 1,024 lists 0.77, 2,048 lists 0.89, 4,096 lists 0.998.
MIN_LISTS, MAX_LISTS = 64, 16384


# k-means needs some descriptors per centroid to place it (faiss asks for 39).
MIN_PER_LIST = 39


def lists_for(faces: int) -> int:
    wanted = min(8.0 * math.sqrt(max(faces, 1)), max(faces, 1) / MIN_PER_LIST)
    return int(min(MAX_LISTS, max(MIN_LISTS, 2 ** math.floor(math.log2(max(wanted, 1))))))


def train_centroids(sample: np.ndarray, lists: int, seed: int = 1) -> np.ndarray:
    """Unit-length centroids of `lists` clusters of the sample (k-means on the sphere: inner product ranks)."""
    sample = np.ascontiguousarray(sample, np.float32)
    lists = min(lists, len(sample))
    kmeans = faiss.Kmeans(
        sample.shape[1], lists, niter=K_MEANS_ITERATIONS, spherical=True, seed=seed,
        max_points_per_centroid=TRAINING_PER_LIST * 4, verbose=False,
    )
    kmeans.train(sample)
    return np.ascontiguousarray(kmeans.centroids, np.float32)


def add_to_nearest(vectors: np.ndarray, centroids: np.ndarray, sums: np.ndarray) -> None:
    """One block's share of a Lloyd step: each vector added into the row of `sums` of its nearest centroid."""
    if not len(vectors):
        return
    nearest = nearest_lists(vectors, centroids)[:, 0]
    order = np.argsort(nearest, kind="stable")
    chosen = nearest[order]
    starts = np.flatnonzero(np.concatenate([[True], chosen[1:] != chosen[:-1]]))
    sums[chosen[starts]] += np.add.reduceat(vectors[order], starts, axis=0)


def moved_centroids(sums: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The centroids a Lloyd step gives (on the sphere: the unit mean direction); a list that no vector chose
    keeps its centroid."""
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.ascontiguousarray(np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids), np.float32)


def nearest_lists(vectors: np.ndarray, centroids: np.ndarray, count: int = 1) -> np.ndarray:
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    _, lists = quantizer.search(np.ascontiguousarray(vectors, np.float32), count)
    return lists


@dataclass(frozen=True)
class Layout:
    """The lists by face id: what a build produces and what is saved to disk."""

    centroids: np.ndarray  # lists x dim, float32
    offsets: np.ndarray  # lists + 1, int64: list l is ids[offsets[l]:offsets[l + 1]]
    ids: np.ndarray  # uint64

    @classmethod
    def grouped(cls, centroids: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> "Layout":
        order = np.argsort(lists, kind="stable")
        counts = np.bincount(lists, minlength=len(centroids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(centroids, offsets, np.asarray(ids, np.uint64)[order])


class GalleryIndex:
    """The lists of one gallery over the rows of a FaceIndex. Mutated only under the index's exclusive lock."""

    def __init__(self, centroids: np.ndarray, offsets: np.ndarray, entries: np.ndarray, capacity: int,
                 nprobe: int) -> None:
        self.centroids = centroids
        self._quantizer = faiss.IndexFlatIP(centroids.shape[1])
        self._quantizer.add(centroids)
        self.offsets = offsets
        # Rows by list; -1 where the face left the lists (removed, or overwritten and now in the delta).
        self.entries = entries.astype(np.int32)
        self.nprobe = nprobe
        self.slot_of_row = np.full(capacity, -1, np.int32)
        live = np.flatnonzero(self.entries >= 0)
        self.slot_of_row[self.entries[live]] = live
        # Bit r set when row r is in the lists: the delta is the gallery's bits without these.
        self.bits = np.zeros(capacity // 8, np.uint8)
        _set_bits(self.bits, self.entries[live])
        self.listed = len(live)

    @classmethod
    def from_layout(cls, layout: Layout, rows: np.ndarray, capacity: int, nprobe: int) -> "GalleryIndex":
        """`rows`: each layout id's current row, -1 for faces gone since."""
        return cls(layout.centroids, layout.offsets, rows, capacity, nprobe)

    @property
    def lists(self) -> int:
        return len(self.centroids)

    @property
    def nbytes(self) -> int:
        return self.centroids.nbytes + self.offsets.nbytes + self.entries.nbytes + self.slot_of_row.nbytes + self.bits.nbytes

    def layout(self, ids_of_rows: np.ndarray) -> Layout:
        """The lists by face id, without the faces that left them."""
        keep = self.entries >= 0
        counts = np.bincount(self._list_of_entries()[keep], minlength=self.lists)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Layout(self.centroids, offsets, ids_of_rows[self.entries[keep]])

    def _list_of_entries(self) -> np.ndarray:
        return np.repeat(np.arange(self.lists, dtype=np.int64), np.diff(self.offsets))

    # Following the index's rows.

    def grow(self, capacity: int) -> None:
        if capacity <= len(self.slot_of_row):
            return
        slots = np.full(capacity, -1, np.int32)
        slots[: len(self.slot_of_row)] = self.slot_of_row
        self.slot_of_row = slots
        bits = np.zeros(capacity // 8, np.uint8)
        bits[: len(self.bits)] = self.bits
        self.bits = bits

    def forget(self, row: int) -> None:
        """The face at `row` leaves the lists (removed, or its descriptor changed)."""
        slot = int(self.slot_of_row[row])
        if slot < 0:
            return
        self.entries[slot] = -1
        self.slot_of_row[row] = -1
        self.bits[row >> 3] &= np.uint8(~(1 << (row & 7)) & 0xFF)
        self.listed -= 1

    def move(self, source: int, target: int) -> None:
        """The face at row `source` now lives at row `target` (whose own face left first)."""
        slot = int(self.slot_of_row[source])
        if slot < 0:
            return
        self.entries[slot] = target
        self.slot_of_row[target] = slot
        self.slot_of_row[source] = -1
        self.bits[source >> 3] &= np.uint8(~(1 << (source & 7)) & 0xFF)
        self.bits[target >> 3] |= np.uint8(1 << (target & 7))

    def renumbered(self, new_row_of: np.ndarray) -> "GalleryIndex":
        """A copy for rows renumbered so that old row r is now row new_row_of[r]."""
        entries = np.where(self.entries >= 0, new_row_of[np.maximum(self.entries, 0)], -1)
        return GalleryIndex(self.centroids, self.offsets, entries, len(self.slot_of_row), self.nprobe)

    def listed_rows(self) -> np.ndarray:
        """The rows in the lists, list after list."""
        return self.entries[self.entries >= 0]

    def merged(self, rows: np.ndarray, lists: np.ndarray) -> "GalleryIndex":
        """A copy with `rows` added to `lists` and the slots of departed faces dropped."""
        keep = self.entries >= 0
        old_lists = self._list_of_entries()[keep]
        all_rows = np.concatenate([self.entries[keep], rows.astype(np.int32)])
        all_lists = np.concatenate([old_lists, lists.astype(np.int64)])
        order = np.argsort(all_lists, kind="stable")
        counts = np.bincount(all_lists, minlength=self.lists)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return GalleryIndex(self.centroids, offsets, all_rows[order], len(self.slot_of_row), self.nprobe)

    # Searching.

    def probe(self, queries: np.ndarray) -> np.ndarray:
        """The `nprobe` nearest lists of each query (Q x nprobe)."""
        faiss.omp_set_num_threads(1)  # as rows.scan: the shard's own search workers are the parallelism
        _, lists = self._quantizer.search(queries, min(self.nprobe, self.lists))
        return lists

    def rows_of_lists(self, lists: np.ndarray) -> np.ndarray:
        lists = lists[lists >= 0]
        starts, ends = self.offsets[lists], self.offsets[lists + 1]
        rows = np.concatenate([self.entries[s:e] for s, e in zip(starts.tolist(), ends.tolist())]) if len(lists) else self.entries[:0]
        return rows[rows >= 0]


def _set_bits(bits: np.ndarray, rows: np.ndarray) -> None:
    np.bitwise_or.at(bits, rows >> 3, (1 << (rows & 7)).astype(np.uint8))


def has_bits(bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return ((bits[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)
