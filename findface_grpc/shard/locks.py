"""The shard index's lock: many searches at once, or one writer alone."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WouldBlock(Exception):
    """A search asked not to wait (one run on the event loop) would have to: for a writer, or for Tarantool."""


class ReadWriteLock:
    """Many searches at once, or one writer alone.

    Searches spend their time in BLAS, which releases the GIL, so several can run in parallel; a writer must
    not move rows under them. Writers are preferred: once one waits, new searches queue behind it, so a steady
    stream of searches cannot starve Adds (whose work under the lock is short: copying rows).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self, wait: bool = True) -> Iterator[None]:
        """`wait` False: WouldBlock instead of waiting for a writer."""
        with self._cond:
            while self._writing or self._writers_waiting:
                if not wait:
                    raise WouldBlock("a writer holds the index")
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
