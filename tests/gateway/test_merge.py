"""merge_top_k and merge_batches: table-driven."""
from __future__ import annotations

import math

import pytest

from findface_grpc.gateway.merge import Hit, merge_batches, merge_top_k


def hits(*pairs: tuple[int, float]) -> list[Hit]:
    return [Hit(face_id, score) for face_id, score in pairs]


CASES = [
    # (name, per-shard lists, k, expected (id, score) best first)
    ("no shards", [], 3, []),
    ("empty shards", [[], []], 3, []),
    ("one shard passes through", [hits((1, 0.9), (2, 0.5))], 5, [(1, 0.9), (2, 0.5)]),
    ("interleaves by score", [hits((1, 0.9), (3, 0.4)), hits((2, 0.7), (4, 0.1))], 3,
     [(1, 0.9), (2, 0.7), (3, 0.4)]),
    ("k cuts the tail", [hits((1, 0.9), (2, 0.8)), hits((3, 0.85))], 2, [(1, 0.9), (3, 0.85)]),
    ("k larger than everything", [hits((1, 0.2)), hits((2, 0.3))], 100, [(2, 0.3), (1, 0.2)]),
    ("k zero", [hits((1, 0.9))], 0, []),
    ("ties go to the smaller id", [hits((9, 0.5)), hits((3, 0.5)), hits((5, 0.5))], 2, [(3, 0.5), (5, 0.5)]),
    ("duplicate id keeps its best score", [hits((7, 0.4)), hits((7, 0.6), (8, 0.5))], 3, [(7, 0.6), (8, 0.5)]),
    ("duplicate within one list", [hits((7, 0.6), (7, 0.6))], 3, [(7, 0.6)]),
    ("negative scores rank below positive", [hits((1, -0.2)), hits((2, 0.0), (3, -0.9))], 3,
     [(2, 0.0), (1, -0.2), (3, -0.9)]),
    ("unsorted input is sorted", [hits((1, 0.1), (2, 0.9))], 2, [(2, 0.9), (1, 0.1)]),
    ("NaN ranks last", [hits((1, math.nan), (2, -1.0))], 2, [(2, -1.0), (1, math.nan)]),
]


@pytest.mark.parametrize("lists, k, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_merge_top_k(lists, k, expected):
    got = [(h.face_id, h.score) for h in merge_top_k(lists, k)]
    assert len(got) == len(expected)
    for (gid, gscore), (eid, escore) in zip(got, expected):
        assert gid == eid
        assert (math.isnan(gscore) and math.isnan(escore)) or gscore == escore


def test_merge_does_not_depend_on_shard_order():
    a, b, c = hits((1, 0.5), (4, 0.3)), hits((2, 0.5), (5, 0.3)), hits((3, 0.9))
    assert merge_top_k([a, b, c], 4) == merge_top_k([c, b, a], 4) == merge_top_k([b, c, a], 4)


def test_merge_batches_merges_per_query():
    shard0 = [hits((1, 0.9)), hits((3, 0.2))]
    shard1 = [hits((2, 0.95)), hits((4, 0.6), (6, 0.1))]
    merged = merge_batches([shard0, shard1], queries=2, k=2)
    assert [[h.face_id for h in q] for q in merged] == [[2, 1], [4, 3]]


def test_merge_batches_refuses_a_short_answer():
    with pytest.raises(ValueError, match="1 hit lists for 2 queries"):
        merge_batches([[hits((1, 0.5))]], queries=2, k=1)
