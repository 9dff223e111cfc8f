"""Failure injection at named steps of the gateway's write paths, for tests of crash safety."""
from __future__ import annotations

from findface_grpc.errors import Unavailable


class InjectedFault(Unavailable):
    """Raised at a step armed in `Faults` (tests only)."""


class Faults:
    """A test arms steps; the next time the code reaches one, it raises InjectedFault as if the process had lost
    its connection (or died) right there. Arming the matching "rollback" step as well makes the immediate
    clean-up fail too, which leaves exactly what a crash would leave, for repair to handle. Steps (enrollment's
    in the order of enrollment.py): enroll.after_allocate, enroll.after_journal (journal entry written, quota
    reserved), enroll.after_move (faces of a failed shard to be added again under fresh ids, named in the journal
    entry), enroll.after_shard_add, enroll.after_faces (documents inserted as active, journal entry not yet
    removed), enroll.after_commit (acknowledged in both stores; only the reply is lost), enroll.rollback,
    delete.after_mark, delete.after_shard_remove, update.after_mark, update.after_shard_update,
    gallery_delete.after_mark.
    """

    def __init__(self) -> None:
        self._armed: dict[str, int] = {}

    def arm(self, *steps: str, times: int = 1) -> None:
        for step in steps:
            self._armed[step] = times

    def clear(self) -> None:
        self._armed.clear()

    def check(self, step: str) -> None:
        left = self._armed.get(step, 0)
        if left:
            self._armed[step] = left - 1
            raise InjectedFault(f"injected fault at {step}")
