"""Merging the shards' top-k lists into one global top-k: a pure function, no I/O."""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    face_id: int
    score: float  # cosine similarity, higher is more alike


def _rank(hit: Hit) -> tuple[float, int]:
    # Best first: higher score, then the smaller id, so that equal scores always come back in the same order
    # however the shards happened to answer. A NaN score ranks last rather than poisoning the ordering.
    score = hit.score
    return (math.inf if math.isnan(score) else -score, hit.face_id)


def merge_top_k(lists: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The k best hits over all lists, best first, each face id once (with its best score)."""
    if k <= 0:
        return []
    best: dict[int, Hit] = {}
    for hits in lists:
        for hit in hits:
            seen = best.get(hit.face_id)
            # A face should live on one shard only, but during a cell move it can answer from two.
            if seen is None or _rank(hit) < _rank(seen):
                best[hit.face_id] = hit
    return heapq.nsmallest(k, best.values(), key=_rank)


def merge_batches(per_shard: Iterable[Sequence[Sequence[Hit]]], queries: int, k: int) -> list[list[Hit]]:
    """Per query, the merged top-k of every shard's list for that query.

    `per_shard` holds, for each shard that answered, one hit list per query, in query order.
    """
    per_shard = list(per_shard)
    for answer in per_shard:
        if len(answer) != queries:
            raise ValueError(f"a shard answered {len(answer)} hit lists for {queries} queries")
    return [merge_top_k((answer[q] for answer in per_shard), k) for q in range(queries)]
