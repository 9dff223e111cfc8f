"""v1's gender, age and emotions flags, and the attribute objects of the legacy answers.

The original's documents name the emotions neutral, happy, sad, angry, surprise, fear and disgust; the model's
classes (face-api's expression net) are the same seven under other names, so fearful, disgusted and surprised are
answered as fear, disgust and surprise. Its facenapi clients (the Go client's fixtures) show a face with
`"gender": "female"`, `"age": 36` and `"emotions": ["neutral", "happy"]`: the emotions listed are those of a
probability of at least LISTED_EMOTION, most likely first, and always at least the most likely one.
"""
from __future__ import annotations

from collections.abc import Sequence

from findface_grpc.v1 import common_pb2
from gateway_http.calls import ATTRIBUTE_FLAGS, Call

FLAGS = {
    "gender": common_pb2.ATTRIBUTE_GENDER,
    "age": common_pb2.ATTRIBUTE_AGE,
    "emotions": common_pb2.ATTRIBUTE_EMOTIONS,
}
EMOTION_NAMES = {
    common_pb2.EMOTION_NEUTRAL: "neutral",
    common_pb2.EMOTION_HAPPY: "happy",
    common_pb2.EMOTION_SAD: "sad",
    common_pb2.EMOTION_ANGRY: "angry",
    common_pb2.EMOTION_FEARFUL: "fear",
    common_pb2.EMOTION_DISGUSTED: "disgust",
    common_pb2.EMOTION_SURPRISED: "surprise",
}
GENDER_NAMES = {common_pb2.GENDER_FEMALE: "female", common_pb2.GENDER_MALE: "male"}
LISTED_EMOTION = 0.1


def asked(call: Call) -> list[int]:
    """The attributes a v1 call's flags ask for (v0 never had the flags and ignores them, as the original)."""
    if call.version == "v0":
        return []
    return [FLAGS[name] for name in ATTRIBUTE_FLAGS if call.params.flag(name)]


def emotion_name(value: int) -> str:
    return EMOTION_NAMES.get(value, "unknown")


def v1_json(face: common_pb2.DetectedFace) -> dict:
    """The facenapi v1 keys of what the face carries: gender, age (whole years) and the likely emotions."""
    out: dict = {}
    if face.HasField("gender"):
        out["gender"] = GENDER_NAMES.get(face.gender.gender, "unknown")
    if face.HasField("age"):
        out["age"] = round(face.age.years)
    if face.emotions:
        listed = [e for e in face.emotions if e.score >= LISTED_EMOTION] or list(face.emotions[:1])
        out["emotions"] = [emotion_name(e.emotion) for e in listed]
    return out


def _iou(a: common_pb2.BoundingBox, b: common_pb2.BoundingBox) -> float:
    iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def matching(box: common_pb2.BoundingBox, faces: Sequence[common_pb2.DetectedFace]) -> common_pb2.DetectedFace | None:
    """The detected face that is this box's face (the best overlap, at least half), or None."""
    best = max(faces, key=lambda f: _iou(box, f.bbox), default=None)
    return best if best is not None and _iou(box, best.bbox) >= 0.5 else None
