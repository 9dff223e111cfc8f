"""History retention on a real MongoDB-protocol server (SecantusDB): events recorded longer ago than
history_retention_days are deleted, the others kept; 0 keeps everything."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from findface_grpc.gateway.history import History, HistoryQuery, HistoryStore, Sighting, new_event
from findface_grpc.gateway.metadata import MetadataStore, utcnow


def test_old_events_are_pruned(mongo):
    async def scenario():
        metadata = MetadataStore(mongo, "retention")
        try:
            store = HistoryStore(metadata)
            await store.ensure_schema()
            now = utcnow()
            fresh = new_event(Sighting("cam", now), (0, 0, 10, 10), b"\xff\xd8", None, "p1", ["default"])
            old = replace(fresh, created_at=now - timedelta(days=31), person_id="p0")
            await History(store).record([old, fresh])
            assert await History(store, 0).prune() == 0
            assert await History(store, 30).prune() == 1
            left = await History(store).search(HistoryQuery(camera_ids=("cam",)), 0, 10)
            return [e.person_id for e in left.events]
        finally:
            metadata.close()

    assert asyncio.run(scenario()) == ["p1"]
