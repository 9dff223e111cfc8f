"""What the parts of the gateway's domain share: the clients of the cluster, its descriptor model, and the
routing and checks that more than one verb needs.

No grpc here: the extractor and shards are reached through `clients.py`, metadata through `metadata.py`.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence

import numpy as np

from findface_grpc.errors import FailedPrecondition, InvalidArgument, NotFound
from findface_grpc.gateway.availability import ShardAvailability
from findface_grpc.gateway.cells import CellMap
from findface_grpc.gateway.clients import ExtractorClient, ShardClient
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.domain import (
    DEFAULT_GALLERY,
    Box,
    Descriptor,
    Detection,
    ModelInfo,
    MultiFace,
    check_gallery_name,
)
from findface_grpc.gateway.faults import Faults
from findface_grpc.gateway.limits import echo
from findface_grpc.gateway.metadata import MetadataStore
from findface_grpc.gateway.store import PhotoStore
from findface_grpc.license.quota import NO_QUOTA, FaceQuota

log = logging.getLogger(__name__)

# How many ids one round of clean-up (repair, or the deletion of a gallery's faces) handles at a time.
REPAIR_PAGE = 10000


def _unit(vector: np.ndarray, field_name: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidArgument(f"{field_name}: descriptor vector must be finite and non-zero")
    return vector if abs(norm - 1.0) < 1e-4 else vector / norm


class Cluster:
    def __init__(
        self,
        config: GatewayConfig,
        metadata: MetadataStore,
        extractor: ExtractorClient,
        shards: Sequence[ShardClient],
        cells: CellMap,
        faults: Faults | None = None,
        quota: FaceQuota | None = None,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.extractor = extractor
        self.shards = list(shards)
        self.cells = cells
        self.availability = ShardAvailability(self.shards, config.shard_deadline_s, config.shard_hang_s)
        self.faults = faults or Faults()
        # Face quota at the license server; without one configured, every enrollment is allowed.
        self.quota = quota or NO_QUOTA
        self.store = (
            PhotoStore(config.upload_url, config.upload_user, config.upload_password, config.upload_timeout_s)
            if config.upload_url else None
        )
        # Set by a write that left work to repair, so that the repair loop runs soon rather than at its interval.
        self.repair_wakeup = asyncio.Event()
        self._model: ModelInfo | None = None

    async def close(self) -> None:
        await self.availability.close()
        await self.quota.close()
        await self.extractor.close()
        for shard in self.shards:
            await shard.close()
        self.metadata.close()

    def repair_soon(self) -> None:
        self.repair_wakeup.set()

    # ---- the descriptor model ----

    async def model(self) -> ModelInfo:
        """The embedder model and dimension of this cluster, as the extractor reports them."""
        if self._model is None:
            self._model = await self.extractor.info()
            log.info("cluster descriptors: model %s, %d-d", self._model.model_id, self._model.dim)
        return self._model

    async def refresh_model(self) -> None:
        """Ask the extractor again which model it runs (it may have been restarted with another pack)."""
        try:
            model = await self.extractor.info()
            if self._model is not None and model != self._model:
                log.warning("the extractor now produces %s descriptors (was %s)", model, self._model)
            self._model = model
        except Exception:  # noqa: BLE001 - keep the last known model while the extractor is away
            pass

    def check_descriptor(self, descriptor: Descriptor, model: ModelInfo, field_name: str) -> Descriptor:
        if descriptor.model_id != model.model_id:
            raise InvalidArgument(
                f"{field_name}: descriptor is from model {echo(descriptor.model_id)!r}, "
                f"this cluster indexes {model.model_id!r}"
            )
        if descriptor.dim != model.dim:
            raise InvalidArgument(f"{field_name}: descriptor has dimension {descriptor.dim}, this cluster indexes {model.dim}")
        return Descriptor(descriptor.model_id, _unit(descriptor.vector, field_name))

    async def extract(self, image: bytes, boxes: Sequence[Box], selector: MultiFace, field_name: str,
                      crops: bool = False, min_quality: float = 0.0, try_rotations: bool = False,
                      normalized: bool = False, attributes: Sequence[str] = ()) -> Detection:
        detection = await self.extractor.extract(image, boxes, selector, field_name, crops=crops,
                                                 min_quality=min_quality, try_rotations=try_rotations,
                                                 normalized=normalized, attributes=attributes)
        model = await self.model()
        for face in detection.faces:
            if face.descriptor is None or face.descriptor.model_id != model.model_id:
                # The extractor was restarted with another model pack since this gateway asked.
                self._model = None
                raise FailedPrecondition("the extractor changed its model while this request ran; retry")
        return detection

    # ---- shards ----

    def shard_of(self, face_id: int) -> ShardClient:
        return self.shards[self.cells.shard_of(face_id)]

    async def on_shards(self, ids: Sequence[int],
                        call: Callable[[ShardClient, list[int]], Awaitable]) -> dict[int, BaseException]:
        """`call` on every shard for the ids it owns, all at once; the failures by shard index, after all finish.
        A shard found hung meanwhile fails at once (availability.py), not at the end of its call's timeout."""
        groups = self.cells.group(ids)
        results = await asyncio.gather(
            *(self.availability.guard(s, call(self.shards[s], group)) for s, group in groups.items()),
            return_exceptions=True,
        )
        return {s: result for s, result in zip(groups, results) if isinstance(result, BaseException)}

    async def each_shard(self, ids: Sequence[int], call: Callable[[ShardClient, list[int]], Awaitable]) -> None:
        """`call` on every shard for the ids it owns, all at once; raises the first failure after all finish."""
        for failure in (await self.on_shards(ids, call)).values():
            raise failure

    async def remove_from_shards(self, ids: Sequence[int]) -> None:
        await self.each_shard(ids, lambda shard, group: shard.remove(group))

    def writable(self, excluded: Iterable[int] = ()) -> set[int]:
        """The shards to give new faces to: those with cells, less `excluded`, that take writes now; all of them
        when none seems to (the view may be behind: better a failed try than a refusal on old news)."""
        candidates = set(self.cells.owners) - set(excluded)
        return (candidates & self.availability.answering()) or candidates

    async def new_ids(self, count: int, shards: set[int]) -> list[int]:
        """`count` new face ids, ascending, all in cells of `shards` (not empty, each with cells).

        With every shard, one block from the counter. Otherwise a larger block of which only the ids of those
        shards are kept: the rest stay unused for good, which costs nothing (ids are int64 and never reused) and
        keeps the counter the one source of ids, safe for any number of gateways.
        """
        if shards >= set(self.cells.owners):
            first = await self.metadata.allocate_ids(count)
            return list(range(first, first + count))
        share = sum(owner in shards for owner in self.cells.owners) / self.cells.cells
        ids: list[int] = []
        while len(ids) < count:
            # Consecutive ids spread evenly over the cells (cells.py), so a block this much larger nearly always
            # holds enough; when it does not, another one follows.
            block = math.ceil((count - len(ids)) / share * 1.1) + 8
            first = await self.metadata.allocate_ids(block)
            ids.extend(i for i in range(first, first + block) if self.cells.shard_of(i) in shards)
        return ids[:count]

    # ---- galleries ----

    async def require_galleries(self, names: Iterable[str], field_name: str) -> None:
        names = list(names)
        if not names:
            return
        missing = await self.metadata.missing_galleries(names)
        if missing:
            raise NotFound(f"{field_name}: gallery {missing[0]!r} not found")

    async def gallery(self, name: str, field_name: str = "gallery") -> str:
        """A gallery the request names (the default one if none), checked to exist."""
        name = name or DEFAULT_GALLERY
        check_gallery_name(name, field_name)
        await self.require_galleries([name], field_name)
        return name
