"""Which shard owns a face id: id -> cell (a hash of the id, modulo cells) -> shard index.

Ids are handed out in sequence, so the id is hashed before taking the cell: consecutive ids then land in cells
all over the range, and every shard gets its share of new faces from the first one on (with `id % cells`, the
first 511 faces of a 2-shard cluster would all go to shard 0). The number of cells is fixed for the life of a cluster and much larger than the number of shards, so that shards
can be added or rebalanced by moving whole cells (and their faces) from one shard to another, without changing
any face id.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from findface_grpc.errors import ConfigError


_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: Fibonacci hashing spreads sequences evenly
_MASK64 = (1 << 64) - 1


def cell_of(face_id: int, cells: int) -> int:
    """The cell of a face id. Part of the cluster's on-disk contract: changing it would move every face."""
    return (((face_id * _GOLDEN) & _MASK64) >> 32) % cells


def contiguous(cells: int, shards: int) -> tuple[int, ...]:
    """Cell -> shard in equal contiguous ranges: with 1024 cells and 2 shards, 0-511 -> 0 and 512-1023 -> 1.

    Ranges (rather than cell % shards) keep a later split cheap: a new shard takes the upper half of one
    shard's range, and only that shard's faces move.
    """
    return tuple(cell * shards // cells for cell in range(cells))


def parse_entries(cells: int, shards: int, entries: Iterable[str]) -> tuple[int, ...]:
    """Cell -> shard from entries "FIRST-LAST:SHARD" or "CELL:SHARD" that together cover each cell once."""
    owner: list[int | None] = [None] * cells
    for entry in entries:
        cell_part, sep, shard_part = entry.strip().partition(":")
        first_s, dash, last_s = cell_part.partition("-")
        try:
            if not sep:
                raise ValueError
            first = int(first_s)
            last = int(last_s) if dash else first
            shard = int(shard_part)
        except ValueError:
            raise ConfigError(f"[gateway].cell_map entry {entry!r}: expected FIRST-LAST:SHARD or CELL:SHARD") from None
        if not 0 <= first <= last < cells:
            raise ConfigError(f"[gateway].cell_map entry {entry!r}: cells must be within 0..{cells - 1}, first <= last")
        if not 0 <= shard < shards:
            raise ConfigError(f"[gateway].cell_map entry {entry!r}: shard must be within 0..{shards - 1}")
        for cell in range(first, last + 1):
            if owner[cell] is not None:
                raise ConfigError(f"[gateway].cell_map: cell {cell} is mapped twice")
            owner[cell] = shard
    missing = [cell for cell, shard in enumerate(owner) if shard is None]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(f"[gateway].cell_map leaves {len(missing)} cells unmapped: {shown}")
    return tuple(owner)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CellMap:
    owners: tuple[int, ...]  # cell -> shard index
    shards: int

    @classmethod
    def from_config(cls, cells: int, shards: int, entries: Iterable[str] = ()) -> "CellMap":
        entries = tuple(entries)
        if cells < 1 or shards < 1:
            raise ConfigError("cells and shards must be >= 1")
        owners = parse_entries(cells, shards, entries) if entries else contiguous(cells, shards)
        return cls(owners, shards)

    @property
    def cells(self) -> int:
        return len(self.owners)

    def cell_of(self, face_id: int) -> int:
        return cell_of(face_id, len(self.owners))

    def shard_of(self, face_id: int) -> int:
        return self.owners[cell_of(face_id, len(self.owners))]

    def group(self, face_ids: Iterable[int]) -> dict[int, list[int]]:
        """Face ids by owning shard, each list in the given order; shards without ids are left out."""
        groups: dict[int, list[int]] = {}
        for face_id in face_ids:
            groups.setdefault(self.shard_of(face_id), []).append(face_id)
        return groups
