"""Repair: finishes or rolls back what failed or crashed writes left (see the write order in service.py), in a
background loop and on demand. Safe to run at any time, from any number of gateways at once."""
from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.cluster import REPAIR_PAGE, Cluster
from findface_grpc.gateway.enrollment import undo
from findface_grpc.gateway.galleries import Galleries
from findface_grpc.gateway.metadata import ABORTED, PENDING, ids_of_runs, utcnow
from findface_grpc.observability import metrics
from findface_grpc.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ACTIONS = ("rolled_back", "completed", "deleted", "resynced", "galleries_dropped", "orphans_removed")

# How long a rolled back import journal entry is kept and checked for documents inserted after all (by an
# enrollment stuck past the grace period that then crashed); see enrollment.py.
ABORTED_KEEP = timedelta(days=1)


@dataclass
class RepairReport:
    rolled_back: int = 0  # ids of dead enrollments rolled back (journal entries, and older pending documents)
    completed: int = 0  # journal entries of enrollments that wrote everything but died before removing them
    deleted: int = 0  # faces whose deletion was finished
    resynced: int = 0  # faces whose galleries were pushed to their shard again
    galleries_dropped: int = 0
    orphans_removed: int = 0  # shard ids without any metadata
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(getattr(self, action) for action in ACTIONS)

    def export(self) -> None:
        """Into the metrics: what was repaired, and which steps failed (by step name, a bounded set)."""
        for action in ACTIONS:
            metrics.REPAIR_ACTIONS.labels(action).inc(getattr(self, action))
        metrics.REPAIR_BACKLOG.set(sum(getattr(self, action) for action in ACTIONS))
        for error in self.errors:
            metrics.REPAIR_ERRORS.labels(error.partition(":")[0]).inc()


class Repairer:
    def __init__(self, cluster: Cluster, galleries: Galleries) -> None:
        self.cluster = cluster
        self.galleries = galleries
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._last_sweep = -math.inf

    def start(self) -> None:
        """Start repairing in the background, the first round at once."""
        self._task = asyncio.create_task(self._loop(), name="gateway-repair")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _loop(self) -> None:
        config, wakeup = self.cluster.config, self.cluster.repair_wakeup
        first = True
        while True:
            if not first:
                try:
                    await asyncio.wait_for(wakeup.wait(), config.repair_interval_s)
                    # Woken by a failure: give the failed part a moment to come back before trying again.
                    await asyncio.sleep(min(5.0, config.repair_interval_s))
                except TimeoutError:
                    pass
            wakeup.clear()
            try:
                sweep = time.monotonic() - self._last_sweep >= config.orphan_sweep_interval_s
                report = await self.repair(sweep=sweep)
                if report.errors:
                    log.warning("repair: %s", report)
                    self.cluster.repair_soon()
                elif first or report.changed:
                    log.info("repair: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive any one failed round
                log.exception("repair round failed")
            first = False

    async def repair(self, sweep: bool = False, grace_s: float | None = None) -> RepairReport:
        """Finish or roll back whatever failed or crashed writes left. Safe to run at any time, from any gateway."""
        async with self._lock:
            report = RepairReport()
            grace = self.cluster.config.pending_grace_s if grace_s is None else grace_s
            steps = [
                ("imports", lambda: self._repair_imports(grace, report)),
                ("pending", lambda: self._repair_pending(grace, report)),
                ("deleting", lambda: self._repair_deleting(report)),
                ("sync", lambda: self._repair_sync(report)),
                ("galleries", lambda: self._repair_galleries(report)),
            ]
            if sweep:
                steps.append(("orphans", lambda: self._sweep_orphans(report)))
            for name, step in steps:
                try:
                    await step()
                except Exception as exc:  # noqa: BLE001 - one step failing must not stop the others
                    report.errors.append(f"{name}: {exc}")
            if sweep and not any(e.startswith("orphans") for e in report.errors):
                self._last_sweep = time.monotonic()
            report.export()
            await self.cluster.refresh_model()
            return report

    async def _repair_imports(self, grace_s: float, report: RepairReport) -> None:
        """Journal entries of enrollments that died or got stuck (see enrollment.py for why this is safe).

        A pending entry older than the grace period is completed when every one of its faces has its active
        document (the enrollment wrote both stores and died before removing it), else aborted. Aborted entries
        are rolled back, and kept a day, checked each round for documents that an enrollment stuck past the
        grace period inserted after all.
        """
        metadata = self.cluster.metadata
        cutoff = utcnow() - timedelta(seconds=grace_s)
        for entry in await metadata.journals(PENDING, created_before=cutoff):
            if await metadata.count_active(ids_of_runs(entry["ids"])) >= entry["faces"]:
                report.completed += await metadata.complete_journal(entry["_id"])
            else:
                await metadata.abort_journal(entry["_id"])
        for entry in await metadata.journals(ABORTED):
            ids = ids_of_runs(entry["ids"])
            if entry.get("cleaned") and not await metadata.count_existing(ids):
                if entry["aborted"] < utcnow() - ABORTED_KEEP:
                    await metadata.drop_journal(entry["_id"])
                continue
            taken, done = await undo(self.cluster, ids)
            await self.cluster.quota.release(f"repair-{entry['_id']}-{uuid.uuid4().hex}", taken)
            if not entry.get("cleaned"):
                report.rolled_back += len(ids)
            if done:
                await metadata.mark_journal_cleaned(entry["_id"])
            else:
                report.errors.append(f"imports: {entry['_id']} not wholly rolled back yet (a shard did not answer)")

    async def _repair_pending(self, grace_s: float, report: RepairReport) -> None:
        """Pending face documents, which gateways wrote before the import journal."""
        cutoff = utcnow() - timedelta(seconds=grace_s)
        while ids := await self.cluster.metadata.stale_pending(cutoff, REPAIR_PAGE):
            # Never acknowledged, so rolling back is right. Marking first makes a still-running enrollment
            # fail at its activation instead of racing this removal.
            report.rolled_back += await self.cluster.metadata.mark_deleting(ids, (PENDING,))

    async def _repair_deleting(self, report: RepairReport) -> None:
        cluster = self.cluster
        after = 0
        failed: set[int] = set()
        while ids := await cluster.metadata.deleting_ids(REPAIR_PAGE, after_id=after):
            # Faces of a shard that failed stay marked (and invisible) for the next round.
            tried = [i for i in ids if cluster.cells.shard_of(i) not in failed]
            errors = await cluster.on_shards(tried, lambda shard, group: shard.remove(group))
            failed.update(errors)
            report.errors.extend(f"deleting: {error}" for error in errors.values())
            removed = [i for i in tried if cluster.cells.shard_of(i) not in errors]
            report.deleted += await cluster.metadata.delete_deleting(removed)
            after = ids[-1]

    async def _repair_sync(self, report: RepairReport) -> None:
        for doc in await self.cluster.metadata.unsynced(REPAIR_PAGE):
            face_id = doc["_id"]
            await self.cluster.each_shard([face_id], lambda shard, ids: shard.set_galleries(ids, doc["galleries"]))
            await self.cluster.metadata.clear_sync(face_id, doc["sync"], doc["galleries"])
            report.resynced += 1

    async def _repair_galleries(self, report: RepairReport) -> None:
        for name in await self.cluster.metadata.deleting_galleries():
            _, dropped = await self.galleries.finish_delete(name)
            if not dropped:
                raise Unavailable(f"gallery {name!r} not deleted yet")
            report.galleries_dropped += 1

    async def _sweep_orphans(self, report: RepairReport) -> None:
        """Remove shard ids that have no metadata at all, comparing one page of each shard's ids at a time.

        Enrollment writes the metadata before the shard, so an id on a shard without metadata can only be the
        leftover of a rolled back enrollment whose Add landed late; it was never visible.
        """
        guard = self.cluster.availability.guard
        for index, shard in enumerate(self.cluster.shards):
            after = 0
            while ids := await guard(index, shard.list_ids(after, REPAIR_PAGE)):
                known = await self.cluster.metadata.existing_ids(ids)
                orphans = [i for i in ids if i not in known]
                if orphans:
                    await guard(index, shard.remove(orphans))
                    report.orphans_removed += len(orphans)
                    log.info("removed %d orphan ids from %s", len(orphans), shard.name)
                after = ids[-1]
