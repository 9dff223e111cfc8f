"""The legacy facenapi HTTP API as a WSGI application: each request becomes one gateway FaceService call.

Paths are served under /v0 and /v1 (v1 adds the gender, age and emotions flags) and, for clients that resolve
their paths against the server root (the Go client humaniq/findface does for most methods), without a version,
which means v1. A trailing slash is optional everywhere. The client's `Authorization` header travels to the
gateway as the `authorization` metadata, so the gateway's token check is the only one; /docs and /health need no
token. Responses follow the original's shapes (docs/methods.rst of the SDK, and the Go client's fixtures).
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from werkzeug.wrappers import Request

from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, license_pb2, license_pb2_grpc
from gateway_http import console, docs, license_page
from gateway_http.config import HttpConfig
from gateway_http.errors import (
    AUTH_FAILED,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    LegacyError,
    bad_param,
    box_json,
    from_grpc,
)
from gateway_http.params import MAX_ID, MAX_LIMIT, MAX_N, Params, Photo, check_gallery, too_large
from gateway_http.replies import box_key, box_of, detected_json, face_json, skipped_json, timestamp

log = logging.getLogger(__name__)

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
# Listing faces by meta returns them all, a page of this many per gateway call.
META_PAGE = 1000
# After refusing an oversized body, up to this much of it is read and dropped before answering: a client still
# sending would otherwise see its connection reset instead of the 413. Beyond it, the connection is just closed.
DRAIN_LIMIT = 64 * 1024 * 1024
JSON_TYPE = "application/json; charset=UTF-8"
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
               413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


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


class LegacyRequest(Request):
    """Uploaded files are kept in memory: the body limit bounds them, and a temporary file (werkzeug's default
    above 500 KB) would cost a write and a read of every large photo."""

    max_form_parts = 100

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def image_pb(photo: Photo) -> common_pb2.ImageSource:
    if photo.url is not None:
        return common_pb2.ImageSource(url=photo.url)
    return common_pb2.ImageSource(content=photo.content)


def box_pb(box) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def threshold_pb(value: str | float | None) -> common_pb2.Threshold | None:
    if value is None:
        return None
    if isinstance(value, str):
        return common_pb2.Threshold(preset=PRESETS[value])
    return common_pb2.Threshold(value=value)


def face_id(call: Call) -> int:
    text = call.args["id"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise bad_param("id", text, "id must be a positive whole number")
    return int(text)


def path_gallery(call: Call) -> str:
    return check_gallery("gallery", call.args["gallery"])


class FaceApi:
    """The handlers, one per legacy method, over one channel to the gateway."""

    def __init__(self, config: HttpConfig, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self.channel = channel or grpc.insecure_channel(config.gateway, options=CHANNEL_OPTIONS)
        self.stub = gateway_pb2_grpc.FaceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.license_channel = (
            grpc.insecure_channel(config.license_server, options=CHANNEL_OPTIONS) if config.license_server else None
        )

    def close(self) -> None:
        self.channel.close()
        if self.license_channel is not None:
            self.license_channel.close()

    def rpc(self, call: Call, method: str, request, fields: dict[str, tuple[str, Any]] | None = None):
        """One FaceService call; its failure becomes the legacy error naming the client's parameters."""
        try:
            return getattr(self.stub, method)(request, timeout=self.config.call_timeout_s, metadata=call.metadata)
        except grpc.RpcError as exc:
            raise from_grpc(exc, fields or {}) from None

    # ---- helpers ----

    def _attributes(self, call: Call) -> None:
        """v1's gender/age/emotions: refused honestly while no attribute model exists (v0 has no such flags)."""
        if call.version == "v0":
            return
        for name in ATTRIBUTE_FLAGS:
            if call.params.flag(name):
                raise bad_param(name, call.params.get(name),
                                f"{name}: no attribute model is installed; gender, age and emotions cannot be estimated")

    def _page_link(self, call: Call, max_id: int, limit: int | None) -> str:
        """This path with ?max_id= (left out when 0: the first page) and the limit asked, if one was."""
        query = {"max_id": str(max_id)} if max_id else {}
        if limit is not None:
            query["limit"] = str(limit)
        return f"{call.path}?{urlencode(query)}" if query else call.path

    def _prev_link(self, call: Call, reply, limit: int | None) -> str | None:
        return self._page_link(call, reply.prev_max_id, limit) if reply.has_prev else None

    # ---- detect / verify / identify ----

    def detect(self, call: Call) -> Reply:
        p = call.params
        photo = p.photo("photo")
        try_rotations = p.flag("try_rotations")
        self._attributes(call)
        request = gateway_pb2.FaceDetectRequest(image=image_pb(photo), try_rotations=try_rotations)
        reply = self.rpc(call, "Detect", request, {"image": ("photo", photo.shown)})
        # Coordinates are always in the photo as sent, EXIF orientation applied. orientation says which way up
        # its best face is (1 upright); a gateway older than the field sends 0, which meant upright.
        return Reply(body={"faces": [detected_json(f) for f in reply.faces], "orientation": reply.orientation or 1})

    def verify(self, call: Call) -> Reply:
        p = call.params
        photo1, photo2 = p.photo("photo1"), p.photo("photo2")
        boxes1, boxes2 = p.boxes("bbox1"), p.boxes("bbox2")
        for name, boxes in (("bbox1", boxes1), ("bbox2", boxes2)):
            if len(boxes) > 1:
                raise bad_param(name, p.get(name), f"{name}: give one box per photo")
        threshold = p.threshold()
        selector = p.selector()
        try_rotations = p.flag("try_rotations")
        self._attributes(call)
        request = gateway_pb2.VerifyRequest(image1=image_pb(photo1), image2=image_pb(photo2),
                                            threshold=threshold_pb(threshold), mf_selector=SELECTORS.get(selector, 0),
                                            try_rotations=try_rotations)
        if boxes1:
            request.bbox1.CopyFrom(box_pb(boxes1[0]))
        if boxes2:
            request.bbox2.CopyFrom(box_pb(boxes2[0]))
        reply = self.rpc(call, "Verify", request, {
            "image1": ("photo1", photo1.shown), "image2": ("photo2", photo2.shown), "bbox1": ("bbox1", p.get("bbox1")),
            "bbox2": ("bbox2", p.get("bbox2")), "threshold": ("threshold", p.get("threshold")),
        })
        decide = threshold != "none"
        results = []
        for pair in reply.results:
            item = {"bbox1": box_json(box_of(pair.bbox1)), "bbox2": box_json(box_of(pair.bbox2)),
                    "confidence": pair.confidence}
            if decide:
                item["verified"] = pair.verified
            results.append(item)
        body: dict[str, Any] = {"results": results, "skipped1": skipped_json(reply.skipped1),
                                "skipped2": skipped_json(reply.skipped2)}
        if decide:
            # As the original: the photos verify when every face of the first has a match in the second.
            firsts: dict[str, bool] = {}
            for pair in reply.results:
                key = box_key(pair.bbox1)
                firsts[key] = firsts.get(key, False) or pair.verified
            body["verified"] = bool(firsts) and all(firsts.values())
        return Reply(body=body)

    def identify(self, call: Call) -> Reply:
        p = call.params
        photo = p.photo("photo")
        boxes = p.boxes("bbox")
        single = p.coordinate_box()
        if single is not None:
            boxes.append(single)
        threshold = p.threshold()
        n = p.integer("n", 1, MAX_N)
        selector = p.selector()
        strict = p.flag("strict")
        try_rotations = p.flag("try_rotations")
        gallery = path_gallery(call) if "gallery" in call.args else ""
        self._attributes(call)
        request = gateway_pb2.IdentifyRequest(
            image=image_pb(photo), bboxes=[box_pb(b) for b in boxes], gallery=gallery, n=n or 1,
            threshold=threshold_pb(threshold), mf_selector=SELECTORS.get(selector, 0), try_rotations=try_rotations,
        )
        reply = self.rpc(call, "Identify", request, {
            "image": ("photo", photo.shown), "bboxes": ("bbox", p.get("bbox")), "gallery": ("gallery", gallery),
            "n": ("n", p.get("n")), "threshold": ("threshold", p.get("threshold")),
        })
        live = f"{reply.shards_answered}/{reply.shards_total}"
        if reply.partial and strict:
            raise LegacyError(503, SERVICE_UNAVAILABLE,
                              f"only {live} index shards answered and strict was asked for",
                              headers={"X-Live-Servers": live})
        results: dict[str, list] = {}
        for item in reply.results:
            results[box_key(item.query.bbox)] = [
                {"confidence": m.confidence, "face": face_json(m.face)} for m in item.matches
            ]
        return Reply(body={"results": results, "skipped": skipped_json(reply.skipped)},
                     headers={"X-Live-Servers": live})

    # ---- faces ----

    def create_face(self, call: Call) -> Reply:
        p = call.params
        photo = p.photo("photo")
        boxes = p.boxes("bbox")
        meta = p.string("meta") or ""
        galleries = p.galleries("galleries")
        selector = p.selector()
        cam_id = p.string("cam_id", 256) or ""
        person_id = p.string("person_id", 256) or ""
        min_quality = p.fraction("min_quality")
        try_rotations = p.flag("try_rotations")
        self._attributes(call)
        request = gateway_pb2.CreateFaceRequest(
            image=image_pb(photo), bboxes=[box_pb(b) for b in boxes], meta=meta, galleries=galleries,
            mf_selector=SELECTORS.get(selector, 0), person_id=person_id, cam_id=cam_id, min_quality=min_quality or 0.0,
            try_rotations=try_rotations,
        )
        reply = self.rpc(call, "CreateFace", request, {
            "image": ("photo", photo.shown), "bboxes": ("bbox", p.get("bbox")),
            "galleries": ("galleries", p.get("galleries")), "min_quality": ("min_quality", p.get("min_quality")),
        })
        return Reply(body={"results": [face_json(f) for f in reply.faces], "skipped": skipped_json(reply.skipped)})

    def get_face(self, call: Call) -> Reply:
        fid = face_id(call)
        face = face_json(self.rpc(call, "GetFace", gateway_pb2.GetFaceRequest(id=fid), {"face": ("id", fid)}))
        # The Go client reads /faces/id/<id> as a list of faces (its fixture faces/get.json); /face/id/ is the
        # object the SDK documents.
        return Reply(body=[face] if call.args.get("_plural") else face)

    def update_face(self, call: Call) -> Reply:
        fid = face_id(call)
        p = call.params
        meta = p.string("meta")
        change = p.gallery_change("galleries")
        if p.get("person_id") is not None:
            raise bad_param("person_id", p.get("person_id"), "person_id cannot be changed after enrollment")
        request = gateway_pb2.UpdateFaceRequest(id=fid)
        if meta is not None:
            request.meta = meta
        if change is not None:
            action, names = change
            if action == "add":
                request.galleries_add.extend(names)
            elif action == "del":
                request.galleries_remove.extend(names)
            else:
                request.set_galleries = True
                request.galleries_set.extend(names)
        gallery_field = ("galleries", p.get("galleries"))
        face = self.rpc(call, "UpdateFace", request, {
            "face": ("id", fid), "galleries_add": gallery_field, "galleries_remove": gallery_field,
            "galleries_set": gallery_field,
        })
        return Reply(body=face_json(face))

    def delete_face(self, call: Call) -> Reply:
        fid = face_id(call)
        self.rpc(call, "DeleteFace", gateway_pb2.DeleteFaceRequest(id=fid), {"face": ("id", fid)})
        return Reply(status=204)

    def list_faces(self, call: Call) -> Reply:
        p = call.params
        max_id = p.integer("max_id", 1, MAX_ID)
        limit = p.integer("limit", 1, MAX_LIMIT)
        gallery = path_gallery(call) if "gallery" in call.args else ""
        request = gateway_pb2.ListFacesRequest(gallery=gallery, max_id=max_id or 0, limit=limit or 0)
        reply = self.rpc(call, "ListFaces", request, {"gallery": ("gallery", gallery)})
        return Reply(body={
            "results": [face_json(f) for f in reply.faces],
            "next_page": self._page_link(call, reply.next_max_id, limit) if reply.next_max_id else None,
            "prev_page": self._prev_link(call, reply, limit),
        })

    def faces_by_meta(self, call: Call) -> Reply:
        p = call.params
        meta = call.args["meta"]
        gallery = path_gallery(call) if "gallery" in call.args else ""
        limit = p.integer("limit", 1, MAX_LIMIT)
        max_id = p.integer("max_id", 1, MAX_ID) or 0
        fields = {"gallery": ("gallery", gallery)}
        faces: list = []
        prev_page = None
        while True:
            request = gateway_pb2.ListFacesRequest(gallery=gallery, max_id=max_id, limit=limit or META_PAGE,
                                                   meta=meta)
            reply = self.rpc(call, "ListFaces", request, fields)
            faces.extend(reply.faces)
            if limit is not None:
                prev_page = self._prev_link(call, reply, limit)
            max_id = reply.next_max_id
            if limit is not None or not max_id:
                break
        body: dict[str, Any] = {"results": [face_json(f) for f in faces]}
        if limit is not None:
            body["next_page"] = self._page_link(call, max_id, limit) if max_id else None
            body["prev_page"] = prev_page
        return Reply(body=body)

    def delete_by_meta(self, call: Call) -> Reply:
        """DELETE /faces/meta/<meta> (the Go client's FacesService.Delete): every face with that meta."""
        meta = call.args["meta"]
        gallery = path_gallery(call) if "gallery" in call.args else ""
        fields = {"gallery": ("gallery", gallery)}
        while True:
            reply = self.rpc(call, "ListFaces",
                             gateway_pb2.ListFacesRequest(gallery=gallery, limit=META_PAGE, meta=meta), fields)
            for face in reply.faces:
                try:
                    self.stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id), timeout=self.config.call_timeout_s,
                                         metadata=call.metadata)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:  # deleted meanwhile by someone else: fine
                        raise from_grpc(exc, {}) from None
            if not reply.next_max_id:
                break
        return Reply(status=204)

    def list_meta(self, call: Call) -> Reply:
        gallery = path_gallery(call) if "gallery" in call.args else ""
        reply = self.rpc(call, "ListMeta", gateway_pb2.ListMetaRequest(gallery=gallery), {"gallery": ("gallery", gallery)})
        return Reply(body={"results": [
            {"meta": r.meta, "count": r.count, "face": face_json(r.face)} for r in reply.results
        ]})

    # ---- galleries ----

    def list_galleries(self, call: Call) -> Reply:
        reply = self.rpc(call, "ListGalleries", gateway_pb2.ListGalleriesRequest())
        return Reply(body={"results": [
            {"name": g.name, "face_count": g.face_count, "timestamp": timestamp(g.created_at)} for g in reply.galleries
        ]})

    def create_gallery(self, call: Call) -> Reply:
        if "gallery" in call.args:
            name = path_gallery(call)
        else:
            value = call.params.get("name")
            if value is None:
                raise bad_param("name", None, "name is required: POST /galleries/<name> or {\"name\": ...}")
            name = check_gallery("name", value)
        self.rpc(call, "CreateGallery", gateway_pb2.CreateGalleryRequest(name=name), {"name": ("name", name)})
        return Reply(status=201, body={"name": name})

    def delete_gallery(self, call: Call) -> Reply:
        name = path_gallery(call)
        self.rpc(call, "DeleteGallery", gateway_pb2.DeleteGalleryRequest(name=name),
                 {"name": ("gallery", name), "gallery": ("gallery", name)})
        return Reply(status=204)

    # ---- operators ----

    def cluster_status(self, call: Call) -> Reply:
        """Every shard and the extractor, live or not (with why), the metadata's counts and the license status.

        Answers 200 whenever the gateway does: a part that is down is reported, not raised. The license server is
        asked only after the gateway has accepted the token."""
        reply = self.rpc(call, "ClusterStatus", gateway_pb2.ClusterStatusRequest())
        extractor = reply.extractor
        license_part: dict | None = None
        if self.license_channel is not None:
            try:
                # A short wait: the page must answer promptly with the license server down.
                status = license_pb2_grpc.LicenseStub(self.license_channel).Status(
                    license_pb2.LicenseStatusRequest(), timeout=3.0
                )
                license_part = license_page.license_json(status)
            except grpc.RpcError as exc:
                license_part = {"error": f"license server {self.config.license_server} unreachable: {exc.code().name}"}
        return Reply(body={
            "shards": {
                "live": reply.shards_live,
                "total": reply.shards_total,
                "items": [
                    {"index": s.index, "address": s.address, "live": s.live, "error": s.error, "shard_id": s.shard_id,
                     "face_count": s.face_count, "galleries": dict(sorted(s.gallery_counts.items())),
                     "model_id": s.model_id, "dim": s.dim, "index_bytes": s.index_bytes}
                    for s in reply.shards
                ],
            },
            "extractor": {
                "address": extractor.address, "live": extractor.live, "error": extractor.error,
                "model_pack": extractor.model_pack, "detector_model_id": extractor.detector_model_id,
                "embedder_model_id": extractor.embedder_model_id, "descriptor_dim": extractor.descriptor_dim,
                "version": extractor.version,
            },
            "faces": reply.face_count,
            "galleries": reply.gallery_count,
            "license": license_part,
        })

    # ---- without a token ----

    def docs_index(self, call: Call) -> Reply:
        base = f"{call.prefix}/docs"
        if _wants_html(call.request):
            return Reply(raw=docs.index_html(base).encode(), content_type="text/html; charset=UTF-8")
        return Reply(body={"results": list(VERSIONS), "links": {
            v: {"openapi": f"{base}/{v}/openapi.json", "html": f"{base}/{v}/overview.html"} for v in VERSIONS
        }})

    def docs_version(self, call: Call) -> Reply:
        version = call.args["version"].removesuffix(".json").removesuffix(".html")
        page = call.args.get("page", "")
        if version not in VERSIONS or page not in ("", "openapi.json", "overview.html", "index.html"):
            raise LegacyError(404, NOT_FOUND, f"no documentation at {call.path}; see {call.prefix}/docs")
        html = page.endswith(".html") or call.args["version"].endswith(".html") or (
            not page and not call.args["version"].endswith(".json") and _wants_html(call.request))
        if html:
            return Reply(raw=docs.html(version, f"{call.prefix}/docs/{version}").encode(),
                         content_type="text/html; charset=UTF-8")
        return Reply(body=docs.openapi(version))

    def license(self, call: Call) -> Reply:
        """Open like the original's license.json: it shows limits and usage, no faces and no secrets."""
        if self.license_channel is None:
            raise LegacyError(404, NOT_FOUND, "no license server is configured ([http].license_server)")
        try:
            status = license_pb2_grpc.LicenseStub(self.license_channel).Status(
                license_pb2.LicenseStatusRequest(), timeout=5.0
            )
        except grpc.RpcError as exc:
            raise LegacyError(
                503, SERVICE_UNAVAILABLE, f"license server {self.config.license_server} unreachable: {exc.code().name}"
            ) from None
        return Reply(body=license_page.license_json(status))

    def health(self, call: Call) -> Reply:
        try:
            status = self.health.Check(health_pb2.HealthCheckRequest(), timeout=2.0).status
        except grpc.RpcError as exc:
            raise LegacyError(503, SERVICE_UNAVAILABLE, f"gateway {self.config.gateway} unreachable: {exc.code().name}") from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise LegacyError(503, SERVICE_UNAVAILABLE, f"gateway {self.config.gateway} is not serving")
        return Reply(body={"status": "SERVING", "gateway": self.config.gateway})


def _wants_html(request: Request) -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


# ---- routing ----

Handler = Callable[[FaceApi, Call], Reply]


@dataclass(frozen=True)
class Route:
    segments: tuple[str, ...]  # literal segments, or "<name>" to capture one
    methods: dict[str, Handler]
    open: bool = False  # served without a token
    plural: bool = False  # the /faces/id/ spelling (see get_face)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        captured = {}
        for want, got in zip(self.segments, parts):
            if want.startswith("<"):
                if not got:
                    return None
                captured[want[1:-1]] = got
            elif want != got:
                return None
        return captured


def _route(path: str, open: bool = False, plural: bool = False, **methods: Handler) -> Route:
    return Route(tuple(s for s in path.split("/") if s), methods, open, plural)


A = FaceApi
ROUTES = (
    _route("detect", POST=A.detect),
    _route("verify", POST=A.verify),
    _route("identify", POST=A.identify),
    _route("faces/gallery/<gallery>/identify", POST=A.identify),
    _route("face/gallery/<gallery>/identify", POST=A.identify),
    _route("face", POST=A.create_face),
    _route("face/id/<id>", GET=A.get_face, PUT=A.update_face, DELETE=A.delete_face),
    _route("faces/id/<id>", plural=True, GET=A.get_face, PUT=A.update_face, DELETE=A.delete_face),
    _route("face/meta/<meta>", GET=A.faces_by_meta, DELETE=A.delete_by_meta),
    _route("faces/meta/<meta>", GET=A.faces_by_meta, DELETE=A.delete_by_meta),
    _route("face/gallery/<gallery>/meta/<meta>", GET=A.faces_by_meta, DELETE=A.delete_by_meta),
    _route("faces/gallery/<gallery>/meta/<meta>", GET=A.faces_by_meta, DELETE=A.delete_by_meta),
    _route("faces", GET=A.list_faces),
    _route("faces/gallery/<gallery>", GET=A.list_faces),
    _route("meta", GET=A.list_meta),
    _route("meta/gallery/<gallery>", GET=A.list_meta),
    _route("galleries", GET=A.list_galleries, POST=A.create_gallery),
    _route("galleries/<gallery>", POST=A.create_gallery, DELETE=A.delete_gallery),
    _route("docs", open=True, GET=A.docs_index),
    _route("docs/<version>", open=True, GET=A.docs_version),
    _route("docs/<version>/<page>", open=True, GET=A.docs_version),
    _route("health", open=True, GET=A.health),
    _route("license.json", open=True, GET=A.license),
    _route("status", GET=A.cluster_status),
)


def split_path(environ: dict) -> tuple[str, list[str]]:
    """The request path as sent (still quoted) and its non-empty segments, each unquoted on its own.

    Unquoting per segment keeps a "%2F" inside a meta string from splitting it, which PATH_INFO (already
    unquoted by the server) would. Raises UnicodeDecodeError for a path that is not UTF-8 once unquoted.
    """
    raw = environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/").encode("latin-1"))
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if "://" in path[:10]:  # an absolute-form request target: http://host/path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path, [unquote(s, errors="strict") for s in path.split("/") if s]


class LegacyApp:
    """WSGI application: routing, request limits, the error shape, access logging."""

    def __init__(self, config: HttpConfig, api: FaceApi | None = None) -> None:
        self.config = config
        self.api = api or FaceApi(config)

    def close(self) -> None:
        self.api.close()

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        oversized = False
        if not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input_terminated"):
            environ, oversized = _buffer_chunked(environ, self.config.max_body_bytes)
        request = LegacyRequest(environ)
        request.max_content_length = self.config.max_body_bytes
        # Forms may hold the whole body in memory, which the body limit already bounds.
        request.max_form_memory_size = self.config.max_body_bytes
        method = request.method.upper()
        try:
            if oversized:
                raise too_large(self.config.max_body_bytes)
            reply = self._dispatch(environ, request, method)
        except LegacyError as exc:
            reply = Reply(status=exc.status, body=exc.body(), headers=exc.headers)
        except Exception:  # noqa: BLE001 - a bug must still answer in the legacy shape
            log.exception("unhandled error in %s %s", method, request.path)
            reply = Reply(status=500, body={"code": INTERNAL_ERROR, "reason": "internal error; see the server log"})
        if reply.status == 413:
            # The rest of the body was not read: the connection cannot carry another request after it.
            reply.headers["Connection"] = "close"
            _drain(environ, request.content_length)
        body = b"" if reply.status == 204 else (
            reply.raw if reply.raw is not None else json.dumps(reply.body, ensure_ascii=False).encode("utf-8"))
        headers = [(k, v) for k, v in reply.headers.items()]
        if reply.status != 204:
            headers += [("Content-Type", reply.content_type), ("Content-Length", str(len(body)))]
        start_response(f"{reply.status} {STATUS_TEXT.get(reply.status, 'Error')}", headers)
        log.info("%s %s -> %d (%.1f ms)", method, request.full_path.rstrip("?"), reply.status,
                 (time.perf_counter() - started) * 1000)
        return [body] if method != "HEAD" else [b""]

    def _dispatch(self, environ: dict, request: Request, method: str) -> Reply:
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise too_large(self.config.max_body_bytes)
        try:
            path, parts = split_path(environ)
        except UnicodeDecodeError:
            raise bad_param("path", environ.get("REQUEST_URI", ""), "the path is not valid UTF-8 once unquoted") from None
        if method in ("GET", "HEAD"):
            page = console.lookup(parts)
            if page is not None:
                return Reply(raw=page[0], content_type=page[1], headers=dict(console.SECURITY_HEADERS))
        version, prefix = DEFAULT_VERSION, ""
        if parts and parts[0] in VERSIONS:
            version, prefix, parts = parts[0], f"/{parts[0]}", parts[1:]
        for route in ROUTES:
            captured = route.match(parts)
            if captured is None:
                continue
            handler = route.methods.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = ", ".join(sorted(route.methods))
                raise LegacyError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed here; use {allowed}",
                                  headers={"Allow": allowed})
            if route.plural:
                captured["_plural"] = "1"
            call = Call(request, version, prefix, path, captured, _metadata(request, route.open),
                        self.config.max_body_bytes)
            return handler(self.api, call)
        raise LegacyError(404, NOT_FOUND, f"no such method: {method} {path}; see /docs")


def _buffer_chunked(environ: dict, limit: int) -> tuple[dict, bool]:
    """A chunked body (no Content-Length), read up to the limit so that it can be measured: the environ to use
    from here on, and whether the body is over the limit."""
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        return environ, True
    environ = {**environ, "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data)),
               "wsgi.input_terminated": False}
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return environ, False


def _drain(environ: dict, length: int | None) -> None:
    if length is not None and length > DRAIN_LIMIT:
        return
    stream = environ["wsgi.input"]
    left = DRAIN_LIMIT
    try:
        while left > 0:
            chunk = stream.read(min(1 << 20, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):  # the client gave up, or the body's framing is broken: closing is all there is
        return


def _metadata(request: Request, open_route: bool) -> tuple[tuple[str, str], ...]:
    value = request.headers.get("Authorization")
    if open_route or value is None:
        return ()
    if not value.isascii() or not value.isprintable():
        raise LegacyError(401, AUTH_FAILED, "AUTH_FAILED: the Authorization header is not printable ASCII")
    return (("authorization", value.strip()),)
