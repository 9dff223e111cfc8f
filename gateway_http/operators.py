"""The operators' methods: the cluster status (with a token), and the docs, license.json and health (without)."""
from __future__ import annotations

import json
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from werkzeug.wrappers import Request

from findface_grpc.v1 import common_pb2, gateway_pb2
from gateway_http import docs, license_page
from gateway_http.calls import VERSIONS, Call, Reply, Upstream
from gateway_http.errors import NOT_FOUND, SERVICE_UNAVAILABLE, LegacyError


def cluster_status(upstream: Upstream, call: Call) -> Reply:
    """Every shard and the extractor, live or not (with why), the faces the live shards hold, the gallery count
    and the license status.

    Answers 200 whenever the gateway does: a part that is down is reported, not raised. The license server is
    asked only after the gateway has accepted the token."""
    reply = upstream.rpc(call, "ClusterStatus", gateway_pb2.ClusterStatusRequest())
    extractor = reply.extractor
    license_part: dict | None = None
    if upstream.license_channel is not None:
        try:
            # A short wait: the page must answer promptly with the license server down.
            license_part = license_page.license_json(upstream.license_status(timeout=3.0))
        except grpc.RpcError as exc:
            license_part = {"error": f"license server {upstream.config.license_server} unreachable: {exc.code().name}"}
    return Reply(body={
        "shards": {
            "live": reply.shards_live,
            "total": reply.shards_total,
            "items": [
                {"index": s.index, "address": s.address, "live": s.live, "error": s.error, "shard_id": s.shard_id,
                 "face_count": s.face_count, "galleries": dict(sorted(s.gallery_counts.items())),
                 "model_id": s.model_id, "dim": s.dim, "index_bytes": s.index_bytes,
                 "fast_indexes": [fast_index_json(f) for f in s.fast_indexes]}
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
        "launcher": launcher_status(upstream.config.launcher_status_file),
    })


def launcher_status(path: str) -> dict | None:
    """What the launcher last wrote of its processes (state, pid, restarts, last exit), or why it can't be read;
    None without a launcher."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read the launcher's status {path}: {exc}"}


def docs_index(upstream: Upstream, call: Call) -> Reply:
    base = f"{call.prefix}/docs"
    if _wants_html(call.request):
        return Reply(raw=docs.index_html(base).encode(), content_type="text/html; charset=UTF-8")
    return Reply(body={"results": list(VERSIONS), "links": {
        v: {"openapi": f"{base}/{v}/openapi.json", "html": f"{base}/{v}/overview.html"} for v in VERSIONS
    }})


def docs_version(upstream: Upstream, call: Call) -> Reply:
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


def license_info(upstream: Upstream, call: Call) -> Reply:
    """Open like the original's license.json: it shows limits and usage, no faces and no secrets."""
    if upstream.license_channel is None:
        raise LegacyError(404, NOT_FOUND, "no license server is configured ([http].license_server)")
    try:
        status = upstream.license_status(timeout=5.0)
    except grpc.RpcError as exc:
        raise LegacyError(
            503, SERVICE_UNAVAILABLE, f"license server {upstream.config.license_server} unreachable: {exc.code().name}"
        ) from None
    return Reply(body=license_page.license_json(status))


def health(upstream: Upstream, call: Call) -> Reply:
    try:
        status = upstream.health.Check(health_pb2.HealthCheckRequest(), timeout=2.0).status
    except grpc.RpcError as exc:
        raise LegacyError(
            503, SERVICE_UNAVAILABLE, f"gateway {upstream.config.gateway} unreachable: {exc.code().name}"
        ) from None
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise LegacyError(503, SERVICE_UNAVAILABLE, f"gateway {upstream.config.gateway} is not serving")
    return Reply(body={"status": "SERVING", "gateway": upstream.config.gateway})


def _wants_html(request: Request) -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def fast_index_json(state: common_pb2.FastIndexState) -> dict:
    return {
        "gallery": state.gallery, "state": common_pb2.FastIndexState.State.Name(state.state),
        "progress": round(state.progress, 3), "listed": state.listed, "delta": state.delta, "lists": state.lists,
        "nprobe": state.nprobe, "bytes": state.bytes, "error": state.error,
    }
