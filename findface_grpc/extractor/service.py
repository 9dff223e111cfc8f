"""The extractor's domain service: runs the pipeline in a thread pool, and the embedder and attribute models
through their batchers."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from findface_grpc.extractor import imaging
from findface_grpc.extractor.attributes import AttributeEstimator
from findface_grpc.extractor.batching import EmbedBatcher
from findface_grpc.extractor.models.attributes import Attributes, AttributeNets
from findface_grpc.extractor.models.base import Detection, Embedder
from findface_grpc.extractor.pipeline import Box, Found, MultiFace, Pipeline, Skipped, rescale
from findface_grpc.observability import metrics


@dataclass(frozen=True)
class ModelInfo:
    pack: str
    detector_id: str
    embedder_id: str
    dim: int
    providers: tuple[str, ...]
    attribute_models: tuple[tuple[str, str], ...] = ()  # (attribute, model id) of each attribute model it runs


@dataclass(frozen=True)
class ExtractedFace:
    detection: Detection
    descriptor: np.ndarray  # float32, L2-normalised
    quality: float
    normalized_png: bytes = b""
    thumbnail_jpeg: bytes = b""
    attributes: Attributes | None = None  # only when asked


@dataclass(frozen=True)
class Extraction:
    width: int
    height: int
    faces: tuple[ExtractedFace, ...]
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class Detected:
    """What Detect answers: the pipeline's faces, each with the attributes asked of it (None when none were)."""

    found: Found
    attributes: tuple[Attributes | None, ...]


class ExtractorService:
    def __init__(
        self,
        pipeline: Pipeline,
        embedder: Embedder,
        info: ModelInfo,
        workers: int,
        embed_workers: int = 1,
        attribute_nets: AttributeNets | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.info = info
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="extract")
        self.batcher = EmbedBatcher(embedder, self.executor, embedder.max_batch, embed_workers)
        self.attributes = AttributeEstimator(attribute_nets or AttributeNets(), self.executor, embedder.max_batch)

    async def start(self) -> None:
        self.batcher.start()
        self.attributes.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        await self.attributes.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _detected(self, fn, *args):
        """`fn` (the pipeline's decode, detect and align of one photo) in the pool, timed as the detector's."""
        started = time.perf_counter()
        try:
            return await self._in_pool(fn, *args)
        finally:
            metrics.MODEL_SECONDS.labels("detector").observe(time.perf_counter() - started)

    async def detect(
        self, data: bytes, min_face_size: int = 0, try_rotations: bool = False, attributes: Collection[str] = ()
    ) -> Detected:
        self.attributes.check(attributes)
        with metrics.EXTRACTOR_IN_PROGRESS.track_inprogress():
            found = await self._detected(
                self.pipeline.detect_photo, data, min_face_size, try_rotations, self.attributes.chip_sizes(attributes)
            )
            detected = Detected(found, tuple(await self.attributes.estimate(found.faces, attributes)))
        metrics.EXTRACTOR_PHOTOS.labels("detect").inc()
        metrics.EXTRACTOR_FACES.labels("detect").inc(len(found.faces))
        return detected

    async def extract(
        self,
        data: bytes,
        boxes: list[Box] | None = None,
        selector: MultiFace = MultiFace.BIGGEST,
        min_face_size: int = 0,
        want_normalized: bool = False,
        thumbnail_size: int = 0,
        min_quality: float = 0.0,
        try_rotations: bool = False,
        attributes: Collection[str] = (),
    ) -> Extraction:
        self.attributes.check(attributes)
        with metrics.EXTRACTOR_IN_PROGRESS.track_inprogress():
            extraction = await self._extract(data, boxes, selector, min_face_size, want_normalized, thumbnail_size,
                                             min_quality, try_rotations, attributes)
        metrics.EXTRACTOR_PHOTOS.labels("extract").inc()
        metrics.EXTRACTOR_FACES.labels("extract").inc(len(extraction.faces))
        return extraction

    async def _extract(self, data: bytes, boxes: list[Box] | None, selector: MultiFace, min_face_size: int,
                       want_normalized: bool, thumbnail_size: int, min_quality: float, try_rotations: bool,
                       attributes: Collection[str]) -> Extraction:
        prepared = await self._detected(
            self.pipeline.prepare, data, boxes, selector, min_face_size, min_quality, try_rotations,
            self.attributes.chip_sizes(attributes),
        )
        crops = np.stack([f.crop for f in prepared.faces]) if prepared.faces else np.zeros((0, 112, 112, 3), np.uint8)
        # The attribute models run beside the embedder, each in its own batch, so that asking costs little time.
        vectors, estimated = await asyncio.gather(
            self.batcher.embed(crops), self.attributes.estimate(prepared.faces, attributes)
        )
        extras: list[tuple[bytes, bytes]] = [(b"", b"")] * len(prepared.faces)
        if prepared.faces and (want_normalized or thumbnail_size):

            def encode():
                return [
                    (
                        imaging.encode_png(f.crop) if want_normalized else b"",
                        imaging.thumbnail(prepared.image, rescale(f.detection, prepared.scale).bbox, thumbnail_size)
                        if thumbnail_size
                        else b"",
                    )
                    for f in prepared.faces
                ]

            extras = await self._in_pool(encode)
        width, height = prepared.width, prepared.height
        faces = tuple(
            ExtractedFace(f.detection, vectors[i], f.quality, extras[i][0], extras[i][1], estimated[i])
            for i, f in enumerate(prepared.faces)
        )
        return Extraction(width, height, faces, prepared.skipped)
