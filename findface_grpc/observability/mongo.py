"""MongoDB command round trips as metrics, from pymongo's command monitoring (no change to the code that calls
MongoDB: every client made after `watch` reports its commands)."""
from __future__ import annotations

from pymongo import monitoring

from findface_grpc.observability import metrics

# Command names as labels, the rest as "other": a bounded set whatever a driver version sends.
COMMANDS = frozenset({"find", "insert", "update", "delete", "findAndModify", "aggregate", "count", "distinct",
                      "getMore", "killCursors", "createIndexes", "listIndexes", "listCollections", "drop", "ping",
                      "hello", "endSessions", "commitTransaction", "abortTransaction"})


def _label(name: str) -> str:
    return name if name in COMMANDS else "other"


class _Listener(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        metrics.MONGO_SECONDS.labels(_label(event.command_name)).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        name = _label(event.command_name)
        metrics.MONGO_SECONDS.labels(name).observe(event.duration_micros / 1e6)
        metrics.MONGO_FAILURES.labels(name).inc()


_registered = False


def watch() -> None:
    """Report the commands of every MongoClient made from now on (once per process)."""
    global _registered
    if not _registered:
        monitoring.register(_Listener())
        _registered = True
