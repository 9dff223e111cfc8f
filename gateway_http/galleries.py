"""The legacy gallery methods: list, create and delete (with all its faces)."""
from __future__ import annotations

from findface_grpc.v1 import gateway_pb2
from gateway_http.calls import Call, Reply, Upstream, path_gallery
from gateway_http.errors import bad_param
from gateway_http.params import check_gallery
from gateway_http.replies import timestamp


def list_galleries(upstream: Upstream, call: Call) -> Reply:
    """The documented list of names; `counts=true` gives objects with face counts instead.

    Legacy clients decode the results as strings, so the counts the web console needs are opt-in; without them
    the gateway does not ask the shards. The counts are the faces the shards that answered hold: `partial` says
    some did not (`shards_answered` of `shards_total`).
    """
    counts = call.params.flag("counts")
    reply = upstream.rpc(call, "ListGalleries", gateway_pb2.ListGalleriesRequest(names_only=not counts))
    if not counts:
        return Reply(body={"results": [g.name for g in reply.galleries]})
    return Reply(body={
        "results": [{"name": g.name, "face_count": g.face_count, "timestamp": timestamp(g.created_at)}
                    for g in reply.galleries],
        "shards_answered": reply.shards_answered, "shards_total": reply.shards_total, "partial": reply.partial,
    })


def create_gallery(upstream: Upstream, call: Call) -> Reply:
    if "gallery" in call.args:
        param, name = "gallery", path_gallery(call)
    else:
        value = call.params.get("name")
        if value is None:
            raise bad_param("name", None, "name is required: POST /galleries/<name> or {\"name\": ...}")
        param, name = "name", check_gallery("name", value)
    # The gateway's messages start with "name" (a bad name) or "gallery" (one that exists already): both are
    # the gallery the client named, in the path or in the body.
    upstream.rpc(call, "CreateGallery", gateway_pb2.CreateGalleryRequest(name=name),
                 {"name": (param, name), "gallery": (param, name)})
    return Reply(status=201, body={"name": name})


def delete_gallery(upstream: Upstream, call: Call) -> Reply:
    name = path_gallery(call)
    upstream.rpc(call, "DeleteGallery", gateway_pb2.DeleteGalleryRequest(name=name),
                 {"name": ("gallery", name), "gallery": ("gallery", name)})
    return Reply(status=204)
