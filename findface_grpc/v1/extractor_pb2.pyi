from findface_grpc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("image", "min_face_size", "try_rotations", "attributes")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    min_face_size: int
    try_rotations: bool
    attributes: _containers.RepeatedScalarFieldContainer[_common_pb2.Attribute]
    def __init__(self, image: _Optional[bytes] = ..., min_face_size: _Optional[int] = ..., try_rotations: _Optional[bool] = ..., attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, str]]] = ...) -> None: ...

class DetectResponse(_message.Message):
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

class ExtractRequest(_message.Message):
    __slots__ = ("image", "boxes", "mf_selector", "min_face_size", "return_normalized", "return_thumbnail", "thumbnail_size", "request_id", "min_quality", "try_rotations", "attributes")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    MF_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RETURN_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    RETURN_THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    TRY_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.BoundingBox]
    mf_selector: _common_pb2.MultiFaceSelector
    min_face_size: int
    return_normalized: bool
    return_thumbnail: bool
    thumbnail_size: int
    request_id: str
    min_quality: float
    try_rotations: bool
    attributes: _containers.RepeatedScalarFieldContainer[_common_pb2.Attribute]
    def __init__(self, image: _Optional[bytes] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.BoundingBox, _Mapping]]] = ..., mf_selector: _Optional[_Union[_common_pb2.MultiFaceSelector, str]] = ..., min_face_size: _Optional[int] = ..., return_normalized: _Optional[bool] = ..., return_thumbnail: _Optional[bool] = ..., thumbnail_size: _Optional[int] = ..., request_id: _Optional[str] = ..., min_quality: _Optional[float] = ..., try_rotations: _Optional[bool] = ..., attributes: _Optional[_Iterable[_Union[_common_pb2.Attribute, str]]] = ...) -> None: ...

class ExtractResponse(_message.Message):
    __slots__ = ("faces", "image_width", "image_height", "request_id", "error", "skipped")
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.DetectedFace]
    image_width: int
    image_height: int
    request_id: str
    error: _common_pb2.ItemError
    skipped: _containers.RepeatedCompositeFieldContainer[_common_pb2.SkippedFace]
    def __init__(self, faces: _Optional[_Iterable[_Union[_common_pb2.DetectedFace, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., request_id: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ..., skipped: _Optional[_Iterable[_Union[_common_pb2.SkippedFace, _Mapping]]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model_pack", "detector_model_id", "embedder_model_id", "descriptor_dim", "execution_providers", "max_batch", "min_face_size", "max_image_bytes", "max_image_pixels", "version", "detect_min_face_size", "attribute_models")
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_DIM_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETECT_MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_MODELS_FIELD_NUMBER: _ClassVar[int]
    model_pack: str
    detector_model_id: str
    embedder_model_id: str
    descriptor_dim: int
    execution_providers: _containers.RepeatedScalarFieldContainer[str]
    max_batch: int
    min_face_size: int
    max_image_bytes: int
    max_image_pixels: int
    version: str
    detect_min_face_size: int
    attribute_models: _containers.RepeatedCompositeFieldContainer[AttributeModel]
    def __init__(self, model_pack: _Optional[str] = ..., detector_model_id: _Optional[str] = ..., embedder_model_id: _Optional[str] = ..., descriptor_dim: _Optional[int] = ..., execution_providers: _Optional[_Iterable[str]] = ..., max_batch: _Optional[int] = ..., min_face_size: _Optional[int] = ..., max_image_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., version: _Optional[str] = ..., detect_min_face_size: _Optional[int] = ..., attribute_models: _Optional[_Iterable[_Union[AttributeModel, _Mapping]]] = ...) -> None: ...

class AttributeModel(_message.Message):
    __slots__ = ("attribute", "model_id")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    attribute: _common_pb2.Attribute
    model_id: str
    def __init__(self, attribute: _Optional[_Union[_common_pb2.Attribute, str]] = ..., model_id: _Optional[str] = ...) -> None: ...
