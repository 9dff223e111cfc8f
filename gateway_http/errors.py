"""The legacy error JSON, and how the gateway's gRPC status codes become it.

Every failure reaches the client as a non-2xx status with `{"code": ..., "reason": ...}`; BAD_PARAM adds `param`
and `value`. The codes are the original's (AUTH_FAILED, BAD_PARAM, MALFORMED_JSON, SERVICE_UNAVAILABLE,
EXTRACTION_ERROR) plus NOT_FOUND, METHOD_NOT_ALLOWED, BODY_TOO_LARGE, INTERNAL_ERROR, LICENSE_FEATURE, and the
server's own BAD_REQUEST and REQUEST_TIMEOUT (gateway_http/server.py) for the cases the original documents no code
for.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc

from findface_grpc.errors import PHOTO_UNAVAILABLE
from findface_grpc.rpc import DETAILS_KEY

AUTH_FAILED = "AUTH_FAILED"
BAD_PARAM = "BAD_PARAM"
MALFORMED_JSON = "MALFORMED_JSON"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
EXTRACTION_ERROR = "EXTRACTION_ERROR"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
INTERNAL_ERROR = "INTERNAL_ERROR"
LICENSE_FEATURE = "LICENSE_FEATURE"
BAD_REQUEST = "BAD_REQUEST"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"

# What the extractor says about photo bytes it cannot use (findface_grpc.extractor.imaging): the photo arrived,
# but no face can be extracted from it, which the original reported as EXTRACTION_ERROR.
# What an error repeats of a value the client sent, at most.
ECHO_CHARS = 64
_IMAGE_PROBLEMS = ("image is ", "image has ", "image header ", "image data ", "not a JPEG", "unsupported image format")


class LegacyError(Exception):
    """A reply in the legacy error shape. `extra` adds fields (for example `faces` of a rejected photo)."""

    def __init__(self, status: int, code: str, reason: str, *, param: str | None = None, value: Any = None,
                 extra: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.param = param
        self.value = value
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.code == BAD_PARAM or self.param is not None:
            out["param"] = self.param or ""
            out["value"] = _json_safe(self.value)
        out.update(self.extra)
        return out


def bad_param(param: str, value: Any, reason: str, status: int = 400) -> LegacyError:
    return LegacyError(status, BAD_PARAM, reason, param=param, value=value)


def _json_safe(value: Any) -> Any:
    """Echoing a bad value back must not fail, nor repeat unbounded client input: strings are cut to ECHO_CHARS,
    structures whose JSON is longer become that JSON cut short, anything JSON cannot hold its repr."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return echo_text(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return echo_text(repr(value))
    return value if len(text) <= 4 * ECHO_CHARS else echo_text(text)


def echo_text(text: str) -> str:
    """Client text as an error may repeat it: cut to ECHO_CHARS, lone surrogates (which JSON escapes can spell,
    and the reply's UTF-8 encoding would fail on) written as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def _details(error: grpc.RpcError) -> dict:
    for key, value in getattr(error, "trailing_metadata", lambda: ())() or ():
        if key == DETAILS_KEY:
            try:
                return json.loads(value)
            except ValueError:
                return {}
    return {}


def box_json(box) -> dict:
    x1, y1, x2, y2 = box
    return {"x1": round(x1), "y1": round(y1), "x2": round(x2), "y2": round(y2)}


def from_grpc(error: grpc.RpcError, fields: Mapping[str, tuple[str, Any]]) -> LegacyError:
    """The legacy error for a failed FaceService call.

    `fields` maps the gateway's field names (the prefix of its messages, e.g. "image1" or "galleries") to the
    legacy parameter name and the value the client sent, so that BAD_PARAM names what the client must fix.
    """
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or ""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    field = fields.get(head.split(".", 1)[0]) or fields.get(head)
    param, value = field if field else (None, None)
    rest = message.split(": ", 1)[1] if ": " in message else message

    if code == grpc.StatusCode.UNAUTHENTICATED:
        return LegacyError(401, AUTH_FAILED, message or "authentication failed")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return LegacyError(403, AUTH_FAILED, message or "permission denied")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if head.endswith(".url"):
            if _details(error).get(PHOTO_UNAVAILABLE):
                return LegacyError(400, EXTRACTION_ERROR, f"cannot get the photo from its URL: {rest}",
                                   param=param or "photo", value=value)
            return bad_param(param or "photo", value, f"cannot use the photo URL: {rest}")
        if rest.startswith(_IMAGE_PROBLEMS):
            return LegacyError(400, EXTRACTION_ERROR, rest, param=param, value=value)
        if rest.startswith(("bad box", "no face found in box", "too many boxes")):
            box_param = {"photo": "bbox", "photo1": "bbox1", "photo2": "bbox2"}.get(param or "", "bbox")
            return bad_param(box_param, fields.get(box_param, (None, None))[1], rest)
        return bad_param(param or head, value, message)
    if code == grpc.StatusCode.NOT_FOUND:
        if param is not None and param.startswith("galleries"):
            # A gallery named in the request body: the request is what is wrong, not the URL.
            return bad_param(param, value, message)
        return LegacyError(404, NOT_FOUND, message, param=param, value=value)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return bad_param(param or "name", value, message, status=409)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        details = _details(error)
        # v1's gender, age or emotions refused: no model for it, or the license lacks the feature. The flag is
        # the parameter to change.
        refused = details.get("feature") or (details.get("attributes") or [None])[0]
        if refused is not None:
            return bad_param(refused, True, message)
        faces = details.get("faces")
        if faces is not None:
            return LegacyError(
                400, BAD_PARAM, f"Too many faces: {len(faces)}", param="mf_selector", value="reject",
                extra={"faces": [box_json(b) for b in faces]},
            )
        return LegacyError(503, SERVICE_UNAVAILABLE, message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED):
        return LegacyError(503, SERVICE_UNAVAILABLE, message or code.name)
    return LegacyError(500, INTERNAL_ERROR, message or code.name)
