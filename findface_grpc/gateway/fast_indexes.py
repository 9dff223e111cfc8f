"""The operator's fast-index commands, sent to every shard: each builds or drops its own part of the gallery's
index (findface_grpc/shard/fast_index.py). A shard that cannot is reported with the reason; the others go on."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from findface_grpc.errors import FindFaceError, NotFound
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.domain import DEFAULT_GALLERY, FastIndexInfo, check_gallery_name

# Answering is quick (a build runs in the background); this bounds waiting for a shard that is away.
COMMAND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ShardFastIndex:
    index: int
    address: str
    state: FastIndexInfo | None
    error: str = ""


async def build(cluster: Cluster, gallery: str, nprobe: int) -> list[ShardFastIndex]:
    gallery = await _existing(cluster, gallery)
    return await _on_every_shard(cluster, lambda shard: shard.build_fast_index(gallery, nprobe, COMMAND_TIMEOUT_S))


async def drop(cluster: Cluster, gallery: str) -> list[ShardFastIndex]:
    gallery = await _existing(cluster, gallery)
    return await _on_every_shard(cluster, lambda shard: shard.drop_fast_index(gallery, COMMAND_TIMEOUT_S))


async def _existing(cluster: Cluster, gallery: str) -> str:
    gallery = gallery or DEFAULT_GALLERY
    check_gallery_name(gallery, "gallery")
    if await cluster.metadata.missing_galleries([gallery]):
        raise NotFound(f"gallery: gallery {gallery!r} not found")
    return gallery


async def _on_every_shard(cluster: Cluster, command) -> list[ShardFastIndex]:
    async def one(shard) -> ShardFastIndex:
        try:
            return ShardFastIndex(shard.index, shard.address, await command(shard))
        except FindFaceError as exc:
            return ShardFastIndex(shard.index, shard.address, None, exc.message)

    return list(await asyncio.gather(*(one(shard) for shard in cluster.shards)))
