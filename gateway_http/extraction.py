"""The original's findface-extraction-api: `POST /` (or `/extraction-api`) with a set of requests, each a photo
and what to extract of its faces; answered over FaceService.Extract and Detect.

Request: `{"requests": [{"image": URL or "multipart:<part>", "roi": {"left", "top", "right", "bottom"},
"detector": "nnd" | "legacy", "need_facen", "need_gender", "need_age", "need_emotions", "need_normalized",
"auto_rotate"}, ...]}`, as a JSON body or as the multipart part `request` beside the photos' parts. Answer:
`{"responses": [{"faces": [{"bbox", "detection_score", "facen", "gender", "age", "emotions", "normalized"}]}
or {"faces": [], "error": {"code", "desc"}}, ...]}`, one per request, in order; a request that fails does not fail
the others. The original's documents say what each key holds; where ours differ: `facen` is our descriptor, its
little-endian float32 values in base64 (comparable only with ours, of the same model pack); `detection_score` is
the detector's score in [0, 1]; the gender's `score` and the emotions' are probabilities; `roi` keeps the faces
whose box centre lies in it (the photo is processed whole, so coordinates are the photo's); `prenormalized`
(a normalized crop sent back) is refused.
"""
from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc

from findface_grpc.v1 import common_pb2, gateway_pb2
from gateway_http import attributes
from gateway_http.calls import Call, Reply, Upstream
from gateway_http.errors import LICENSE_FEATURE, LegacyError, bad_param, from_grpc
from gateway_http.params import Photo

FEATURE = "extraction-api"
MAX_REQUESTS = 64
FLAGS = {"need_gender": "gender", "need_age": "age", "need_emotions": "emotions"}
DETECTORS = ("nnd", "legacy")
# How long a license server's answer on the feature stands, so that each call does not ask it again.
LICENSE_CACHE_S = 5.0


def extract(upstream: Upstream, call: Call) -> Reply:
    _check_license(upstream)
    requests = _requests(call)
    return Reply(body={"responses": [_one(upstream, call, item, i) for i, item in enumerate(requests)]})


def _check_license(upstream: Upstream) -> None:
    """Refuse when the license lacks the feature (unlicensed mode, or no license server configured, allows it)."""
    if upstream.license_channel is None:
        return
    seen = upstream.feature_seen.get(FEATURE)
    if seen is None or time.monotonic() - seen[0] > LICENSE_CACHE_S:
        try:
            status = upstream.license_status(timeout=min(upstream.config.call_timeout_s, 5.0))
        except grpc.RpcError as exc:
            raise LegacyError(503, "SERVICE_UNAVAILABLE", f"license server unavailable: {exc.code().name}") from None
        allowed = status.unlicensed_mode or FEATURE in status.features
        seen = (time.monotonic(), allowed, ", ".join(status.features) or "none")
        upstream.feature_seen[FEATURE] = seen
    if not seen[1]:
        raise LegacyError(403, LICENSE_FEATURE,
                          f"license: the license does not include the feature '{FEATURE}' (it has: {seen[2]})")


def _requests(call: Call) -> list[dict]:
    params = call.params
    body: Any = params.get("requests")
    if body is None and params.has("request"):
        text = params.get("request")
        try:
            body = json.loads(text).get("requests") if isinstance(text, str) else None
        except (ValueError, AttributeError):
            raise LegacyError(400, "MALFORMED_JSON", "the part 'request' is not a JSON object") from None
    if not isinstance(body, list) or not body:
        raise bad_param("requests", None, 'requests must be a non-empty list: {"requests": [{"image": ...}, ...]}')
    if len(body) > MAX_REQUESTS or not all(isinstance(r, dict) for r in body):
        raise bad_param("requests", None, f"requests must be 1 to {MAX_REQUESTS} objects")
    return body


def _error(code: str, desc: str) -> dict:
    return {"faces": [], "error": {"code": code, "desc": desc}}


def _photo(call: Call, item: dict) -> Photo:
    image = item.get("image")
    if not isinstance(image, str) or not image:
        raise ValueError("image must be a URL or multipart:<part>")
    if image.startswith("multipart:"):
        part = call.params.files.get(image.removeprefix("multipart:"))
        if part is None:
            raise ValueError(f"no multipart part named {image.removeprefix('multipart:')!r}")
        return Photo(content=part.read(), filename=part.filename or "")
    return Photo(url=image)


def _roi(item: dict) -> tuple[float, float, float, float] | None:
    roi = item.get("roi")
    if roi is None:
        return None
    try:
        return tuple(float(roi[k]) for k in ("left", "top", "right", "bottom"))
    except (TypeError, KeyError, ValueError):
        raise ValueError("roi must be {\"left\", \"top\", \"right\", \"bottom\"} numbers") from None


def _one(upstream: Upstream, call: Call, item: dict, index: int) -> dict:
    try:
        detector = item.get("detector", "nnd")
        if detector not in DETECTORS:
            raise ValueError(f"detector {detector!r} is not supported here; use nnd or legacy")
        photo, roi = _photo(call, item), _roi(item)
    except ValueError as exc:
        return _error("BAD_PARAM", f"requests[{index}]: {exc}")
    image = common_pb2.ImageSource(url=photo.url) if photo.url is not None else common_pb2.ImageSource(
        content=photo.content)
    wanted = [attributes.FLAGS[name] for flag, name in FLAGS.items() if item.get(flag) is True]
    rotate = item.get("auto_rotate") is True
    try:
        if item.get("need_facen") is True or item.get("need_normalized") is True:
            reply = upstream.stub.Extract(gateway_pb2.FaceExtractRequest(
                image=image, return_normalized=item.get("need_normalized") is True, attributes=wanted,
                try_rotations=rotate), timeout=upstream.config.call_timeout_s, metadata=call.metadata)
        else:
            reply = upstream.stub.Detect(gateway_pb2.FaceDetectRequest(
                image=image, attributes=wanted, try_rotations=rotate),
                timeout=upstream.config.call_timeout_s, metadata=call.metadata)
    except grpc.RpcError as exc:
        legacy = from_grpc(exc, {"image": ("image", photo.shown)})
        if legacy.status == 401:
            raise legacy from None
        code = "IMAGE_DECODING_FAILED" if legacy.code == "EXTRACTION_ERROR" else legacy.code
        return _error(code, legacy.reason)
    faces = [f for f in reply.faces if roi is None or _centre_in(f.bbox, roi)]
    return {"faces": [_face_json(f, item) for f in faces]}


def _centre_in(box: common_pb2.BoundingBox, roi: tuple[float, float, float, float]) -> bool:
    x, y = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    return roi[0] <= x <= roi[2] and roi[1] <= y <= roi[3]


def _face_json(face: common_pb2.DetectedFace, item: dict) -> dict:
    out: dict[str, Any] = {
        "bbox": {"left": round(face.bbox.x1), "top": round(face.bbox.y1), "right": round(face.bbox.x2),
                 "bottom": round(face.bbox.y2)},
        "detection_score": face.det_score,
    }
    if item.get("need_facen") is True:
        out["facen"] = base64.b64encode(face.descriptor.vector).decode()
    if face.HasField("gender"):
        out["gender"] = {"gender": attributes.GENDER_NAMES.get(face.gender.gender, "unknown").upper(),
                         "score": face.gender.score}
    if face.HasField("age"):
        out["age"] = face.age.years
    if face.emotions:
        out["emotions"] = [{"emotion": attributes.emotion_name(e.emotion), "score": e.score} for e in face.emotions]
    if item.get("need_normalized") is True:
        out["normalized"] = base64.b64encode(face.normalized).decode()
    return out
