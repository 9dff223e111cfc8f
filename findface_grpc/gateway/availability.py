"""Which shards take new faces now, as this gateway last found them, and how long a write waits on a hung shard.

A shard is taken as away when a write to it failed for its being unreachable (UNAVAILABLE: its server or its
Tarantool gone, or no answer in time) or hung (below). From then on a probe asks it every PROBE_INTERVAL_S for one
id from its Tarantool, a read that needs both, and takes it back at its first answer (as does a write to it that
succeeds). Nothing here ever makes a call wait: while every shard answers no probe runs, and enrollment reads the
view as it is.
Searches do not count as answers: a shard whose Tarantool is down still searches its memory, but cannot store.

A hung shard server (stopped, wedged: connected, but answering nothing) would hold each write for the whole
shard_timeout_s, which a big import on a healthy shard may need. So while writes wait on a shard, it is asked for
its health every CHECK_INTERVAL_S (one check at a time, however many writes wait): a shard that leaves them
unanswered for shard_hang_s is taken as hung, and its waiting writes are abandoned as if their time had run out
(enrollment moves their faces to the shards that answer; what the shard may still store when it wakes has no
metadata, and repair removes it). A shard that is only slow answers health checks from its event loop while its
writes run in its threads, so its writes are waited for as long as they take, up to shard_timeout_s.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.clients import ShardClient
from findface_grpc.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# As often as a lost MongoDB is tried again (outage.py), and no more often than a gRPC channel reconnects.
PROBE_INTERVAL_S = 1.0
# Health checks of a shard while writes wait on it: this often, each after the last one's answer. Never more than
# a quarter of shard_hang_s, so that the check that finds a shard hung has had most of that time to be answered.
CHECK_INTERVAL_S = 1.0

T = TypeVar("T")


class _Watch:
    """The health checks of one shard while writes wait on it."""

    def __init__(self) -> None:
        self.writes = 0
        self.hung = asyncio.Event()
        self.reason = ""
        self.task: asyncio.Task | None = None


class ShardAvailability:
    def __init__(self, shards: Sequence[ShardClient], probe_timeout_s: float, hang_s: float,
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self._shards = shards
        self._probe_timeout_s = probe_timeout_s
        self._probe_interval_s = probe_interval_s
        self._hang_s = hang_s
        self._check_interval_s = min(CHECK_INTERVAL_S, hang_s / 4)
        self._away: dict[int, str] = {}
        self._prober: asyncio.Task | None = None
        self._watches: dict[int, _Watch] = {}

    @property
    def away(self) -> dict[int, str]:
        """Shard index -> why it is taken as unable to store new faces."""
        return dict(self._away)

    def answering(self) -> set[int]:
        return {i for i in range(len(self._shards)) if i not in self._away}

    def failed(self, index: int, reason: str) -> None:
        """A write to the shard failed for its being unreachable."""
        if index not in self._away:
            log.warning("new faces go to the shards that answer while this one cannot store them: %s", reason)
        self._away[index] = reason
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe(), name="gateway-shard-probe")

    def answered(self, index: int) -> None:
        """A write to the shard, or a probe, succeeded."""
        if self._away.pop(index, None) is not None:
            log.info("%s stores new faces again", self._shards[index].name)

    async def _probe(self) -> None:
        while self._away:
            await asyncio.sleep(self._probe_interval_s)
            away = list(self._away)
            results = await asyncio.gather(
                *(asyncio.wait_for(self._shards[i].list_ids(0, 1), self._probe_timeout_s) for i in away),
                return_exceptions=True,
            )
            for index, result in zip(away, results):
                if not isinstance(result, BaseException):
                    self.answered(index)

    async def guard(self, index: int, write: Awaitable[T]) -> T:
        """The result of `write`, a call on shard `index`; Unavailable, the call cancelled, if the shard is found
        hung while it waits (see the module's docstring)."""
        watch = self._watches.get(index)
        if watch is None:
            watch = self._watches[index] = _Watch()
            watch.task = asyncio.create_task(self._watch(index, watch), name=f"gateway-shard-{index}-watch")
        watch.writes += 1
        call = asyncio.ensure_future(write)
        hung = asyncio.ensure_future(watch.hung.wait())
        try:
            await asyncio.wait({call, hung}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            call.cancel()
            raise
        finally:
            hung.cancel()
            watch.writes -= 1
            if watch.writes == 0 and self._watches.get(index) is watch:
                del self._watches[index]
                watch.task.cancel()
        if call.done():  # an answer that came with the verdict still counts: the shard acknowledged it
            return call.result()
        call.cancel()
        raise Unavailable(watch.reason)

    async def _watch(self, index: int, watch: _Watch) -> None:
        """Health checks of the shard, each as soon as the last one answered (and at most one per interval), for
        as long as writes wait on it; sets `watch.hung` once it left them unanswered for hang_s."""
        shard = self._shards[index]
        loop = asyncio.get_running_loop()
        asked = loop.time()  # the writes were just sent: the first check comes an interval later
        silent_since: float | None = None
        while True:
            await asyncio.sleep(max(0.0, asked + self._check_interval_s - loop.time()))
            asked = loop.time()
            first = asked if silent_since is None else silent_since
            left = first + self._hang_s - asked
            if left <= 0:
                break
            try:
                await shard.alive(left)
                silent_since = None
            except Unavailable:
                silent_since = first
        watch.reason = (f"{shard.name}: gave no answer to health checks for {self._hang_s:g} s (shard_hang_s): taken "
                        "as hung, the write waiting on it abandoned")
        self.failed(index, watch.reason)
        watch.hung.set()

    async def close(self) -> None:
        for watch in list(self._watches.values()):
            await cancel_and_wait(watch.task)
        await cancel_and_wait(self._prober)
