"""The legacy facenapi HTTP API as a WSGI application: each request becomes one gateway FaceService call.

Paths are served under /v0 and /v1 (v1 adds the gender, age and emotions flags) and, for clients that resolve
their paths against the server root (the Go client humaniq/findface does for most methods), without a version,
which means v1. A trailing slash is optional everywhere. The client's `Authorization` header travels to the
gateway as the `authorization` metadata, so the gateway's token check is the only one; /docs and /health need no
token. Responses follow the original's shapes (docs/methods.rst of the SDK, and the Go client's fixtures).

This module is the WSGI side (limits, dispatch, the error shape, logging); routes.py maps paths to handlers,
which live by group in search.py, faces.py, galleries.py and operators.py.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable

import grpc
from werkzeug.wrappers import Request

from findface_grpc.auth import MAX_TOKEN_LENGTH
from findface_grpc.observability.wsgi import name_route
from findface_grpc.v1 import gateway_pb2
from gateway_http import console
from gateway_http.calls import DEFAULT_VERSION, VERSIONS, Call, Reply, Upstream
from gateway_http.config import HttpConfig
from gateway_http.errors import (
    AUTH_FAILED, BAD_PARAM, INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND, LegacyError, bad_param, from_grpc,
)
from gateway_http.params import too_large
from gateway_http.routes import ROUTES, split_path

log = logging.getLogger(__name__)

# After refusing an oversized body, up to this much of it is read and dropped before answering: a client still
# sending would otherwise see its connection reset instead of the 413. Beyond it, the connection is just closed.
DRAIN_LIMIT = 64 * 1024 * 1024
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
               413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


class LegacyRequest(Request):
    """Uploaded files are kept in memory: the body limit bounds them, and a temporary file (werkzeug's default
    above 500 KB) would cost a write and a read of every large photo."""

    max_form_parts = 100

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class LegacyApp:
    """WSGI application: routing, request limits, the error shape, access logging."""

    def __init__(self, config: HttpConfig, upstream: Upstream | None = None) -> None:
        self.config = config
        self.upstream = upstream or Upstream(config)

    def close(self) -> None:
        self.upstream.close()

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
        length = environ.get("CONTENT_LENGTH") or "0"
        try:
            if not length.strip().isdigit():
                # The server would hand such a length on to the body's reads, which fail on it.
                raise LegacyError(400, BAD_PARAM, "Content-Length must be a whole number of bytes",
                                  param="Content-Length", value=length, headers={"Connection": "close"})
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
                name_route(environ, "console")
                return Reply(raw=page[0], content_type=page[1], headers=dict(console.SECURITY_HEADERS))
        version, prefix = DEFAULT_VERSION, ""
        if parts and parts[0] in VERSIONS:
            version, prefix, parts = parts[0], f"/{parts[0]}", parts[1:]
        for route in ROUTES:
            captured = route.match(parts)
            if captured is None:
                continue
            name_route(environ, "/" + "/".join(route.segments))
            handler = route.methods.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = ", ".join(sorted(route.methods))
                raise LegacyError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed here; use {allowed}",
                                  headers={"Allow": allowed})
            if route.plural:
                captured["_plural"] = "1"
            call = Call(request, version, prefix, path, captured, _metadata(request, route.open),
                        self.config.max_body_bytes)
            try:
                return handler(self.upstream, call)
            except LegacyError as exc:
                if exc.status == 400 and not route.open:
                    self._confirm_token(call)
                raise
        raise LegacyError(404, NOT_FOUND, f"no such method: {method} {path}; see /docs")


    def _confirm_token(self, call: Call) -> None:
        """Parameters are checked here, the token only by the gateway; a client without a valid token must hear
        401 first, as from the original, whatever else is wrong with its request. So a parameter error costs one
        cheap authenticated call, and anything but a refused token leaves that error to stand: GetFace of id 0, which
        the gateway answers NOT_FOUND without asking MongoDB (ids start at 1), once it has checked the token from
        its cache; not ListGalleries, which asks every shard for its counts."""
        try:
            self.upstream.stub.GetFace(gateway_pb2.GetFaceRequest(id=0), timeout=self.config.call_timeout_s,
                                       metadata=call.metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise from_grpc(exc, {}) from None


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
    # No token is this long; forwarded, it would overflow gRPC's metadata limit and come back as a random 503.
    if len(value) > MAX_TOKEN_LENGTH + len("Bearer  "):
        raise LegacyError(401, AUTH_FAILED, "AUTH_FAILED: invalid or revoked token")
    return (("authorization", value.strip()),)
