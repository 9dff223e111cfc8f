"""WSGI middleware for the HTTP servers (the HTTP gateway, the photo store): request ids and request metrics.

Each request keeps the caller's `X-Request-Id` (when acceptable) or gets a new one, which is in
`requestid.current` while the application runs (log lines, and the gRPC calls it makes through
`interceptors.sync_channel`), and comes back in the `X-Request-Id` response header.

The route label is what the application names with `name_route` (a route's pattern, such as "/face/id/<id>"),
else what `route_of(environ)` says: never the path itself, which the caller chooses.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from findface_grpc.observability import metrics, requestid, tracing

ROUTE_KEY = "findface.route"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "PROPPATCH", "MKCOL",
                      "COPY", "MOVE", "LOCK", "UNLOCK"})


class _Route:
    """Shared by every copy of the environ an application makes on its way (a dict copy keeps the object)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""


def name_route(environ: dict, name: str) -> None:
    """Label this request's metrics with `name` (no-op without the middleware)."""
    slot = environ.get(ROUTE_KEY)
    if slot is not None:
        slot.name = name


def top_folder(*folders: str) -> Callable[[dict], str]:
    """A `route_of` that names a request by its path's first folder, when that is one of `folders`."""
    known = frozenset(folders)

    def route_of(environ: dict) -> str:
        top = environ.get("PATH_INFO", "/").lstrip("/").partition("/")[0]
        return f"/{top}" if top in known else UNMATCHED

    return route_of


class Observed:
    def __init__(self, app, route_of: Callable[[dict], str] = lambda environ: UNMATCHED) -> None:
        self.app = app
        self.route_of = route_of

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = requestid.accept(environ.get("HTTP_X_REQUEST_ID"))
        statuses: list[str] = []
        route = environ[ROUTE_KEY] = _Route()

        def start(status: str, headers: list[tuple[str, str]], exc_info=None):
            statuses.append(status)
            return start_response(status, [*headers, (requestid.HEADER, rid)], exc_info)

        method = environ.get("REQUEST_METHOD", "")
        method = method if method in _METHODS else "other"
        carrier = {"traceparent": environ.get("HTTP_TRACEPARENT", ""), "tracestate": environ.get("HTTP_TRACESTATE", "")}
        token = requestid.current.set(rid)
        with tracing.served(f"HTTP {method}", carrier, rid) as span:
            try:
                return self.app(environ, start)
            except Exception:
                statuses.append("500")
                raise
            finally:
                requestid.current.reset(token)
                status = (statuses[-1] if statuses else "500").split(" ", 1)[0]
                name = route.name or self.route_of(environ)
                if span is not None:
                    span.update_name(f"{method} {name}")
                    tracing.finish(span, status)
                if metrics.recording():
                    self._record(name, method, status, started)

    @staticmethod
    def _record(route: str, method: str, status: str, started: float) -> None:
        metrics.HTTP_REQUESTS.labels(route, method, status).inc()
        metrics.HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
