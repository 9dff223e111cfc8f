import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attribute(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTE_UNSPECIFIED: _ClassVar[Attribute]
    ATTRIBUTE_GENDER: _ClassVar[Attribute]
    ATTRIBUTE_AGE: _ClassVar[Attribute]
    ATTRIBUTE_EMOTIONS: _ClassVar[Attribute]

class Gender(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENDER_UNSPECIFIED: _ClassVar[Gender]
    GENDER_FEMALE: _ClassVar[Gender]
    GENDER_MALE: _ClassVar[Gender]

class Emotion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMOTION_UNSPECIFIED: _ClassVar[Emotion]
    EMOTION_NEUTRAL: _ClassVar[Emotion]
    EMOTION_HAPPY: _ClassVar[Emotion]
    EMOTION_SAD: _ClassVar[Emotion]
    EMOTION_ANGRY: _ClassVar[Emotion]
    EMOTION_FEARFUL: _ClassVar[Emotion]
    EMOTION_DISGUSTED: _ClassVar[Emotion]
    EMOTION_SURPRISED: _ClassVar[Emotion]

class SkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SKIP_REASON_UNSPECIFIED: _ClassVar[SkipReason]
    SKIP_REASON_TOO_SMALL: _ClassVar[SkipReason]
    SKIP_REASON_LOW_QUALITY: _ClassVar[SkipReason]

class MultiFaceSelector(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MULTI_FACE_SELECTOR_UNSPECIFIED: _ClassVar[MultiFaceSelector]
    MULTI_FACE_SELECTOR_BIGGEST: _ClassVar[MultiFaceSelector]
    MULTI_FACE_SELECTOR_ALL: _ClassVar[MultiFaceSelector]
    MULTI_FACE_SELECTOR_REJECT: _ClassVar[MultiFaceSelector]
ATTRIBUTE_UNSPECIFIED: Attribute
ATTRIBUTE_GENDER: Attribute
ATTRIBUTE_AGE: Attribute
ATTRIBUTE_EMOTIONS: Attribute
GENDER_UNSPECIFIED: Gender
GENDER_FEMALE: Gender
GENDER_MALE: Gender
EMOTION_UNSPECIFIED: Emotion
EMOTION_NEUTRAL: Emotion
EMOTION_HAPPY: Emotion
EMOTION_SAD: Emotion
EMOTION_ANGRY: Emotion
EMOTION_FEARFUL: Emotion
EMOTION_DISGUSTED: Emotion
EMOTION_SURPRISED: Emotion
SKIP_REASON_UNSPECIFIED: SkipReason
SKIP_REASON_TOO_SMALL: SkipReason
SKIP_REASON_LOW_QUALITY: SkipReason
MULTI_FACE_SELECTOR_UNSPECIFIED: MultiFaceSelector
MULTI_FACE_SELECTOR_BIGGEST: MultiFaceSelector
MULTI_FACE_SELECTOR_ALL: MultiFaceSelector
MULTI_FACE_SELECTOR_REJECT: MultiFaceSelector

class BoundingBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Landmarks(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class Descriptor(_message.Message):
    __slots__ = ("model_id", "dim", "vector")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dim: int
    vector: bytes
    def __init__(self, model_id: _Optional[str] = ..., dim: _Optional[int] = ..., vector: _Optional[bytes] = ...) -> None: ...

class DetectedFace(_message.Message):
    __slots__ = ("bbox", "landmarks", "det_score", "descriptor", "normalized", "thumbnail", "quality", "orientation", "gender", "age", "emotions")
    BBOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DET_SCORE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    EMOTIONS_FIELD_NUMBER: _ClassVar[int]
    bbox: BoundingBox
    landmarks: Landmarks
    det_score: float
    descriptor: Descriptor
    normalized: bytes
    thumbnail: bytes
    quality: float
    orientation: int
    gender: GenderEstimate
    age: AgeEstimate
    emotions: _containers.RepeatedCompositeFieldContainer[EmotionScore]
    def __init__(self, bbox: _Optional[_Union[BoundingBox, _Mapping]] = ..., landmarks: _Optional[_Union[Landmarks, _Mapping]] = ..., det_score: _Optional[float] = ..., descriptor: _Optional[_Union[Descriptor, _Mapping]] = ..., normalized: _Optional[bytes] = ..., thumbnail: _Optional[bytes] = ..., quality: _Optional[float] = ..., orientation: _Optional[int] = ..., gender: _Optional[_Union[GenderEstimate, _Mapping]] = ..., age: _Optional[_Union[AgeEstimate, _Mapping]] = ..., emotions: _Optional[_Iterable[_Union[EmotionScore, _Mapping]]] = ...) -> None: ...

class GenderEstimate(_message.Message):
    __slots__ = ("gender", "score")
    GENDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    gender: Gender
    score: float
    def __init__(self, gender: _Optional[_Union[Gender, str]] = ..., score: _Optional[float] = ...) -> None: ...

class AgeEstimate(_message.Message):
    __slots__ = ("years",)
    YEARS_FIELD_NUMBER: _ClassVar[int]
    years: float
    def __init__(self, years: _Optional[float] = ...) -> None: ...

class EmotionScore(_message.Message):
    __slots__ = ("emotion", "score")
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    emotion: Emotion
    score: float
    def __init__(self, emotion: _Optional[_Union[Emotion, str]] = ..., score: _Optional[float] = ...) -> None: ...

class SkippedFace(_message.Message):
    __slots__ = ("face", "reason", "message")
    FACE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    face: DetectedFace
    reason: SkipReason
    message: str
    def __init__(self, face: _Optional[_Union[DetectedFace, _Mapping]] = ..., reason: _Optional[_Union[SkipReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ImageSource(_message.Message):
    __slots__ = ("content", "url")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    url: str
    def __init__(self, content: _Optional[bytes] = ..., url: _Optional[str] = ...) -> None: ...

class FaceRecord(_message.Message):
    __slots__ = ("id", "galleries", "meta", "bbox", "photo_hash", "created_at", "updated_at", "person_id", "cam_id", "photo", "thumbnail", "normalized", "model_id", "quality", "orientation")
    ID_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    PHOTO_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CAM_ID_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    id: int
    galleries: _containers.RepeatedScalarFieldContainer[str]
    meta: str
    bbox: BoundingBox
    photo_hash: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    person_id: str
    cam_id: str
    photo: str
    thumbnail: str
    normalized: str
    model_id: str
    quality: float
    orientation: int
    def __init__(self, id: _Optional[int] = ..., galleries: _Optional[_Iterable[str]] = ..., meta: _Optional[str] = ..., bbox: _Optional[_Union[BoundingBox, _Mapping]] = ..., photo_hash: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., person_id: _Optional[str] = ..., cam_id: _Optional[str] = ..., photo: _Optional[str] = ..., thumbnail: _Optional[str] = ..., normalized: _Optional[str] = ..., model_id: _Optional[str] = ..., quality: _Optional[float] = ..., orientation: _Optional[int] = ...) -> None: ...

class Gallery(_message.Message):
    __slots__ = ("name", "face_count", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    face_count: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., face_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Threshold(_message.Message):
    __slots__ = ("preset", "value", "original_value")
    class Preset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PRESET_UNSPECIFIED: _ClassVar[Threshold.Preset]
        PRESET_STRICT: _ClassVar[Threshold.Preset]
        PRESET_MEDIUM: _ClassVar[Threshold.Preset]
        PRESET_LOW: _ClassVar[Threshold.Preset]
        PRESET_NONE: _ClassVar[Threshold.Preset]
    PRESET_UNSPECIFIED: Threshold.Preset
    PRESET_STRICT: Threshold.Preset
    PRESET_MEDIUM: Threshold.Preset
    PRESET_LOW: Threshold.Preset
    PRESET_NONE: Threshold.Preset
    PRESET_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    preset: Threshold.Preset
    value: float
    original_value: float
    def __init__(self, preset: _Optional[_Union[Threshold.Preset, str]] = ..., value: _Optional[float] = ..., original_value: _Optional[float] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class FastIndexState(_message.Message):
    __slots__ = ("gallery", "state", "progress", "listed", "delta", "lists", "nprobe", "bytes", "error", "built_at")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[FastIndexState.State]
        BUILDING: _ClassVar[FastIndexState.State]
        READY: _ClassVar[FastIndexState.State]
        FAILED: _ClassVar[FastIndexState.State]
        DROPPED: _ClassVar[FastIndexState.State]
    STATE_UNSPECIFIED: FastIndexState.State
    BUILDING: FastIndexState.State
    READY: FastIndexState.State
    FAILED: FastIndexState.State
    DROPPED: FastIndexState.State
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LISTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    LISTS_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BUILT_AT_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    state: FastIndexState.State
    progress: float
    listed: int
    delta: int
    lists: int
    nprobe: int
    bytes: int
    error: str
    built_at: float
    def __init__(self, gallery: _Optional[str] = ..., state: _Optional[_Union[FastIndexState.State, str]] = ..., progress: _Optional[float] = ..., listed: _Optional[int] = ..., delta: _Optional[int] = ..., lists: _Optional[int] = ..., nprobe: _Optional[int] = ..., bytes: _Optional[int] = ..., error: _Optional[str] = ..., built_at: _Optional[float] = ...) -> None: ...
