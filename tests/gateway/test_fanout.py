"""search_all's per-shard deadlines and failure reporting, with in-process stand-ins for shards.

Stand-ins here because the point is timing that a real shard cannot be made to show on demand (a shard that
answers late but does answer); killing real shards is covered in test_cluster.py.
"""
from __future__ import annotations

import asyncio
import time

import numpy as np

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.domain import Descriptor
from findface_grpc.gateway.fanout import search_all
from findface_grpc.gateway.merge import Hit

QUERY = [Descriptor("m", np.ones(4, np.float32) / 2)]


class StandIn:
    def __init__(self, name, delay=0.0, hits=None, error=None):
        self.name, self.delay, self.hits, self.error = name, delay, hits, error
        self.calls = []

    async def search(self, queries, gallery, k, threshold, timeout, full_scan=False):
        self.calls.append((len(queries), gallery, k, threshold, timeout, full_scan))
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return self.hits if self.hits is not None else [[Hit(1, 0.5)] for _ in queries]


def test_every_shard_is_asked_at_once_with_the_same_request():
    shards = [StandIn(f"s{i}", delay=0.5) for i in range(3)]
    t0 = time.monotonic()
    answers = asyncio.run(search_all(shards, QUERY, "g", 7, 0.3, deadline_s=2.0))
    assert time.monotonic() - t0 < 1.2  # concurrent (0.5 s), not one after another (1.5 s); room for a busy CI
    assert [a.ok for a in answers] == [True, True, True]
    assert [a.shard for a in answers] == [0, 1, 2]
    assert all(s.calls == [(1, "g", 7, 0.3, 2.0, False)] for s in shards)
    asyncio.run(search_all(shards, QUERY, "g", 7, 0.3, deadline_s=2.0, full_scan=True))
    assert all(s.calls[-1] == (1, "g", 7, 0.3, 2.0, True) for s in shards)


def test_a_slow_shard_costs_at_most_its_deadline():
    shards = [StandIn("fast"), StandIn("slow", delay=5.0), StandIn("fast2")]
    t0 = time.monotonic()
    answers = asyncio.run(search_all(shards, QUERY, "g", 1, 0.0, deadline_s=0.3))
    assert time.monotonic() - t0 < 2.5  # the deadline, far from the slow shard's 5 s
    assert [a.ok for a in answers] == [True, False, True]
    assert "no answer within 0.3s" in answers[1].error


def test_failures_are_reported_per_shard():
    shards = [StandIn("ok"), StandIn("down", error=Unavailable("shard 1: UNAVAILABLE: connection refused"))]
    answers = asyncio.run(search_all(shards, QUERY, "g", 1, 0.0, deadline_s=1.0))
    assert answers[0].ok and answers[0].hits == ((Hit(1, 0.5),),)
    assert not answers[1].ok and "connection refused" in answers[1].error


def test_an_answer_of_the_wrong_length_is_a_failure():
    shards = [StandIn("short", hits=[])]
    answers = asyncio.run(search_all(shards, QUERY, "g", 1, 0.0, deadline_s=1.0))
    assert not answers[0].ok and "0 hit lists for 1 queries" in answers[0].error
