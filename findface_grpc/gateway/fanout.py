"""Fan a search out to every shard at once: I/O only, each shard with its own deadline.

A shard that fails or misses its deadline is reported as such, never waited for past it, so one slow shard
costs a search at most the deadline. What to do with the answers (merge, flag partial, refuse) is the caller's.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from findface_grpc.gateway.domain import Descriptor
from findface_grpc.gateway.merge import Hit
from findface_grpc.observability import metrics


class Searchable(Protocol):
    name: str

    async def search(
        self, queries: Sequence[Descriptor], gallery: str, k: int, threshold: float, timeout: float,
        full_scan: bool = False,
    ) -> list[list[Hit]]: ...


@dataclass(frozen=True)
class ShardAnswer:
    shard: int
    hits: tuple[tuple[Hit, ...], ...] | None  # one list per query; None when the shard failed
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.hits is not None


async def _one(index: int, shard: Searchable, queries: Sequence[Descriptor], gallery: str, k: int,
               threshold: float, deadline_s: float, full_scan: bool) -> ShardAnswer:
    try:
        # The outer timeout also covers waiting for a free slot on the shard's channel; the inner one lets the
        # shard itself drop work nobody waits for any more.
        async with asyncio.timeout(deadline_s):
            hits = await shard.search(queries, gallery, k, threshold, deadline_s, full_scan)
    except TimeoutError:
        return ShardAnswer(index, None, f"{shard.name}: no answer within {deadline_s:g}s")
    except Exception as exc:  # noqa: BLE001 - any failure of one shard is that shard's answer
        return ShardAnswer(index, None, str(exc) or type(exc).__name__)
    if len(hits) != len(queries):
        return ShardAnswer(index, None, f"{shard.name}: answered {len(hits)} hit lists for {len(queries)} queries")
    return ShardAnswer(index, tuple(tuple(h) for h in hits))


async def search_all(shards: Sequence[Searchable], queries: Sequence[Descriptor], gallery: str, k: int,
                     threshold: float, deadline_s: float, full_scan: bool = False) -> list[ShardAnswer]:
    """Every shard's answer (or failure), in shard order."""
    answers = list(await asyncio.gather(
        *(_one(i, shard, queries, gallery, k, threshold, deadline_s, full_scan) for i, shard in enumerate(shards))
    ))
    missing = [answer.shard for answer in answers if not answer.ok]
    for shard in missing:
        metrics.SHARDS_MISSING.labels(f"shard-{shard}").inc()
    if missing:
        metrics.PARTIAL_RESULTS.inc()
    return answers
