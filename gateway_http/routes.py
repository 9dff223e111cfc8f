"""The legacy methods' paths: which handler serves each path and HTTP method, and how a path is split."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from gateway_http import extraction, faces, galleries, live, operators, search, video
from gateway_http.calls import Call, Reply, Upstream

Handler = Callable[[Upstream, Call], Reply]


@dataclass(frozen=True)
class Route:
    segments: tuple[str, ...]  # literal segments, or "<name>" to capture one
    methods: dict[str, Handler]
    open: bool = False  # served without a token
    plural: bool = False  # the /faces/id/ spelling (see faces.get_face)

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


ROUTES = (
    # The original's findface-extraction-api took its requests at its root.
    _route("", POST=extraction.extract),
    _route("extraction-api", POST=extraction.extract),
    _route("detect", POST=search.detect),
    _route("verify", POST=search.verify),
    _route("identify", POST=search.identify),
    _route("faces/gallery/<gallery>/identify", POST=search.identify),
    _route("face/gallery/<gallery>/identify", POST=search.identify),
    _route("face", POST=faces.create_face),
    _route("face/id/<id>", GET=faces.get_face, PUT=faces.update_face, DELETE=faces.delete_face),
    _route("faces/id/<id>", plural=True, GET=faces.get_face, PUT=faces.update_face, DELETE=faces.delete_face),
    _route("face/meta/<meta>", GET=faces.faces_by_meta, DELETE=faces.delete_by_meta),
    _route("faces/meta/<meta>", GET=faces.faces_by_meta, DELETE=faces.delete_by_meta),
    _route("face/gallery/<gallery>/meta/<meta>", GET=faces.faces_by_meta, DELETE=faces.delete_by_meta),
    _route("faces/gallery/<gallery>/meta/<meta>", GET=faces.faces_by_meta, DELETE=faces.delete_by_meta),
    _route("faces", GET=faces.list_faces),
    _route("faces/gallery/<gallery>", GET=faces.list_faces),
    _route("meta", GET=faces.list_meta),
    _route("meta/gallery/<gallery>", GET=faces.list_meta),
    _route("galleries", GET=galleries.list_galleries, POST=galleries.create_gallery),
    _route("galleries/<gallery>", POST=galleries.create_gallery, DELETE=galleries.delete_gallery),
    _route("camera", POST=video.create_camera, GET=video.list_cameras),
    _route("camera/<id>", GET=video.get_camera, PUT=video.update_camera, DELETE=video.delete_camera),
    _route("persons", GET=video.list_persons),
    _route("person/history/id/<id>", GET=video.person_history, POST=video.person_history),
    _route("history/search", POST=video.search_history, GET=video.search_history),
    _route("history/id/<id>/screenshot", GET=video.screenshot),
    _route("events", GET=live.poll_events),
    _route("docs", open=True, GET=operators.docs_index),
    _route("docs/<version>", open=True, GET=operators.docs_version),
    _route("docs/<version>/<page>", open=True, GET=operators.docs_version),
    _route("health", open=True, GET=operators.health),
    _route("license.json", open=True, GET=operators.license_info),
    _route("status", GET=operators.cluster_status),
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
