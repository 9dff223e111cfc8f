"""The gateway's domain values: frozen dataclasses, no protobuf, no grpc."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import numpy as np

from findface_grpc.errors import InvalidArgument
from findface_grpc.extractor.models.base import Attributes
from findface_grpc.gateway.limits import echo

Box = tuple[float, float, float, float]
DEFAULT_GALLERY = "default"
GALLERY_NAME = re.compile(r"[a-zA-Z0-9_-]{1,48}")


def check_gallery_name(name: str, field_name: str) -> str:
    if not GALLERY_NAME.fullmatch(name):
        raise InvalidArgument(f"{field_name}: gallery name {echo(name)!r} must match [a-zA-Z0-9_-]{{1,48}}")
    return name


def with_default_gallery(names: Iterable[str]) -> tuple[str, ...]:
    """The default gallery first, then the others in the order given, each once."""
    return tuple(dict.fromkeys([DEFAULT_GALLERY, *names]))


class MultiFace(Enum):
    BIGGEST = "biggest"
    ALL = "all"
    REJECT = "reject"


class SkipReason(Enum):
    """Why the extractor left a face it found out of a call (common.proto SkipReason)."""

    UNSPECIFIED = "unspecified"  # a reason this gateway does not know yet (a newer extractor)
    TOO_SMALL = "too_small"
    LOW_QUALITY = "low_quality"


@dataclass(frozen=True)
class Descriptor:
    model_id: str
    vector: np.ndarray = field(compare=False)  # float32, unit length

    @property
    def dim(self) -> int:
        return int(self.vector.shape[-1])


@dataclass(frozen=True)
class DetectedFace:
    bbox: Box
    landmarks: tuple[tuple[float, float], ...]
    det_score: float
    descriptor: Descriptor | None = None
    # Filled only when asked for (enrollment with a photo store): the aligned crop (PNG) and a thumbnail (JPEG).
    normalized: bytes = field(default=b"", compare=False, repr=False)
    thumbnail: bytes = field(default=b"", compare=False, repr=False)
    quality: float = 0.0  # fitness for recognition in [0, 1]
    orientation: int = 0  # EXIF orientation of the face (1, 3, 6, 8); 0 from extractors older than the field
    attributes: Attributes | None = field(default=None, compare=False)  # gender, age, emotions: only when asked


@dataclass(frozen=True)
class SkippedFace:
    """A face found in a photo but not used (not embedded, so no descriptor), and why."""

    face: DetectedFace
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class Detection:
    width: int
    height: int
    faces: tuple[DetectedFace, ...]
    orientation: int = 1  # of the best face (Detect only); 1 when there is none
    skipped: tuple[SkippedFace, ...] = ()  # Extract only


@dataclass(frozen=True)
class ModelInfo:
    """What the cluster's extractor produces; every descriptor the cluster indexes must match it."""

    model_id: str
    dim: int


@dataclass(frozen=True)
class Face:
    """An enrolled face as clients see it (metadata; its descriptor lives in one shard)."""

    id: int
    galleries: tuple[str, ...]
    meta: str
    bbox: Box
    photo_hash: str
    created_at: datetime
    updated_at: datetime
    person_id: str = ""
    cam_id: str = ""
    photo: str = ""
    thumbnail: str = ""
    normalized: str = ""
    model_id: str = ""
    quality: float = 0.0  # as detected at enrollment; 0 for imported faces and those enrolled before quality
    orientation: int = 0  # likewise


@dataclass(frozen=True)
class NewFace:
    """What enrollment knows about a face before it has an id."""

    descriptor: Descriptor
    galleries: tuple[str, ...]
    meta: str = ""
    bbox: Box = (0.0, 0.0, 0.0, 0.0)
    photo_hash: str = ""
    person_id: str = ""
    cam_id: str = ""
    photo: str = ""  # the URL the photo was fetched from, if it was
    quality: float = 0.0  # unknown (0) for imported descriptors
    orientation: int = 0


@dataclass(frozen=True)
class Enrollment:
    """What CreateFace did with a photo: the faces enrolled, and those found but left out."""

    faces: tuple[Face, ...]
    skipped: tuple[SkippedFace, ...] = ()


@dataclass(frozen=True)
class Match:
    face: Face
    confidence: float
    confidence_original: float  # the same on the original product's scale (scoring.to_original)


@dataclass(frozen=True)
class FaceMatches:
    query: DetectedFace | None  # None for a descriptor query
    matches: tuple[Match, ...]


@dataclass(frozen=True)
class IdentifyResult:
    results: tuple[FaceMatches, ...]
    shards_answered: int
    shards_total: int
    skipped: tuple[SkippedFace, ...] = ()

    @property
    def partial(self) -> bool:
        return self.shards_answered < self.shards_total


@dataclass(frozen=True)
class VerifyPair:
    bbox1: Box
    bbox2: Box
    confidence: float
    verified: bool
    confidence_original: float  # the same on the original product's scale (scoring.to_original)


@dataclass(frozen=True)
class VerifyResult:
    pairs: tuple[VerifyPair, ...]
    skipped1: tuple[SkippedFace, ...] = ()
    skipped2: tuple[SkippedFace, ...] = ()

    @property
    def verified(self) -> bool:
        return any(p.verified for p in self.pairs)


@dataclass(frozen=True)
class Gallery:
    name: str
    face_count: int
    created_at: datetime | None


@dataclass(frozen=True)
class GalleryList:
    """ListGalleries's answer: each gallery's face_count is what the shards that answered hold in it."""

    galleries: tuple[Gallery, ...]
    shards_answered: int
    shards_total: int
    counted: bool = True  # False: names only, no shard asked

    @property
    def partial(self) -> bool:
        return self.counted and self.shards_answered < self.shards_total


@dataclass(frozen=True)
class MetaCount:
    meta: str
    count: int
    face: Face


@dataclass(frozen=True)
class FacePage:
    faces: tuple[Face, ...]
    next_max_id: int  # 0 on the last page
    # The page before (newer faces): has_prev False on the first page; else prev_max_id is the max_id that gives
    # it, 0 when that page is the first one.
    prev_max_id: int = 0
    has_prev: bool = False


@dataclass(frozen=True)
class GalleryChange:
    """UpdateFace's gallery edit: either `replace` with `add` as the new set, or add then remove."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    replace: bool = False

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.replace)


@dataclass(frozen=True)
class FastIndexInfo:
    """A gallery's fast index on one shard (common.proto FastIndexState)."""

    gallery: str
    state: str  # BUILDING, READY, FAILED or DROPPED
    progress: float = 0.0
    listed: int = 0
    delta: int = 0
    lists: int = 0
    nprobe: int = 0
    nbytes: int = 0
    error: str = ""
    built_at: float = 0.0


@dataclass(frozen=True)
class ShardStats:
    """What a shard server reports about itself (its Stats)."""

    shard_id: str
    face_count: int
    gallery_counts: dict[str, int]
    model_id: str
    dim: int
    index_bytes: int
    rss_bytes: int
    fast_indexes: tuple[FastIndexInfo, ...] = ()


@dataclass(frozen=True)
class ShardStatus:
    index: int
    address: str
    stats: ShardStats | None  # None when the shard did not answer
    error: str = ""  # why it did not

    @property
    def live(self) -> bool:
        return self.stats is not None


@dataclass(frozen=True)
class ExtractorInfo:
    """What the extractor reports about itself (its Info)."""

    model_pack: str
    detector_model_id: str
    embedder_model_id: str
    descriptor_dim: int
    execution_providers: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class ExtractorStatus:
    address: str
    info: ExtractorInfo | None  # None when the extractor did not answer
    error: str = ""

    @property
    def live(self) -> bool:
        return self.info is not None


@dataclass(frozen=True)
class ClusterStatus:
    shards: tuple[ShardStatus, ...]
    extractor: ExtractorStatus
    face_count: int  # faces the live shards hold
    gallery_count: int  # active galleries in the metadata

    @property
    def shards_live(self) -> int:
        return sum(s.live for s in self.shards)
