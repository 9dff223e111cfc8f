"""One shard's searches sent together under load: while `at_once` Search calls to the shard are in flight, further
searches wait, and when one of those calls returns they go as one call that carries all their queries.

Under load most of what a fast-index search costs is the call, not the search: gRPC on both ends, the decoding
and the encoding, about a millisecond of CPU a call on the shard and half of that on the gateway, against a few
hundred microseconds to score a query's lists. Eight identifies in flight that share one call per shard pay it
once. A search that finds fewer than `at_once` calls in flight goes at once, from its caller's coroutine, so at
low load nothing waits and nothing is added.

Searches only go together when the shard would answer each of them the same way alone: same gallery, k,
threshold, full scan and model. The shard searches each query of a call on its own (its hits depend on no other
query), so each caller gets exactly its own queries' hits back.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.domain import Descriptor
from findface_grpc.gateway.merge import Hit
from findface_grpc.observability import metrics

# The shard's limit on the queries of one Search call.
MAX_QUERIES_PER_CALL = 1024
DEFAULT_SEARCHES_AT_ONCE = 2  # [gateway] shard_searches_at_once

Send = Callable[[Sequence[Descriptor], str, int, float, float, bool], Awaitable[list[list[Hit]]]]


@dataclass(frozen=True, slots=True)
class _Key:
    gallery: str
    k: int
    threshold: float
    full_scan: bool
    model_id: str
    dim: int


@dataclass(slots=True)
class _Waiting:
    queries: Sequence[Descriptor]
    deadline: float  # the event loop's clock
    answer: asyncio.Future
    # The caller's context (request id, trace span): the shared call is made in its first member's.
    context: contextvars.Context


class SearchCoalescer:
    """The Search calls of one shard client. `send(queries, gallery, k, threshold, timeout, full_scan)` makes one."""

    def __init__(self, send: Send, at_once: int, peer: str, max_queries: int = MAX_QUERIES_PER_CALL) -> None:
        if at_once < 1:
            raise ValueError("at_once must be >= 1")
        self._send = send
        self.peer = peer
        self.at_once = at_once
        self.max_queries = max_queries
        self._waited = metrics.SHARD_QUERIES_COALESCED.labels(peer)
        self._in_flight = 0
        self._waiting: dict[_Key, list[_Waiting]] = {}
        self._calls: set[asyncio.Task] = set()  # shared calls under way (the loop keeps only weak references)

    async def search(self, queries: Sequence[Descriptor], gallery: str, k: int, threshold: float, timeout: float,
                     full_scan: bool = False) -> list[list[Hit]]:
        if self._in_flight < self.at_once or len(queries) >= self.max_queries:
            return await self._call(queries, gallery, k, threshold, timeout, full_scan)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(queries, loop.time() + timeout, loop.create_future(), contextvars.copy_context())
        first = queries[0]
        key = _Key(gallery, k, threshold, full_scan, first.model_id, first.dim)
        self._waiting.setdefault(key, []).append(waiting)
        return await waiting.answer

    async def _call(self, queries: Sequence[Descriptor], gallery: str, k: int, threshold: float, timeout: float,
                    full_scan: bool) -> list[list[Hit]]:
        self._in_flight += 1
        try:
            return await self._send(queries, gallery, k, threshold, timeout, full_scan)
        finally:
            self._in_flight -= 1
            self._send_waiting()

    def _send_waiting(self) -> None:
        """Send what waits, oldest group first, as far as the calls in flight allow."""
        while self._in_flight < self.at_once and self._waiting:
            key = next(iter(self._waiting))
            group = self._waiting[key]
            members, count = [], 0
            while group and count + len(group[0].queries) <= self.max_queries:
                member = group.pop(0)
                if not member.answer.done():  # a caller that gave up (its deadline) is not searched for
                    members.append(member)
                    count += len(member.queries)
            if not group:
                del self._waiting[key]
            if members:
                self._waited.inc(count)
                call = asyncio.get_running_loop().create_task(self._shared_call(key, members),
                                                              context=members[0].context)
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)

    async def _shared_call(self, key: _Key, members: list[_Waiting]) -> None:
        queries = [query for member in members for query in member.queries]
        timeout = max(0.0, max(member.deadline for member in members) - asyncio.get_running_loop().time())
        try:
            hits = await self._call(queries, key.gallery, key.k, key.threshold, timeout, key.full_scan)
            if len(hits) != len(queries):
                raise Unavailable(f"{self.peer}: answered {len(hits)} hit lists for {len(queries)} queries")
        except asyncio.CancelledError:  # the gateway is stopping
            _fail(members, Unavailable(f"{self.peer}: search abandoned, the gateway is stopping"))
            raise
        except Exception as exc:  # noqa: BLE001 - every member's answer, as it would have been alone
            _fail(members, exc)
            return
        start = 0
        for member in members:
            if not member.answer.done():
                member.answer.set_result(hits[start:start + len(member.queries)])
            start += len(member.queries)


def _fail(members: list[_Waiting], error: Exception) -> None:
    for member in members:
        if not member.answer.done():
            member.answer.set_exception(error)
