"""gRPC clients of the extractor and the shards: all of the gateway's outgoing I/O to them.

Each call converts between protobuf and the gateway's domain values and turns a failed call into one of the
project's errors, so that the domain (service.py and its parts) never sees grpc.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from findface_grpc import rpc
from findface_grpc.observability import interceptors as observed
from findface_grpc.convert import ATTRIBUTES_PB, attributes_from_pb, box_from_pb, box_to_pb, descriptor_to_pb
from findface_grpc.errors import (
    FailedPrecondition,
    FindFaceError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TooManyFaces,
    Unavailable,
)
from findface_grpc.gateway.coalesce import DEFAULT_SEARCHES_AT_ONCE, SearchCoalescer
from findface_grpc.gateway.domain import (
    Box,
    Descriptor,
    DetectedFace,
    Detection,
    ExtractorInfo,
    FastIndexInfo,
    ModelInfo,
    MultiFace,
    ShardStats,
    SkippedFace,
    SkipReason,
)
from findface_grpc.gateway.merge import Hit
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc, shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)

SELECTORS = {
    MultiFace.BIGGEST: common_pb2.MULTI_FACE_SELECTOR_BIGGEST,
    MultiFace.ALL: common_pb2.MULTI_FACE_SELECTOR_ALL,
    MultiFace.REJECT: common_pb2.MULTI_FACE_SELECTOR_REJECT,
}
SKIP_REASONS = {
    common_pb2.SKIP_REASON_TOO_SMALL: SkipReason.TOO_SMALL,
    common_pb2.SKIP_REASON_LOW_QUALITY: SkipReason.LOW_QUALITY,
}
# Failures that say "this server is not there or not keeping up" rather than "your request is wrong".
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN,
}


def descriptor_from_pb(msg: common_pb2.Descriptor) -> Descriptor:
    return Descriptor(model_id=msg.model_id, vector=np.frombuffer(msg.vector, dtype="<f4"))


def detected_from_pb(msg: common_pb2.DetectedFace) -> DetectedFace:
    return DetectedFace(
        bbox=box_from_pb(msg.bbox),
        landmarks=tuple((p.x, p.y) for p in msg.landmarks.points),
        det_score=msg.det_score,
        descriptor=descriptor_from_pb(msg.descriptor) if msg.HasField("descriptor") else None,
        normalized=msg.normalized,
        thumbnail=msg.thumbnail,
        quality=msg.quality,
        orientation=msg.orientation,
        attributes=attributes_from_pb(msg),
    )


def skipped_from_pb(msg: common_pb2.SkippedFace) -> SkippedFace:
    # A reason added to the extractor after this gateway was built still reaches the client, as unspecified,
    # with the extractor's message saying what it is.
    return SkippedFace(detected_from_pb(msg.face), SKIP_REASONS.get(msg.reason, SkipReason.UNSPECIFIED), msg.message)


class ExtractorClient:
    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.channel = rpc.channel(address, "extractor")
        self.stub = extractor_pb2_grpc.ExtractorStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    def _error(self, exc: grpc.aio.AioRpcError, field: str) -> FindFaceError:
        code, message = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            # The photo, a box or the faces in it cannot be used (undecodable, no face in a box, a face too small
            # or under min_quality): the caller's to fix, so the extractor's words go back unchanged, after the field.
            return InvalidArgument(f"{field}: {message}")
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            details = rpc.error_details(exc)
            if "faces" not in details:  # an attribute this extractor has no model for, or its license lacks
                return FailedPrecondition(message, details=details)
            return TooManyFaces(f"{field}: {message}", details=details)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"extractor busy: {message}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # The extractor is up but this call outlasted the gateway's wait: "unavailable" would send the
            # operator looking for a dead server.
            return Unavailable(f"extractor {self.address} gave no answer within {self.timeout_s:g} s "
                               "(extractor_timeout_s): it is overloaded, or the photo asks for too much work")
        if code in TRANSIENT:
            return Unavailable(f"extractor {self.address} unavailable: {code.name}: {message}")
        return FindFaceError(f"extractor {self.address} failed: {code.name}: {message}")

    async def info(self) -> ModelInfo:
        try:
            reply = await self.stub.Info(extractor_pb2.InfoRequest(), timeout=min(self.timeout_s, 10.0))
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, "extractor") from None
        return ModelInfo(model_id=reply.embedder_model_id, dim=reply.descriptor_dim)

    async def describe(self, timeout: float) -> ExtractorInfo:
        """Everything Info tells, for the cluster status."""
        try:
            reply = await self.stub.Info(extractor_pb2.InfoRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, "extractor") from None
        return ExtractorInfo(
            model_pack=reply.model_pack,
            detector_model_id=reply.detector_model_id,
            embedder_model_id=reply.embedder_model_id,
            descriptor_dim=reply.descriptor_dim,
            execution_providers=tuple(reply.execution_providers),
            version=reply.version,
        )

    async def detect(
        self, image: bytes, field: str = "image", try_rotations: bool = False, attributes: Sequence[str] = ()
    ) -> Detection:
        request = extractor_pb2.DetectRequest(
            image=image, try_rotations=try_rotations, attributes=[ATTRIBUTES_PB[a] for a in sorted(attributes)]
        )
        try:
            reply = await self.stub.Detect(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, field) from None
        # 0 only comes from an extractor older than the field, which never looked for turned faces: upright.
        return Detection(reply.image_width, reply.image_height, tuple(detected_from_pb(f) for f in reply.faces),
                         orientation=reply.orientation or 1)

    async def extract(
        self, image: bytes, boxes: Sequence[Box] = (), selector: MultiFace = MultiFace.BIGGEST, field: str = "image",
        crops: bool = False, min_quality: float = 0.0, try_rotations: bool = False, normalized: bool = False,
        attributes: Sequence[str] = (),
    ) -> Detection:
        """`crops`: also the normalized crop and a thumbnail of each face (for the photo store); `normalized`: the
        crop only."""
        request = extractor_pb2.ExtractRequest(
            image=image, boxes=[box_to_pb(b) for b in boxes], mf_selector=SELECTORS[selector],
            return_normalized=crops or normalized, return_thumbnail=crops, min_quality=min_quality,
            try_rotations=try_rotations, attributes=[ATTRIBUTES_PB[a] for a in sorted(attributes)],
        )
        try:
            reply = await self.stub.Extract(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, field) from None
        return Detection(reply.image_width, reply.image_height, tuple(detected_from_pb(f) for f in reply.faces),
                         skipped=tuple(skipped_from_pb(s) for s in reply.skipped))


class ShardClient:
    """One shard server. Calls on its channel are bounded: grpc.aio cancels some beyond ~1000 in flight."""

    def __init__(self, index: int, address: str, timeout_s: float, max_in_flight: int,
                 searches_at_once: int = DEFAULT_SEARCHES_AT_ONCE) -> None:
        self.index = index
        self.address = address
        self.name = f"shard {index} ({address})"
        self.timeout_s = timeout_s
        self.peer = f"shard-{index}"
        self.channel = rpc.plain_channel(address)
        self.stub = shard_pb2_grpc.ShardStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._searches = SearchCoalescer(self._search_call, searches_at_once, self.peer)

    async def close(self) -> None:
        await self.channel.close()

    def _error(self, exc: grpc.aio.AioRpcError) -> FindFaceError:
        code, message = exc.code(), exc.details() or ""
        text = f"{self.name}: {code.name}: {message}"
        if code in TRANSIENT:
            return Unavailable(text)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(text)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(text)
        # The gateway checks what it sends; a shard refusing it means the two disagree about the cluster (for
        # example the shard holds another model's descriptors), which the caller cannot fix by retrying.
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return FailedPrecondition(text)
        return FindFaceError(text)

    async def _call(self, method: str, request, timeout: float | None = None):
        """The shard's `method` called with `request`, counted and timed per peer and method (the metrics of
        rpc.channel's interceptor, which searches go without)."""
        async with self._slots:
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                reply = await getattr(self.stub, method)(request, timeout=timeout or self.timeout_s,
                                                         metadata=observed.outgoing())
                code = "OK"
                return reply
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                raise self._error(exc) from None
            except asyncio.CancelledError:  # the caller gave up waiting (the fan-out's deadline)
                code = "CANCELLED"
                raise
            finally:
                observed.client_call_ended(self.peer, method, code, started)

    async def alive(self, timeout: float) -> None:
        """Returns once the shard's server answers a health check, whatever the status it reports; Unavailable if
        it gives no answer within `timeout`. Its event loop answers, so a shard busy with big writes (which run in
        its threads, one Tarantool call at a time) still does at once; a stopped one does not. Not counted against
        the calls in flight: it must get through while they wait."""
        try:
            await self.health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise self._error(exc) from None

    async def add(self, faces: Sequence[tuple[int, Sequence[str], Descriptor]]) -> None:
        request = shard_pb2.AddRequest(
            faces=[
                shard_pb2.ShardFace(id=face_id, galleries=list(galleries), descriptor=descriptor_to_pb(d.vector, d.model_id))
                for face_id, galleries, d in faces
            ]
        )
        await self._call("Add", request)

    async def remove(self, ids: Sequence[int]) -> int:
        reply = await self._call("Remove", shard_pb2.RemoveRequest(ids=list(ids)))
        return reply.removed

    async def descriptors(self, ids: Sequence[int]) -> dict[int, Descriptor]:
        reply = await self._call("Get", shard_pb2.GetRequest(ids=list(ids), include_descriptors=True))
        return {f.id: descriptor_from_pb(f.descriptor) for f in reply.faces if f.HasField("descriptor")}

    async def set_galleries(self, ids: Sequence[int], galleries: Sequence[str]) -> int:
        request = shard_pb2.UpdateGalleriesRequest(ids=list(ids), add=list(galleries), replace=True)
        reply = await self._call("UpdateGalleries", request)
        return reply.updated

    async def search(
        self, queries: Sequence[Descriptor], gallery: str, k: int, threshold: float, timeout: float,
        full_scan: bool = False,
    ) -> list[list[Hit]]:
        """Each query's hits; under load, with other searches in one call (coalesce.py)."""
        return await self._searches.search(queries, gallery, k, threshold, timeout, full_scan)

    async def _search_call(
        self, queries: Sequence[Descriptor], gallery: str, k: int, threshold: float, timeout: float,
        full_scan: bool,
    ) -> list[list[Hit]]:
        request = shard_pb2.SearchRequest(
            queries=[descriptor_to_pb(q.vector, q.model_id) for q in queries], gallery=gallery, k=k, threshold=threshold,
            full_scan=full_scan,
        )
        reply = await self._call("Search", request, timeout)
        return [[Hit(h.face_id, h.score) for h in hits.hits] for hits in reply.results]

    async def stats(self, timeout: float) -> ShardStats:
        reply = await self._call("Stats", shard_pb2.StatsRequest(), timeout)
        return ShardStats(
            shard_id=reply.shard_id,
            face_count=reply.face_count,
            gallery_counts=dict(reply.gallery_counts),
            model_id=reply.model_id,
            dim=reply.dim,
            index_bytes=reply.index_bytes,
            rss_bytes=reply.rss_bytes,
            fast_indexes=tuple(fast_index_from_pb(state) for state in reply.fast_indexes),
        )

    async def build_fast_index(self, gallery: str, nprobe: int, timeout: float) -> FastIndexInfo:
        request = shard_pb2.BuildIndexRequest(gallery=gallery, nprobe=nprobe)
        return fast_index_from_pb(await self._call("BuildIndex", request, timeout))

    async def drop_fast_index(self, gallery: str, timeout: float) -> FastIndexInfo:
        request = shard_pb2.DropIndexRequest(gallery=gallery)
        return fast_index_from_pb(await self._call("DropIndex", request, timeout))

    async def list_ids(self, after_id: int, limit: int) -> list[int]:
        reply = await self._call("ListIds", shard_pb2.ListIdsRequest(after_id=after_id, limit=limit))
        return list(reply.ids)


def fast_index_from_pb(state: common_pb2.FastIndexState) -> FastIndexInfo:
    return FastIndexInfo(
        state.gallery, common_pb2.FastIndexState.State.Name(state.state), state.progress, state.listed, state.delta,
        state.lists, state.nprobe, state.bytes, state.error, state.built_at,
    )
