from __future__ import annotations

from collections import Counter

import pytest

from findface_grpc.errors import ConfigError
from findface_grpc.gateway.cells import CellMap, cell_of, contiguous

EXPECTED_CELLS = [441, 882, 300, 153, 256]


@pytest.mark.parametrize("cells, shards", [(1024, 1), (1024, 2), (1024, 3), (1024, 7), (8, 8), (10, 3)])
def test_contiguous_ranges_cover_every_cell_in_order_and_evenly(cells, shards):
    owners = contiguous(cells, shards)
    assert len(owners) == cells
    assert list(owners) == sorted(owners)  # contiguous ranges
    counts = Counter(owners)
    assert set(counts) == set(range(shards))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_default_two_shards_split_the_cells_in_halves():
    cmap = CellMap.from_config(1024, 2)
    assert {cmap.shard_of(i) for i in range(1, 1025) if cmap.cell_of(i) < 512} == {0}
    assert {cmap.shard_of(i) for i in range(1, 1025) if cmap.cell_of(i) >= 512} == {1}


def test_consecutive_ids_spread_over_every_shard_from_the_start():
    cmap = CellMap.from_config(1024, 4)
    counts = Counter(cmap.shard_of(i) for i in range(1, 401))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) >= 70  # 100 each when perfectly even
    assert len({cmap.cell_of(i) for i in range(1, 1001)}) > 600


def test_cell_of_is_stable():
    # The id -> cell function is part of the stored data's layout: these values must never change.
    assert [cell_of(i, 1024) for i in (1, 2, 3, 1000, 2**40)] == EXPECTED_CELLS


def test_group_keeps_order_within_a_shard():
    cmap = CellMap.from_config(4, 2)
    assert cmap.group([7, 1, 2, 4, 3, 5]) == {1: [7, 2, 5], 0: [1, 4, 3]}


@pytest.mark.parametrize(
    "entries, message",
    [
        (["0-2:0"], "leaves 1 cells unmapped: 3"),
        (["0-3:0", "3:1"], "cell 3 is mapped twice"),
        (["0-3:2"], "shard must be within 0..1"),
        (["0-4:0"], "cells must be within 0..3"),
        (["2-1:0"], "first <= last"),
        (["0-3"], "expected FIRST-LAST:SHARD"),
        (["a-b:0"], "expected FIRST-LAST:SHARD"),
    ],
)
def test_bad_maps_are_refused_naming_the_problem(entries, message):
    with pytest.raises(ConfigError, match=message):
        CellMap.from_config(4, 2, entries)
