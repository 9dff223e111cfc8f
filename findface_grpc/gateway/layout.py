"""The data layout a cluster's faces were placed with, recorded by its first gateway and checked by every start.

Which shard holds a face follows from the number of cells and the cell -> shard map (cells.py). A gateway
started with another layout (another shard count, cell count or cell_map over the same MongoDB and shards) would
send each face's changes and deletions to a shard that does not hold it: gallery changes and deletions would be
acknowledged and lost for most faces, silently. So the layout is written to MongoDB (`cluster`, document
`layout`) once, and a gateway whose configuration disagrees with it refuses to start, naming both.
"""
from __future__ import annotations

from collections.abc import Sequence

import pymongo.collection

from findface_grpc.errors import ConfigError
from findface_grpc.gateway.cells import CellMap

LAYOUT_ID = "layout"


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


def check(collection: pymongo.collection.Collection, cells: CellMap) -> None:
    """Record the layout when none is, else refuse one that disagrees with it (ConfigError). Blocking."""
    current = describe(cells)
    collection.update_one({"_id": LAYOUT_ID}, {"$setOnInsert": current}, upsert=True)
    recorded = collection.find_one({"_id": LAYOUT_ID}) or current
    why = disagreement(recorded, current)
    if why is not None:
        raise ConfigError(why)
