"""Failing fast while a dependency is down.

A MongoDB that does not answer makes every pymongo call wait out its server selection timeout; with calls
arriving faster than that, they pile up and everything slows down. Once one call has found the dependency down,
an `OutageBreaker` answers the calls that follow at once, UNAVAILABLE with what is down and since when, and lets
one call at a time try again every `retry_s`, so that recovery is noticed within about that long.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from findface_grpc.errors import Unavailable

# A probing call may take as long as the driver's own timeout; meanwhile the others keep failing fast.
PROBE_BUDGET_S = 60.0


class OutageBreaker:
    def __init__(self, name: str, retry_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: datetime | None = None
        self._reason = ""
        self._closed_until = 0.0  # while down: no call tries before this

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def before_call(self) -> None:
        """Raises Unavailable at once while the dependency is known down and it is not this call's turn to try."""
        with self._lock:
            if self._down_since is None:
                return
            now = self._clock()
            if now < self._closed_until:
                since = self._down_since.isoformat(timespec="seconds")
                raise Unavailable(
                    f"{self.name} unavailable since {since} ({self._reason}); retried every {self.retry_s:g} s"
                )
            self._closed_until = now + PROBE_BUDGET_S

    def failed(self, reason: str) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = datetime.now(timezone.utc)
            self._reason = reason
            self._closed_until = self._clock() + self.retry_s

    def answered(self) -> None:
        with self._lock:
            self._down_since = None
            self._closed_until = 0.0
