import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from findface_grpc.v1 import common_pb2 as _common_pb2
from findface_grpc.v1 import gateway_pb2 as _gateway_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CameraState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMERA_STATE_UNSPECIFIED: _ClassVar[CameraState]
    CAMERA_STATE_RUNNING: _ClassVar[CameraState]
    CAMERA_STATE_NOT_RUNNING: _ClassVar[CameraState]
CAMERA_STATE_UNSPECIFIED: CameraState
CAMERA_STATE_RUNNING: CameraState
CAMERA_STATE_NOT_RUNNING: CameraState

class Region(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("id", "meta", "url", "url_hidden", "detector", "rot", "roi", "created_by", "created_at", "updated_at", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    URL_HIDDEN_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ROT_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: str
    url: str
    url_hidden: bool
    detector: str
    rot: Region
    roi: Region
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    status: CameraStatus
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[str] = ..., url: _Optional[str] = ..., url_hidden: _Optional[bool] = ..., detector: _Optional[str] = ..., rot: _Optional[_Union[Region, _Mapping]] = ..., roi: _Optional[_Union[Region, _Mapping]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[CameraStatus, _Mapping]] = ...) -> None: ...

class CameraStatus(_message.Message):
    __slots__ = ("state", "reason", "detector", "reported_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    state: CameraState
    reason: str
    detector: str
    reported_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[CameraState, str]] = ..., reason: _Optional[str] = ..., detector: _Optional[str] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CameraStatusReport(_message.Message):
    __slots__ = ("camera_id", "state", "reason")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    state: CameraState
    reason: str
    def __init__(self, camera_id: _Optional[str] = ..., state: _Optional[_Union[CameraState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportCameraStatusRequest(_message.Message):
    __slots__ = ("detector", "cameras")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    detector: str
    cameras: _containers.RepeatedCompositeFieldContainer[CameraStatusReport]
    def __init__(self, detector: _Optional[str] = ..., cameras: _Optional[_Iterable[_Union[CameraStatusReport, _Mapping]]] = ...) -> None: ...

class ReportCameraStatusResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class CreateCameraRequest(_message.Message):
    __slots__ = ("meta", "url", "detector", "rot", "roi")
    META_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ROT_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    meta: str
    url: str
    detector: str
    rot: Region
    roi: Region
    def __init__(self, meta: _Optional[str] = ..., url: _Optional[str] = ..., detector: _Optional[str] = ..., rot: _Optional[_Union[Region, _Mapping]] = ..., roi: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class ListCamerasRequest(_message.Message):
    __slots__ = ("detector", "after_id", "limit")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    detector: str
    after_id: str
    limit: int
    def __init__(self, detector: _Optional[str] = ..., after_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListCamerasResponse(_message.Message):
    __slots__ = ("cameras", "next_after_id")
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    next_after_id: str
    def __init__(self, cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., next_after_id: _Optional[str] = ...) -> None: ...

class GetCameraRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpdateCameraRequest(_message.Message):
    __slots__ = ("id", "meta", "url", "detector", "rot", "roi")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ROT_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: str
    url: str
    detector: str
    rot: Region
    roi: Region
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[str] = ..., url: _Optional[str] = ..., detector: _Optional[str] = ..., rot: _Optional[_Union[Region, _Mapping]] = ..., roi: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class DeleteCameraRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteCameraResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Person(_message.Message):
    __slots__ = ("id", "meta", "face_count", "face")
    ID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    meta: str
    face_count: int
    face: _common_pb2.FaceRecord
    def __init__(self, id: _Optional[str] = ..., meta: _Optional[str] = ..., face_count: _Optional[int] = ..., face: _Optional[_Union[_common_pb2.FaceRecord, _Mapping]] = ...) -> None: ...

class ListPersonsRequest(_message.Message):
    __slots__ = ("after_id", "limit")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_id: str
    limit: int
    def __init__(self, after_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListPersonsResponse(_message.Message):
    __slots__ = ("persons", "next_after_id")
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    next_after_id: str
    def __init__(self, persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., next_after_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "camera_id", "frame_time", "track_id", "bbox", "thumbnail", "match", "person_id", "face_id", "galleries", "created_at", "missed")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    id: int
    camera_id: str
    frame_time: _timestamp_pb2.Timestamp
    track_id: str
    bbox: _common_pb2.BoundingBox
    thumbnail: bytes
    match: _gateway_pb2.Match
    person_id: str
    face_id: int
    galleries: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    missed: int
    def __init__(self, id: _Optional[int] = ..., camera_id: _Optional[str] = ..., frame_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., track_id: _Optional[str] = ..., bbox: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., thumbnail: _Optional[bytes] = ..., match: _Optional[_Union[_gateway_pb2.Match, _Mapping]] = ..., person_id: _Optional[str] = ..., face_id: _Optional[int] = ..., galleries: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., missed: _Optional[int] = ...) -> None: ...

class SearchHistoryRequest(_message.Message):
    __slots__ = ("person_id", "camera_ids", "start", "end", "max_id", "limit", "without_thumbnails")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    max_id: int
    limit: int
    without_thumbnails: bool
    def __init__(self, person_id: _Optional[str] = ..., camera_ids: _Optional[_Iterable[str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_id: _Optional[int] = ..., limit: _Optional[int] = ..., without_thumbnails: _Optional[bool] = ...) -> None: ...

class SearchHistoryResponse(_message.Message):
    __slots__ = ("events", "next_max_id", "prev_max_id", "has_prev")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_MAX_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_MAX_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_PREV_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_max_id: int
    prev_max_id: int
    has_prev: bool
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_max_id: _Optional[int] = ..., prev_max_id: _Optional[int] = ..., has_prev: _Optional[bool] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("camera_ids", "galleries", "after_id")
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    galleries: _containers.RepeatedScalarFieldContainer[str]
    after_id: int
    def __init__(self, camera_ids: _Optional[_Iterable[str]] = ..., galleries: _Optional[_Iterable[str]] = ..., after_id: _Optional[int] = ...) -> None: ...
