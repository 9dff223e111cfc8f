"""Shard gRPC servicer: validates requests and converts protobuf <-> domain values, nothing else."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from findface_grpc.convert import descriptor_from_pb, descriptor_to_pb
from findface_grpc.errors import InvalidArgument
from findface_grpc.shard.fast_index import FastState
from findface_grpc.shard.service import NewFace, ShardService
from findface_grpc.shard.store import Model
from findface_grpc.v1 import common_pb2, shard_pb2, shard_pb2_grpc

GALLERY_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,48}$")
MAX_ADD = 10_000
MAX_IDS = 100_000  # Remove, Get, UpdateGalleries, ListIds
MAX_QUERIES = 1024
MAX_K = 10_000
MAX_NPROBE = 16384


def check_gallery(name: str) -> str:
    if not GALLERY_NAME.match(name):
        raise InvalidArgument(f"gallery name {name!r} must match [a-zA-Z0-9_-]{{1,48}}")
    return name


def check_galleries(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(check_gallery(n) for n in names)


def check_ids(ids: Sequence[int], what: str = "ids") -> list[int]:
    if len(ids) > MAX_IDS:
        raise InvalidArgument(f"{len(ids)} {what} in one call; at most {MAX_IDS}")
    for face_id in ids:
        if face_id == 0:
            raise InvalidArgument("face ids must be > 0")
    return list(ids)


def check_count(count: int, low: int, high: int, what: str) -> None:
    if not low <= count <= high:
        raise InvalidArgument(f"{what} must be in {low}..{high}, got {count}")


def model_of(descriptor: common_pb2.Descriptor) -> Model:
    return Model(descriptor.model_id, descriptor.dim)


class ShardServicer(shard_pb2_grpc.ShardServicer):
    def __init__(self, service: ShardService) -> None:
        self.service = service

    async def Add(self, request, context):
        check_count(len(request.faces), 1, MAX_ADD, "faces per Add")
        faces = []
        for face in request.faces:
            if face.id == 0:
                raise InvalidArgument("face ids must be > 0")
            if not face.HasField("descriptor"):
                raise InvalidArgument(f"face {face.id} has no descriptor")
            try:
                vector = descriptor_from_pb(face.descriptor)
            except InvalidArgument as exc:
                raise InvalidArgument(f"face {face.id}: {exc.message}") from None
            faces.append(NewFace(face.id, check_galleries(face.galleries), model_of(face.descriptor), vector))
        added, replaced = await self.service.add(faces)
        return shard_pb2.AddResponse(added=added, replaced=replaced)

    async def Remove(self, request, context):
        removed = await self.service.remove(check_ids(request.ids))
        return shard_pb2.RemoveResponse(removed=removed)

    async def Get(self, request, context):
        faces = await self.service.get(check_ids(request.ids), request.include_descriptors)
        model_id = self.service.model.model_id
        reply = shard_pb2.GetResponse()
        for face in faces:
            msg = reply.faces.add(id=face.face_id, galleries=face.galleries)
            if face.vector is not None:
                msg.descriptor.CopyFrom(descriptor_to_pb(face.vector, model_id))
        return reply

    async def UpdateGalleries(self, request, context):
        updated = await self.service.update_galleries(
            check_ids(request.ids),
            check_galleries(request.add),
            () if request.replace else check_galleries(request.remove),
            request.replace,
        )
        return shard_pb2.UpdateGalleriesResponse(updated=updated)

    async def Search(self, request, context):
        check_count(len(request.queries), 1, MAX_QUERIES, "queries per Search")
        check_count(request.k, 1, MAX_K, "k")
        if not (math.isfinite(request.threshold) and -1 <= request.threshold <= 1):
            raise InvalidArgument(f"threshold must be in [-1, 1], got {request.threshold}")
        gallery = check_gallery(request.gallery)
        vectors = []
        for i, query in enumerate(request.queries):
            try:
                vectors.append(descriptor_from_pb(query))
            except InvalidArgument as exc:
                raise InvalidArgument(f"query {i}: {exc.message}") from None
        if len({v.shape for v in vectors}) != 1:
            raise InvalidArgument("all queries of one Search must have the same dimension")
        results = await self.service.search(
            np.stack(vectors), [model_of(q) for q in request.queries], gallery, request.k, request.threshold,
            request.full_scan,
        )
        return shard_pb2.SearchResponse(
            results=[
                shard_pb2.HitList(hits=[shard_pb2.Hit(face_id=h.face_id, score=h.score) for h in hits])
                for hits in results
            ]
        )

    async def ListIds(self, request, context):
        check_count(request.limit, 1, MAX_IDS, "limit")
        ids = await self.service.list_ids(request.after_id, request.limit)
        return shard_pb2.ListIdsResponse(ids=ids)

    async def Stats(self, request, context):
        stats = await self.service.stats()
        return shard_pb2.StatsResponse(
            shard_id=stats.shard_id,
            face_count=stats.face_count,
            gallery_counts=stats.gallery_counts,
            model_id=stats.model.model_id,
            dim=stats.model.dim,
            index_bytes=stats.index_bytes,
            rss_bytes=stats.rss_bytes,
            tarantool_arena_bytes=stats.tarantool_arena_bytes,
            fast_indexes=[fast_state_pb(state) for state in stats.fast_indexes],
        )

    async def BuildIndex(self, request, context):
        check_count(request.nprobe, 0, MAX_NPROBE, "nprobe")
        return fast_state_pb(self.service.build_fast_index(check_gallery(request.gallery), request.nprobe))

    async def DropIndex(self, request, context):
        return fast_state_pb(self.service.drop_fast_index(check_gallery(request.gallery)))


def fast_state_pb(state: FastState) -> common_pb2.FastIndexState:
    return common_pb2.FastIndexState(
        gallery=state.gallery, state=common_pb2.FastIndexState.State.Value(state.state), progress=state.progress,
        listed=state.listed, delta=state.delta, lists=state.lists, nprobe=state.nprobe, bytes=state.nbytes,
        error=state.error, built_at=state.built_at,
    )
