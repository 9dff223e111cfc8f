"""Face id -> row of the index, in 12 bytes a face: ids kept sorted with their rows beside them.

A Python dict spends about 100 bytes an entry (its slot, two int objects), a tenth of a face's whole footprint
in the shard. Here a lookup is a binary search (vectorised for batches). Ids come from the gateway in ascending
order, so new faces nearly always go at the end, which is an append; anything else is one merge of the batch.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_MIN_CAPACITY = 1024


class IdRows:
    def __init__(self) -> None:
        self._ids = np.empty(_MIN_CAPACITY, np.uint64)
        self._rows = np.empty(_MIN_CAPACITY, np.int64)
        self._n = 0

    @classmethod
    def from_rows(cls, ids: np.ndarray) -> "IdRows":
        """The map of `ids[row] -> row` for every row (ids unique)."""
        table = cls()
        order = np.argsort(ids, kind="stable")
        table._reserve(len(ids))
        table._ids[: len(ids)] = ids[order]
        table._rows[: len(ids)] = order
        table._n = len(ids)
        return table

    def __len__(self) -> int:
        return self._n

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Each id's row, or -1 for ids not present."""
        ids = np.asarray(ids, np.uint64)
        keys = self._ids[: self._n]
        at = np.searchsorted(keys, ids)
        inside = at < self._n
        found = np.zeros(len(ids), bool)
        found[inside] = keys[at[inside]] == ids[inside]
        rows = np.full(len(ids), -1, np.int64)
        rows[found] = self._rows[at[found]]
        return rows

    def get(self, face_id: int) -> int | None:
        row = int(self.rows_of(np.array([face_id], np.uint64))[0])
        return None if row < 0 else row

    def add(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Map new ids (not present, unique) to rows."""
        if not len(ids):
            return
        order = np.argsort(ids, kind="stable")
        ids, rows = np.asarray(ids, np.uint64)[order], np.asarray(rows, np.int64)[order]
        self._reserve(self._n + len(ids))
        if self._n == 0 or ids[0] > self._ids[self._n - 1]:
            self._ids[self._n : self._n + len(ids)] = ids
            self._rows[self._n : self._n + len(ids)] = rows
        else:
            at = np.searchsorted(self._ids[: self._n], ids)
            merged_ids = np.insert(self._ids[: self._n], at, ids)
            merged_rows = np.insert(self._rows[: self._n], at, rows)
            self._ids[: len(merged_ids)] = merged_ids
            self._rows[: len(merged_rows)] = merged_rows
        self._n += len(ids)

    def move(self, face_id: int, row: int) -> None:
        """The face (present) now lives in `row`."""
        at = int(np.searchsorted(self._ids[: self._n], np.uint64(face_id)))
        self._rows[at] = row

    def discard(self, face_ids: Iterable[int]) -> None:
        ids = np.asarray(list(face_ids), np.uint64)
        if not len(ids):
            return
        keys = self._ids[: self._n]
        at = np.searchsorted(keys, ids)
        at = at[(at < self._n) & (keys[np.minimum(at, self._n - 1)] == ids)]
        if not len(at):
            return
        kept = np.ones(self._n, bool)
        kept[at] = False
        remaining = int(kept.sum())
        self._ids[:remaining] = self._ids[: self._n][kept]
        self._rows[:remaining] = self._rows[: self._n][kept]
        self._n = remaining

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._rows.nbytes

    def _reserve(self, needed: int) -> None:
        if needed <= len(self._ids):
            return
        capacity = max(needed, len(self._ids) * 3 // 2)
        for name in ("_ids", "_rows"):
            old = getattr(self, name)
            grown = np.empty(capacity, old.dtype)
            grown[: self._n] = old[: self._n]
            setattr(self, name, grown)
