"""The cluster status: how every shard and the extractor are doing, the faces the shards hold (also what the
license's face quota is reconciled with), and the metadata's gallery count. Face counts come from the shards (their Stats), never from counting the metadata's
documents: that reads every face on some MongoDB-protocol servers (30 s at a million on SecantusDB)."""
from __future__ import annotations

import asyncio

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.clients import ShardClient
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.domain import ClusterStatus, ExtractorStatus, ShardStatus

# How long the cluster status waits for each shard and the extractor: a status page must answer promptly, and a
# part that takes longer than this to say how it is doing is not healthy anyway.
STATUS_TIMEOUT_S = 3.0


def _reason(exc: BaseException, name: str) -> str:
    """Why a part of the cluster did not answer, in words (for the cluster status)."""
    if isinstance(exc, TimeoutError):
        return f"{name}: no answer within {STATUS_TIMEOUT_S:g} s"
    return getattr(exc, "message", None) or f"{name}: {type(exc).__name__}: {exc}"


async def shard_statuses(cluster: Cluster) -> tuple[ShardStatus, ...]:
    """Every shard's stats, asked all at once, each bounded by STATUS_TIMEOUT_S, in shard order; a shard that
    does not answer is reported as not live, with the reason."""

    async def shard_status(shard: ShardClient) -> ShardStatus:
        try:
            stats = await asyncio.wait_for(shard.stats(STATUS_TIMEOUT_S), STATUS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - whatever the failure, it is this shard's status
            return ShardStatus(shard.index, shard.address, None, _reason(exc, shard.name))
        return ShardStatus(shard.index, shard.address, stats)

    return tuple(await asyncio.gather(*(shard_status(s) for s in cluster.shards)))


async def cluster_status(cluster: Cluster) -> ClusterStatus:
    """Every shard's stats and the extractor's info, asked all at once, each bounded by STATUS_TIMEOUT_S; the
    faces the live shards hold; the metadata's gallery count. A part that does not answer is reported as not live
    with the reason (and its faces left out of the count); only the metadata database failing fails the call."""

    async def extractor_status() -> ExtractorStatus:
        address = cluster.extractor.address
        try:
            info = await asyncio.wait_for(cluster.extractor.describe(STATUS_TIMEOUT_S), STATUS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - whatever the failure, it is the extractor's status
            return ExtractorStatus(address, None, _reason(exc, f"extractor {address}"))
        return ExtractorStatus(address, info)

    shards, extractor, gallery_count = await asyncio.gather(
        shard_statuses(cluster), extractor_status(), cluster.metadata.gallery_count()
    )
    face_count = sum(s.stats.face_count for s in shards if s.stats is not None)
    return ClusterStatus(shards, extractor, face_count, gallery_count)


async def faces_holding_quota(cluster: Cluster) -> int:
    """The faces that hold license quota, for reconciling it (license.quota.FaceQuota): those being enrolled (the
    metadata's journal) and every face the shards hold, from their Stats.

    In this order, so that a count racing enrollments is too high for a moment, never too low: an enrollment's
    journal entry goes only after its faces are on their shards, so each of its faces is under way when the
    entries are read or on its shard when the shards are asked. Too high until later rounds: faces on a shard whose
    enrollment is still under way (counted twice), and faces being deleted or rolled back until they leave their
    shard. A shard that does not answer cannot be counted: then this raises and nothing is sent, and the license
    server's count stands (reservations and releases keep it) until every shard answers."""
    under_way = await cluster.metadata.faces_under_way()
    shards = await shard_statuses(cluster)
    down = [s.error for s in shards if s.stats is None]
    if down:
        raise Unavailable(f"faces not counted until every shard answers: {'; '.join(down)}")
    return under_way + sum(s.stats.face_count for s in shards if s.stats is not None)
