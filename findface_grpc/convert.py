"""Conversions between protobuf messages and domain values shared by several services."""
from __future__ import annotations

import numpy as np

from findface_grpc.errors import InvalidArgument
from findface_grpc.extractor.models.base import Attributes
from findface_grpc.v1 import common_pb2

Box = tuple[float, float, float, float]


def box_to_pb(box: Box) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def box_from_pb(msg: common_pb2.BoundingBox) -> Box:
    return (msg.x1, msg.y1, msg.x2, msg.y2)


def landmarks_to_pb(points) -> common_pb2.Landmarks:
    return common_pb2.Landmarks(points=[common_pb2.Point(x=x, y=y) for x, y in points])


def descriptor_to_pb(vector: np.ndarray, model_id: str) -> common_pb2.Descriptor:
    vector = np.ascontiguousarray(vector, dtype="<f4")
    return common_pb2.Descriptor(model_id=model_id, dim=vector.shape[-1], vector=vector.tobytes())


def descriptor_from_pb(msg: common_pb2.Descriptor, model_id: str | None = None, dim: int | None = None) -> np.ndarray:
    """The float32 vector of a Descriptor, checked against the expected model and dimension when given."""
    if model_id is not None and msg.model_id != model_id:
        raise InvalidArgument(f"descriptor is from model {msg.model_id!r}, this cluster indexes {model_id!r}")
    if dim is not None and msg.dim != dim:
        raise InvalidArgument(f"descriptor has dimension {msg.dim}, this cluster indexes {dim}")
    if len(msg.vector) != 4 * msg.dim or msg.dim == 0:
        raise InvalidArgument(f"descriptor vector has {len(msg.vector)} bytes, expected 4*dim = {4 * msg.dim}")
    return np.frombuffer(msg.vector, dtype="<f4")


ATTRIBUTES = {
    common_pb2.ATTRIBUTE_GENDER: "gender",
    common_pb2.ATTRIBUTE_AGE: "age",
    common_pb2.ATTRIBUTE_EMOTIONS: "emotions",
}
ATTRIBUTES_PB = {name: value for value, name in ATTRIBUTES.items()}
GENDERS = {"female": common_pb2.GENDER_FEMALE, "male": common_pb2.GENDER_MALE}
EMOTIONS = {
    "neutral": common_pb2.EMOTION_NEUTRAL,
    "happy": common_pb2.EMOTION_HAPPY,
    "sad": common_pb2.EMOTION_SAD,
    "angry": common_pb2.EMOTION_ANGRY,
    "fearful": common_pb2.EMOTION_FEARFUL,
    "disgusted": common_pb2.EMOTION_DISGUSTED,
    "surprised": common_pb2.EMOTION_SURPRISED,
}
_GENDER_NAMES = {v: k for k, v in GENDERS.items()}
_EMOTION_NAMES = {v: k for k, v in EMOTIONS.items()}


def attribute_names_from_pb(values) -> frozenset[str]:
    try:
        return frozenset(ATTRIBUTES[v] for v in values)
    except KeyError:
        raise InvalidArgument(f"attributes: unknown attribute in {list(values)}") from None


def set_attributes_pb(msg: common_pb2.DetectedFace, attributes: Attributes | None) -> None:
    """Fill a DetectedFace's gender, age and emotions from what was estimated (nothing for None)."""
    if attributes is None:
        return
    if attributes.gender is not None:
        msg.gender.gender = GENDERS[attributes.gender]
        msg.gender.score = attributes.gender_score
    if attributes.age is not None:
        msg.age.years = attributes.age
    msg.emotions.extend(common_pb2.EmotionScore(emotion=EMOTIONS[n], score=p) for n, p in attributes.emotions)


def attributes_from_pb(msg: common_pb2.DetectedFace) -> Attributes | None:
    """What a DetectedFace carries of the attributes; None when it carries none. A class added after this build
    is passed on as "unknown"."""
    if not (msg.HasField("gender") or msg.HasField("age") or msg.emotions):
        return None
    return Attributes(
        gender=_GENDER_NAMES.get(msg.gender.gender) if msg.HasField("gender") else None,
        gender_score=msg.gender.score,
        age=msg.age.years if msg.HasField("age") else None,
        emotions=tuple((_EMOTION_NAMES.get(e.emotion, "unknown"), e.score) for e in msg.emotions),
    )
