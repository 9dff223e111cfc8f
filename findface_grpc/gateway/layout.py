"""The data layout a cluster's faces were placed with, recorded by its first gateway and checked by every start.

Which shard holds a face follows from the number of cells and the cell -> shard map (cells.py). A gateway
started with another layout (another shard count, cell count or cell_map over the same MongoDB and shards) would
send each face's changes and deletions to a shard that does not hold it: gallery changes and deletions would be
acknowledged and lost for most faces, silently. So the layout is written to MongoDB (`cluster`, document
`layout`) once, and a gateway whose configuration disagrees with it refuses to start, naming both.

The same shards listed in another order disagree too (the cells of one would go to another), which the counts
cannot show: the layout also records each position's shard by the shard_id it answers with (its Stats), and a
gateway that finds a recorded shard at another position refuses to start, naming both orders. A shard that does not
answer at start is not checked; one whose id is recorded nowhere has replaced the shard at its position (new shards
after a re-extraction) and is recorded there. Adding shards (README: cell_map, then deleting this document)
records the new order from scratch.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pymongo.collection

from findface_grpc.errors import ConfigError
from findface_grpc.gateway.cells import CellMap

log = logging.getLogger(__name__)

LAYOUT_ID = "layout"
SHARD_IDS = "shard_ids"


@dataclass(frozen=True)
class ConfiguredShard:
    address: str
    shard_id: str | None  # what it answered; None when it did not answer at start


def cell_ranges(owners: Sequence[int]) -> list[str]:
    """The cell -> shard map in cell_map's own notation, runs of cells merged: ["0-511:0", "512-1023:1"]."""
    ranges, first = [], 0
    for cell in range(1, len(owners) + 1):
        if cell == len(owners) or owners[cell] != owners[first]:
            ranges.append(f"{first}-{cell - 1}:{owners[first]}" if cell - 1 > first else f"{first}:{owners[first]}")
            first = cell
    return ranges


def describe(cells: CellMap) -> dict:
    return {"shards": cells.shards, "cells": cells.cells, "cell_map": cell_ranges(cells.owners)}


def disagreement(recorded: dict, current: dict) -> str | None:
    """Why `current` cannot serve faces placed with `recorded`, or None when they agree."""
    if all(recorded.get(key) == current[key] for key in ("shards", "cells", "cell_map")):
        return None
    return (f"the faces of this cluster were placed with {recorded.get('shards')} shards, "
            f"{recorded.get('cells')} cells and cell_map {recorded.get('cell_map')}, but this gateway is configured "
            f"with {current['shards']} shards, {current['cells']} cells and cell_map {current['cell_map']}: it would "
            "look for faces on shards that do not hold them. Start it with the cluster's shards (in their order), "
            "cells and cell_map; to change them, move the faces of the cells that change owner first, then delete "
            f"the document {LAYOUT_ID!r} of the 'cluster' collection so that the next start records the new layout")


def misplaced(recorded: Sequence[str | None], shards: Sequence[ConfiguredShard]) -> str | None:
    """Why `shards` (in configured order) are not the recorded ones in the recorded order, or None."""
    positions: dict[str, int] = {}
    for i, shard in enumerate(shards):
        if shard.shard_id is None:
            continue
        if shard.shard_id in positions:
            return (f"shards {positions[shard.shard_id]} and {i} of this gateway's list both answer as shard_id "
                    f"{shard.shard_id!r}: the same shard is listed twice, or two shards share a shard_id (give each "
                    "shard its own)")
        positions[shard.shard_id] = i
    if all(recorded.index(sid) == i for sid, i in positions.items() if sid in recorded):
        return None
    configured = [f"{s.shard_id or '(no answer)'} at {s.address}" for s in shards]
    return (f"the faces of this cluster were placed on the shards in the order {list(recorded)}, but this gateway "
            f"lists them as {configured}: each shard's cells would go to another shard, and their faces would be "
            "missing from searches. List the shards in the recorded order")


def recorded_order(recorded: Sequence[str | None], shards: Sequence[ConfiguredShard]) -> list[str | None]:
    """The order to record once `shards` were found in place: each answering shard at its position."""
    order = list(recorded) if len(recorded) == len(shards) else [None] * len(shards)
    return [s.shard_id if s.shard_id is not None else known for s, known in zip(shards, order)]


def check(collection: pymongo.collection.Collection, cells: CellMap, shards: Sequence[ConfiguredShard]) -> None:
    """Record the layout when none is, else refuse one that disagrees with it or shards out of their recorded order
    (ConfigError); then record the answering shards' ids at their positions. Blocking."""
    current = describe(cells)
    collection.update_one({"_id": LAYOUT_ID}, {"$setOnInsert": current}, upsert=True)
    recorded = collection.find_one({"_id": LAYOUT_ID}) or current
    why = disagreement(recorded, current) or misplaced(recorded.get(SHARD_IDS) or [], shards)
    if why is not None:
        raise ConfigError(why)
    silent = [f"{i} ({s.address})" for i, s in enumerate(shards) if s.shard_id is None]
    if silent:
        log.warning("shard(s) %s did not answer at start: their place in the layout is not checked", ", ".join(silent))
    order = recorded_order(recorded.get(SHARD_IDS) or [], shards)
    if order != recorded.get(SHARD_IDS):
        collection.update_one({"_id": LAYOUT_ID}, {"$set": {SHARD_IDS: order}})
