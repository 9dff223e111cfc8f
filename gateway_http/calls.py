"""What every handler of a legacy method works with: the request as a `Call`, the `Reply` it makes, the
`Upstream` gateway it calls, and the pieces of FaceService requests that several methods share."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from werkzeug.wrappers import Request

from findface_grpc.observability.interceptors import sync_channel
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2_grpc, license_pb2, license_pb2_grpc, video_pb2_grpc
from gateway_http.config import ORIGINAL_SCALE, HttpConfig
from gateway_http.errors import bad_param, from_grpc
from gateway_http.params import MAX_ID, Params, Photo, check_gallery

VERSIONS = ("v0", "v1")
DEFAULT_VERSION = "v1"
ATTRIBUTE_FLAGS = ("gender", "age", "emotions")
PRESETS = {
    "strict": common_pb2.Threshold.PRESET_STRICT,
    "medium": common_pb2.Threshold.PRESET_MEDIUM,
    "low": common_pb2.Threshold.PRESET_LOW,
    "none": common_pb2.Threshold.PRESET_NONE,
}
SELECTORS = {
    "biggest": common_pb2.MULTI_FACE_SELECTOR_BIGGEST,
    "all": common_pb2.MULTI_FACE_SELECTOR_ALL,
    "reject": common_pb2.MULTI_FACE_SELECTOR_REJECT,
}
JSON_TYPE = "application/json; charset=UTF-8"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body that is not JSON (the HTML docs)
    content_type: str = JSON_TYPE


@dataclass
class Call:
    """One request as the handlers see it."""

    request: Request
    version: str
    prefix: str  # the path up to the method's own part: "/v1", "/v0" or ""
    path: str  # the request's path as sent (still quoted), without the query
    args: dict[str, str]  # values taken from the path, unquoted
    metadata: tuple[tuple[str, str], ...]
    max_body: int
    _params: Params | None = None

    @property
    def params(self) -> Params:
        if self._params is None:
            self._params = Params.from_request(self.request, self.max_body)
        return self._params


class Upstream:
    """The gateway (and the license server, if configured) that the handlers call, over one channel each."""

    def __init__(self, config: HttpConfig, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self.channel = channel or grpc.insecure_channel(config.gateway, options=CHANNEL_OPTIONS)
        self.stub = gateway_pb2_grpc.FaceServiceStub(sync_channel(self.channel))
        self.video = video_pb2_grpc.VideoServiceStub(sync_channel(self.channel))
        # GET /events (live.py) holds a worker thread while it waits: a quarter of them may, the rest stay free.
        self.long_polls = threading.BoundedSemaphore(max(1, config.threads // 4))
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.license_channel = (
            grpc.insecure_channel(config.license_server, options=CHANNEL_OPTIONS) if config.license_server else None
        )
        # feature -> (when asked, allowed, the license's features): the license server's last word on it.
        self.feature_seen: dict[str, tuple[float, bool, str]] = {}

    def close(self) -> None:
        self.channel.close()
        if self.license_channel is not None:
            self.license_channel.close()

    def rpc(self, call: Call, method: str, request, fields: dict[str, tuple[str, Any]] | None = None,
            stub=None):
        """One FaceService call (or one on `stub`, e.g. `self.video`); its failure becomes the legacy error
        naming the client's parameters."""
        try:
            return getattr(stub or self.stub, method)(request, timeout=self.config.call_timeout_s,
                                                      metadata=call.metadata)
        except grpc.RpcError as exc:
            raise from_grpc(exc, fields or {}) from None

    def start(self, call: Call, method: str, request, fields: dict[str, tuple[str, Any]] | None = None):
        """A FaceService call begun now and answered by calling what this returns: two calls at once."""
        future = getattr(self.stub, method).future(request, timeout=self.config.call_timeout_s,
                                                   metadata=call.metadata)

        def result():
            try:
                return future.result()
            except grpc.RpcError as exc:
                raise from_grpc(exc, fields or {}) from None

        return result

    def license_status(self, timeout: float) -> license_pb2.LicenseStatusResponse:
        """Only with a license server configured (`license_channel` set); raises grpc.RpcError."""
        return license_pb2_grpc.LicenseStub(self.license_channel).Status(license_pb2.LicenseStatusRequest(),
                                                                         timeout=timeout)


def image_pb(photo: Photo) -> common_pb2.ImageSource:
    if photo.url is not None:
        return common_pb2.ImageSource(url=photo.url)
    return common_pb2.ImageSource(content=photo.content)


def box_pb(box) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def threshold_pb(value: str | float | None, scale: str) -> common_pb2.Threshold | None:
    """A preset, or a number on the scale the answers use (`confidence_scale`), which the gateway maps."""
    if value is None:
        return None
    if isinstance(value, str):
        return common_pb2.Threshold(preset=PRESETS[value])
    if scale == ORIGINAL_SCALE:
        return common_pb2.Threshold(original_value=value)
    return common_pb2.Threshold(value=value)


def confidence(msg, scale: str) -> float:
    """A VerifyPair's or Match's confidence on the scale the answers use."""
    return msg.confidence_original if scale == ORIGINAL_SCALE else msg.confidence


def face_id(call: Call) -> int:
    text = call.args["id"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise bad_param("id", text, "id must be a positive whole number")
    return int(text)


def path_gallery(call: Call) -> str:
    return check_gallery("gallery", call.args["gallery"])
