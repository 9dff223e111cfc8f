"""FaceService replies as the legacy API's JSON: face objects, detected faces, the faces left out, timestamps.

Legacy clients decode these with fixed structs, so keys are only ever added to the original's shapes, never
renamed or removed; quality, orientation and skipped are such additions.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from findface_grpc.v1 import common_pb2
from gateway_http.errors import box_json

SKIP_REASONS = {
    common_pb2.SKIP_REASON_TOO_SMALL: "too_small",
    common_pb2.SKIP_REASON_LOW_QUALITY: "low_quality",
}
# Enough to tell faces apart; the float32 the gateway sends would otherwise show as 0.8234000205993652.
QUALITY_DIGITS = 4


def timestamp(ts) -> str:
    """ISO 8601 in UTC, as the original wrote it: 2016-06-13T11:06:42.075754."""
    if not ts.seconds and not ts.nanos:
        return ""
    moment = datetime.fromtimestamp(ts.seconds, timezone.utc) + timedelta(microseconds=ts.nanos // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def box_of(msg: common_pb2.BoundingBox) -> tuple[float, float, float, float]:
    return (msg.x1, msg.y1, msg.x2, msg.y2)


def box_key(msg: common_pb2.BoundingBox) -> str:
    """The identify result key: the query face's box as the text "[x1, y1, x2, y2]"."""
    b = box_json(box_of(msg))
    return f"[{b['x1']}, {b['y1']}, {b['x2']}, {b['y2']}]"


def quality(value: float) -> float:
    return round(value, QUALITY_DIGITS)


def face_json(face: common_pb2.FaceRecord) -> dict:
    out = {
        "id": face.id,
        "timestamp": timestamp(face.created_at),
        "photo": face.photo,
        "photo_hash": face.photo_hash,
        "thumbnail": face.thumbnail,
        "normalized": face.normalized,
        **box_json(box_of(face.bbox)),
        "meta": face.meta,
        "galleries": list(face.galleries),
        # 0 for faces imported as descriptors or enrolled before these were measured.
        "quality": quality(face.quality),
        "orientation": face.orientation,
    }
    if face.person_id:
        out["person_id"] = face.person_id
    if face.cam_id:
        out["cam_id"] = face.cam_id
    return out


def detected_json(face: common_pb2.DetectedFace) -> dict:
    """A face of /detect: its box, as the original, plus its quality and orientation."""
    return {**box_json(box_of(face.bbox)), "quality": quality(face.quality), "orientation": face.orientation}


def skipped_json(skipped) -> list[dict]:
    """The faces a call found but left out (repeated SkippedFace), why, and the extractor's words for it."""
    return [
        {"bbox": box_json(box_of(s.face.bbox)), "quality": quality(s.face.quality),
         "reason": SKIP_REASONS.get(s.reason, "unspecified"), "message": s.message}
        for s in skipped
    ]
