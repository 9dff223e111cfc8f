"""The breaker that makes calls fail fast while a dependency is down, on a clock of its own."""
from __future__ import annotations

import pytest

from findface_grpc.errors import Unavailable
from findface_grpc.outage import OutageBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_after_a_failure_calls_fail_at_once_and_one_call_a_period_tries_again():
    clock = Clock()
    breaker = OutageBreaker("thing", retry_s=1.0, clock=clock)
    breaker.before_call()  # up: every call goes through
    breaker.failed("ServerSelectionTimeoutError")
    with pytest.raises(Unavailable, match=r"thing unavailable since .*ServerSelectionTimeoutError"):
        breaker.before_call()
    clock.now += 1.0
    breaker.before_call()  # this call probes
    with pytest.raises(Unavailable):
        breaker.before_call()  # the others still fail fast while it does
    breaker.failed("ServerSelectionTimeoutError")
    clock.now += 0.5
    with pytest.raises(Unavailable):
        breaker.before_call()
    clock.now += 0.5
    breaker.before_call()
    breaker.answered()
    assert not breaker.down
    breaker.before_call()
    breaker.before_call()
