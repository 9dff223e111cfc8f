"""The cluster status: how every shard and the extractor are doing, the faces the shards hold, and the
metadata's gallery count. Face counts come from the shards (their Stats), never from counting the metadata's
documents: that reads every face on some MongoDB-protocol servers (30 s at a million on SecantusDB)."""
from __future__ import annotations

import asyncio

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
