"""The gateway's domain, as the servicer and server use it: one part per group of verbs over the shared `Cluster`
(search.py, enrollment.py, faces.py, galleries.py, status.py), and repair.py in the background.

Write order (so that a crash at any point leaves nothing visible half done, and repair can tell what to do):
- Enroll: allocate ids -> journal entry "pending" naming the ids -> reserve quota -> shard.Add -> insert the face
  documents as "active" (one bulk insert) -> remove the journal entry -> reply. Only active faces are shown
  anywhere. Repair completes a journal entry older than `pending_grace_s` whose faces all have documents, and
  rolls back any other (shard.Remove, then drop the documents); enrollment.py says why that is safe. Faces whose
  shard fails the Add are added again under fresh ids on the shards that answer (availability.py), the journal
  entry naming those first; their old ids get "deleting" documents for repair to finish.
- Delete: set "deleting" -> shard.Remove -> drop the document. Once marked, the face is invisible and the
  delete is acknowledged; repair finishes it if a step fails.
- Gallery change: update metadata with a `sync` token -> shard.UpdateGalleries -> clear the token. Until it
  is cleared, searches check gallery membership against the metadata; repair re-pushes.
- Shard ids with no metadata document at all are orphans (a late Add after a rollback); the orphan sweep
  removes them. Hits from a shard whose id has no active document are dropped when joining metadata.
"""
from __future__ import annotations

import asyncio
import logging

from findface_grpc.errors import Unavailable
from findface_grpc.gateway import layout, status
from findface_grpc.gateway.cameras import Cameras, CameraStore
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.domain import ClusterStatus
from findface_grpc.gateway.enrollment import Enroller
from findface_grpc.gateway.events import EventHub
from findface_grpc.gateway.faces import Faces
from findface_grpc.gateway.galleries import Galleries
from findface_grpc.gateway.history import History, HistoryStore
from findface_grpc.gateway.persons import Persons, PersonStore
from findface_grpc.gateway.photos import PhotoFetcher
from findface_grpc.gateway.repair import Repairer
from findface_grpc.gateway.search import Searcher
from findface_grpc.gateway.sightings import Sightings

log = logging.getLogger(__name__)


class GatewayService:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        config = cluster.config
        self.photos = PhotoFetcher(
            int(config.max_image_mb * 1_000_000), config.url_fetch_timeout_s, config.allow_private_urls,
            config.url_allow_networks, own_origins=[config.upload_url] if config.upload_url else [],
        )
        self.search = Searcher(self.cluster)
        self.enrollment = Enroller(self.cluster)
        self.faces = Faces(self.cluster)
        self.galleries = Galleries(self.cluster)
        self.repairer = Repairer(self.cluster, self.galleries)
        # VideoService (video_servicer.py) and the faces cameras post (sightings.py).
        self.cameras = Cameras(CameraStore(cluster.metadata), config.admin_tokens)
        self.history = History(HistoryStore(cluster.metadata), config.history_retention_days)
        self.events = EventHub(config.watch_queue_size)
        self.persons = Persons(config, self.search, PersonStore(cluster.metadata))
        self.sightings = Sightings(self.cameras, self.search, self.enrollment, self.persons, self.history,
                                   self.events)

    async def start(self, run_repair_loop: bool = True) -> None:
        """Prepare the metadata store and start repairing in the background, its first round at once.

        The first round does not hold up serving: until it has run, what a crash left is invisible anyway
        (only active faces are shown, and hits are joined against them).
        """
        cluster = self.cluster
        await cluster.metadata.ensure_schema()
        shards = [layout.ConfiguredShard(s.address, s.stats.shard_id if s.stats else None)
                  for s in await status.shard_statuses(cluster)]
        await asyncio.to_thread(layout.check, cluster.metadata.db["cluster"], cluster.cells, shards)
        await self.cameras.store.ensure_schema()
        await self.history.store.ensure_schema()
        try:
            await cluster.model()
        except Unavailable as exc:
            log.warning("extractor not reachable yet (%s); will ask again when needed", exc.message)
        if run_repair_loop:
            self.repairer.start()
            self.history.start()
        cluster.quota.start(lambda: status.faces_holding_quota(cluster))

    async def stop(self) -> None:
        await self.repairer.stop()
        await self.history.stop()
        await self.cluster.close()

    async def cluster_status(self) -> ClusterStatus:
        return await status.cluster_status(self.cluster)
