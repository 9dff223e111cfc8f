from findface_grpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaceDetectRequest(_message.Message):
    __slots__ = ("image", "try_rotations", "attributes")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageSource
    try_rotations: bool
    attributes: _containers.RepeatedScalarFieldContainer[_common_pb2.Attribute]
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., try_rotations: _Optional[bool] = ..., attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, str]]] = ...) -> None: ...

class FaceDetectResponse(_message.Message):
    __slots__ = ("faces", "image_width", "image_height", "orientation")
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.DetectedFace]
    image_width: int
    image_height: int
    orientation: int
    def __init__(self, faces: _Optional[_Iterable[_Union[_common_pb2.DetectedFace, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., orientation: _Optional[int] = ...) -> None: ...

class FaceExtractRequest(_message.Message):
    __slots__ = ("image", "bboxes", "mf_selector", "return_normalized", "attributes", "try_rotations")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BBOXES_FIELD_NUMBER: _ClassVar[int]
    MF_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    RETURN_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageSource
    bboxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    mf_selector: _common_pb2.MultiFaceSelector
    return_normalized: bool
    attributes: _containers.RepeatedScalarFieldContainer[_common_pb2.Attribute]
    try_rotations: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., bboxes: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ..., mf_selector: _Optional[_Union[_common_pb2.MultiFaceSelector, str]] = ..., return_normalized: _Optional[bool] = ..., attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, str]]] = ..., try_rotations: _Optional[bool] = ...) -> None: ...

class FaceExtractResponse(_message.Message):
    __slots__ = ("faces", "image_width", "image_height", "skipped")
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.DetectedFace]
    image_width: int
    image_height: int
    skipped: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[_common_pb2.DetectedFace, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., skipped: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("image1", "bbox1", "image2", "face_id", "bbox2", "threshold", "mf_selector", "try_rotations", "bboxes1", "bboxes2")
    IMAGE1_FIELD_NUMBER: _ClassVar[int]
    BBOX1_FIELD_NUMBER: _ClassVar[int]
    IMAGE2_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    BBOX2_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MF_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    BBOXES1_FIELD_NUMBER: _ClassVar[int]
    BBOXES2_FIELD_NUMBER: _ClassVar[int]
    image1: _common_pb2.ImageSource
    bbox1: _common_pb2.BoundingBox
    image2: _common_pb2.ImageSource
    face_id: int
    bbox2: _common_pb2.BoundingBox
    threshold: _common_pb2.Threshold
    mf_selector: _common_pb2.MultiFaceSelector
    try_rotations: bool
    bboxes1: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    bboxes2: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    def __init__(self, image1: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., bbox1: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., image2: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., face_id: _Optional[int] = ..., bbox2: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., threshold: _Optional[_Union[_common_pb2.Threshold, _Mapping]] = ..., mf_selector: _Optional[_Union[_common_pb2.MultiFaceSelector, str]] = ..., try_rotations: _Optional[bool] = ..., bboxes1: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ..., bboxes2: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ...) -> None: ...

class VerifyPair(_message.Message):
    __slots__ = ("bbox1", "bbox2", "confidence", "verified", "confidence_original")
    BBOX1_FIELD_NUMBER: _ClassVar[int]
    BBOX2_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    bbox1: _common_pb2.BoundingBox
    bbox2: _common_pb2.BoundingBox
    confidence: float
    verified: bool
    confidence_original: float
    def __init__(self, bbox1: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., bbox2: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., confidence: _Optional[float] = ..., verified: _Optional[bool] = ..., confidence_original: _Optional[float] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("results", "verified", "skipped1", "skipped2")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED1_FIELD_NUMBER: _ClassVar[int]
    SKIPPED2_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VerifyPair]
    verified: bool
    skipped1: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    skipped2: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    def __init__(self, results: _Optional[_Iterable[_Union[VerifyPair, _Mapping]]] = ..., verified: _Optional[bool] = ..., skipped1: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ..., skipped2: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("image", "descriptor", "bboxes", "gallery", "n", "threshold", "mf_selector", "try_rotations", "sighting", "full_scan")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    BBOXES_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MF_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    SIGHTING_FIELD_NUMBER: _ClassVar[int]
    FULL_SCAN_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageSource
    descriptor: _common_pb2.Descriptor
    bboxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    gallery: str
    n: int
    threshold: _common_pb2.Threshold
    mf_selector: _common_pb2.MultiFaceSelector
    try_rotations: bool
    sighting: Sighting
    full_scan: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., descriptor: _Optional[_Union[_common_pb2.Descriptor, _Mapping]] = ..., bboxes: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ..., gallery: _Optional[str] = ..., n: _Optional[int] = ..., threshold: _Optional[_Union[_common_pb2.Threshold, _Mapping]] = ..., mf_selector: _Optional[_Union[_common_pb2.MultiFaceSelector, str]] = ..., try_rotations: _Optional[bool] = ..., sighting: _Optional[_Union[Sighting, _Mapping]] = ..., full_scan: _Optional[bool] = ...) -> None: ...

class Sighting(_message.Message):
    __slots__ = ("camera_id", "frame_time", "track_id")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    frame_time: float
    track_id: str
    def __init__(self, camera_id: _Optional[str] = ..., frame_time: _Optional[float] = ..., track_id: _Optional[str] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("face", "confidence", "confidence_original")
    FACE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    face: _common_pb2.FaceRecord
    confidence: float
    confidence_original: float
    def __init__(self, face: _Optional[_Union[_common_pb2.FaceRecord, _Mapping]] = ..., confidence: _Optional[float] = ..., confidence_original: _Optional[float] = ...) -> None: ...

class FaceMatches(_message.Message):
    __slots__ = ("query", "matches")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.DetectedFace
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    def __init__(self, query: _Optional[_Union[_common_pb2.DetectedFace, _Mapping]] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("results", "shards_answered", "shards_total", "partial", "skipped")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    SHARDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FaceMatches]
    shards_answered: int
    shards_total: int
    partial: bool
    skipped: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    def __init__(self, results: _Optional[_Iterable[_Union[FaceMatches, _Mapping]]] = ..., shards_answered: _Optional[int] = ..., shards_total: _Optional[int] = ..., partial: _Optional[bool] = ..., skipped: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ...) -> None: ...

class CreateFaceRequest(_message.Message):
    __slots__ = ("image", "bboxes", "meta", "galleries", "mf_selector", "person_id", "cam_id", "min_quality", "try_rotations", "sighting")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BBOXES_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    MF_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CAM_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    SIGHTING_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageSource
    bboxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    meta: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    mf_selector: _common_pb2.MultiFaceSelector
    person_id: str
    cam_id: str
    min_quality: float
    try_rotations: bool
    sighting: Sighting
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageSource, _Mapping]] = ..., bboxes: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ..., meta: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ..., mf_selector: _Optional[_Union[_common_pb2.MultiFaceSelector, str]] = ..., person_id: _Optional[str] = ..., cam_id: _Optional[str] = ..., min_quality: _Optional[float] = ..., try_rotations: _Optional[bool] = ..., sighting: _Optional[_Union[Sighting, _Mapping]] = ...) -> None: ...

class CreateFaceResponse(_message.Message):
    __slots__ = ("faces", "skipped")
    FACES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRecord]
    skipped: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[_common_pb2.FaceRecord, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ...) -> None: ...

class ImportFace(_message.Message):
    __slots__ = ("descriptor", "meta", "galleries", "bbox", "photo_hash", "person_id", "cam_id")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    PHOTO_HASH_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CAM_ID_FIELD_NUMBER: _ClassVar[int]
    descriptor: _common_pb2.Descriptor
    meta: str
    galleries: _containers.RepeatedScalarFieldContainer[str]
    bbox: _common_pb2.BoundingBox
    photo_hash: str
    person_id: str
    cam_id: str
    def __init__(self, descriptor: _Optional[_Union[_common_pb2.Descriptor, _Mapping]] = ..., meta: _Optional[str] = ..., galleries: _Optional[_Iterable[str]] = ..., bbox: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., photo_hash: _Optional[str] = ..., person_id: _Optional[str] = ..., cam_id: _Optional[str] = ...) -> None: ...

class ImportFacesRequest(_message.Message):
    __slots__ = ("faces",)
    FACES_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[ImportFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[ImportFace, _Mapping]]] = ...) -> None: ...

class ImportFacesResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetFaceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class UpdateFaceRequest(_message.Message):
    __slots__ = ("id", "meta", "galleries_add", "galleries_remove", "set_galleries", "galleries_set", "person_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_ADD_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_REMOVE_FIELD_NUMBER: _ClassVar[int]
    SET_GALLERIES_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_SET_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    meta: str
    galleries_add: _containers.RepeatedScalarFieldContainer[str]
    galleries_remove: _containers.RepeatedScalarFieldContainer[str]
    set_galleries: bool
    galleries_set: _containers.RepeatedScalarFieldContainer[str]
    person_id: str
    def __init__(self, id: _Optional[int] = ..., meta: _Optional[str] = ..., galleries_add: _Optional[_Iterable[str]] = ..., galleries_remove: _Optional[_Iterable[str]] = ..., set_galleries: _Optional[bool] = ..., galleries_set: _Optional[_Iterable[str]] = ..., person_id: _Optional[str] = ...) -> None: ...

class DeleteFaceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DeleteFaceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFacesRequest(_message.Message):
    __slots__ = ("gallery", "max_id", "limit", "meta")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    max_id: int
    limit: int
    meta: str
    def __init__(self, gallery: _Optional[str] = ..., max_id: _Optional[int] = ..., limit: _Optional[int] = ..., meta: _Optional[str] = ...) -> None: ...

class ListFacesResponse(_message.Message):
    __slots__ = ("faces", "next_max_id", "prev_max_id", "has_prev")
    FACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_MAX_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_MAX_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_PREV_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.FaceRecord]
    next_max_id: int
    prev_max_id: int
    has_prev: bool
    def __init__(self, faces: _Optional[_Iterable[_Union[_common_pb2.FaceRecord, _Mapping]]] = ..., next_max_id: _Optional[int] = ..., prev_max_id: _Optional[int] = ..., has_prev: _Optional[bool] = ...) -> None: ...

class ListMetaRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class MetaCount(_message.Message):
    __slots__ = ("meta", "count", "face")
    META_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    meta: str
    count: int
    face: _common_pb2.FaceRecord
    def __init__(self, meta: _Optional[str] = ..., count: _Optional[int] = ..., face: _Optional[_Union[_common_pb2.FaceRecord, _Mapping]] = ...) -> None: ...

class ListMetaResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MetaCount]
    def __init__(self, results: _Optional[_Iterable[_Union[MetaCount, _Mapping]]] = ...) -> None: ...

class CreateGalleryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteGalleryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteGalleryResponse(_message.Message):
    __slots__ = ("deleted_faces",)
    DELETED_FACES_FIELD_NUMBER: _ClassVar[int]
    deleted_faces: int
    def __init__(self, deleted_faces: _Optional[int] = ...) -> None: ...

class ListGalleriesRequest(_message.Message):
    __slots__ = ("names_only",)
    NAMES_ONLY_FIELD_NUMBER: _ClassVar[int]
    names_only: bool
    def __init__(self, names_only: _Optional[bool] = ...) -> None: ...

class ListGalleriesResponse(_message.Message):
    __slots__ = ("galleries", "shards_answered", "shards_total", "partial")
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    SHARDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Gallery]
    shards_answered: int
    shards_total: int
    partial: bool
    def __init__(self, galleries: _Optional[_Iterable[_Union[_common_pb2.Gallery, _Mapping]]] = ..., shards_answered: _Optional[int] = ..., shards_total: _Optional[int] = ..., partial: _Optional[bool] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("index", "address", "live", "error", "shard_id", "face_count", "gallery_counts", "model_id", "dim", "index_bytes", "rss_bytes", "fast_indexes")
    class GalleryCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    GALLERY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    FAST_INDEXES_FIELD_NUMBER: _ClassVar[int]
    index: int
    address: str
    live: bool
    error: str
    shard_id: str
    face_count: int
    gallery_counts: _containers.ScalarMap[str, int]
    model_id: str
    dim: int
    index_bytes: int
    rss_bytes: int
    fast_indexes: _containers.RepeatedCompositeFieldContainer[_common_pb2.FastIndexState]
    def __init__(self, index: _Optional[int] = ..., address: _Optional[str] = ..., live: _Optional[bool] = ..., error: _Optional[str] = ..., shard_id: _Optional[str] = ..., face_count: _Optional[int] = ..., gallery_counts: _Optional[_Mapping[str, int]] = ..., model_id: _Optional[str] = ..., dim: _Optional[int] = ..., index_bytes: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., fast_indexes: _Optional[_Iterable[_Union[_common_pb2.FastIndexState, _Mapping]]] = ...) -> None: ...

class ExtractorStatus(_message.Message):
    __slots__ = ("address", "live", "error", "model_pack", "detector_model_id", "embedder_model_id", "descriptor_dim", "execution_providers", "version")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_DIM_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    address: str
    live: bool
    error: str
    model_pack: str
    detector_model_id: str
    embedder_model_id: str
    descriptor_dim: int
    execution_providers: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, address: _Optional[str] = ..., live: _Optional[bool] = ..., error: _Optional[str] = ..., model_pack: _Optional[str] = ..., detector_model_id: _Optional[str] = ..., embedder_model_id: _Optional[str] = ..., descriptor_dim: _Optional[int] = ..., execution_providers: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ...) -> None: ...

class ClusterStatusResponse(_message.Message):
    __slots__ = ("shards", "shards_live", "shards_total", "extractor", "face_count", "gallery_count")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_LIVE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXTRACTOR_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    GALLERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    shards_live: int
    shards_total: int
    extractor: ExtractorStatus
    face_count: int
    gallery_count: int
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., shards_live: _Optional[int] = ..., shards_total: _Optional[int] = ..., extractor: _Optional[_Union[ExtractorStatus, _Mapping]] = ..., face_count: _Optional[int] = ..., gallery_count: _Optional[int] = ...) -> None: ...

class FastIndexRequest(_message.Message):
    __slots__ = ("gallery", "nprobe")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    nprobe: int
    def __init__(self, gallery: _Optional[str] = ..., nprobe: _Optional[int] = ...) -> None: ...

class ShardFastIndex(_message.Message):
    __slots__ = ("index", "address", "error", "state")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    index: int
    address: str
    error: str
    state: _common_pb2.FastIndexState
    def __init__(self, index: _Optional[int] = ..., address: _Optional[str] = ..., error: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.FastIndexState, _Mapping]] = ...) -> None: ...

class FastIndexResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardFastIndex]
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardFastIndex, _Mapping]]] = ...) -> None: ...
