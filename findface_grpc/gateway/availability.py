"""Which shards take new faces now, as this gateway last found them: enrollment gives new faces ids on those.

A shard is taken as away when a write to it failed for its being unreachable (UNAVAILABLE: its server or its
Tarantool gone, or no answer in time). From then on a probe asks it every PROBE_INTERVAL_S for one id from its
Tarantool, a read that needs both, and takes it back at its first answer (as does a write to it that succeeds).
Nothing here ever makes a call wait: while every shard answers no probe runs, and enrollment reads the view as
it is.
Searches do not count as answers: a shard whose Tarantool is down still searches its memory, but cannot store.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from findface_grpc.gateway.clients import ShardClient
from findface_grpc.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# As often as a lost MongoDB is tried again (outage.py), and no more often than a gRPC channel reconnects.
PROBE_INTERVAL_S = 1.0


class ShardAvailability:
    def __init__(self, shards: Sequence[ShardClient], probe_timeout_s: float,
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self._shards = shards
        self._probe_timeout_s = probe_timeout_s
        self._probe_interval_s = probe_interval_s
        self._away: dict[int, str] = {}
        self._prober: asyncio.Task | None = None

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

    async def close(self) -> None:
        await cancel_and_wait(self._prober)
