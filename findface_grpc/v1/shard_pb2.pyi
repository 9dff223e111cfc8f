from findface_grpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShardFace(_message.Message):
    __slots__ = ("id", "galleries", "descriptor")
    ID_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    id: int
    galleries: _containers.RepeatedScalarFieldContainer[str]
    descriptor: _common_pb2.Descriptor
    def __init__(self, id: _Optional[int] = ..., galleries: _Optional[_Iterable[str]] = ..., descriptor: _Optional[_Union[_common_pb2.Descriptor, _Mapping]] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("faces",)
    FACES_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[ShardFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[ShardFace, _Mapping]]] = ...) -> None: ...

class AddResponse(_message.Message):
    __slots__ = ("added", "replaced")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    added: int
    replaced: int
    def __init__(self, added: _Optional[int] = ..., replaced: _Optional[int] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("ids", "include_descriptors")
    IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    include_descriptors: bool
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., include_descriptors: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("faces",)
    FACES_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[ShardFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[ShardFace, _Mapping]]] = ...) -> None: ...

class UpdateGalleriesRequest(_message.Message):
    __slots__ = ("ids", "add", "remove", "replace")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    add: _containers.RepeatedScalarFieldContainer[str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    replace: bool
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., add: _Optional[_Iterable[str]] = ..., remove: _Optional[_Iterable[str]] = ..., replace: _Optional[bool] = ...) -> None: ...

class UpdateGalleriesResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("queries", "gallery", "k", "threshold", "full_scan")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FULL_SCAN_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Descriptor]
    gallery: str
    k: int
    threshold: float
    full_scan: bool
    def __init__(self, queries: _Optional[_Iterable[_Union[_common_pb2.Descriptor, _Mapping]]] = ..., gallery: _Optional[str] = ..., k: _Optional[int] = ..., threshold: _Optional[float] = ..., full_scan: _Optional[bool] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("face_id", "score")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    score: float
    def __init__(self, face_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class HitList(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HitList]
    def __init__(self, results: _Optional[_Iterable[_Union[HitList, _Mapping]]] = ...) -> None: ...

class ListIdsRequest(_message.Message):
    __slots__ = ("after_id", "limit")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    def __init__(self, after_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListIdsResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("shard_id", "face_count", "gallery_counts", "model_id", "dim", "index_bytes", "rss_bytes", "tarantool_arena_bytes", "fast_indexes")
    class GalleryCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    GALLERY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TARANTOOL_ARENA_BYTES_FIELD_NUMBER: _ClassVar[int]
    FAST_INDEXES_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    face_count: int
    gallery_counts: _containers.ScalarMap[str, int]
    model_id: str
    dim: int
    index_bytes: int
    rss_bytes: int
    tarantool_arena_bytes: int
    fast_indexes: _containers.RepeatedCompositeFieldContainer[_common_pb2.FastIndexState]
    def __init__(self, shard_id: _Optional[str] = ..., face_count: _Optional[int] = ..., gallery_counts: _Optional[_Mapping[str, int]] = ..., model_id: _Optional[str] = ..., dim: _Optional[int] = ..., index_bytes: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., tarantool_arena_bytes: _Optional[int] = ..., fast_indexes: _Optional[_Iterable[_Union[_common_pb2.FastIndexState, _Mapping]]] = ...) -> None: ...

class BuildIndexRequest(_message.Message):
    __slots__ = ("gallery", "nprobe")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    nprobe: int
    def __init__(self, gallery: _Optional[str] = ..., nprobe: _Optional[int] = ...) -> None: ...

class DropIndexRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...
