"""The legacy face methods: enroll (/face), get, update and delete one by id, list a page (also of a gallery),
and the faces by meta: list them, delete them, count them (/meta)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import grpc

from findface_grpc.v1 import gateway_pb2
from gateway_http.calls import (
    SELECTORS,
    Call,
    Reply,
    Upstream,
    box_pb,
    face_id,
    image_pb,
    path_gallery,
)
from gateway_http import attributes, video
from gateway_http.errors import from_grpc
from gateway_http.params import MAX_LIMIT, MAX_PAGE_ID
from gateway_http.replies import face_json, skipped_json

# Listing faces by meta returns them all, a page of this many per gateway call.
META_PAGE = 1000


def _page_link(call: Call, max_id: int, limit: int | None) -> str:
    """This path with ?max_id= (left out when 0: the first page) and the limit asked, if one was."""
    query = {"max_id": str(max_id)} if max_id else {}
    if limit is not None:
        query["limit"] = str(limit)
    return f"{call.path}?{urlencode(query)}" if query else call.path


def _prev_link(call: Call, reply, limit: int | None) -> str | None:
    return _page_link(call, reply.prev_max_id, limit) if reply.has_prev else None


def create_face(upstream: Upstream, call: Call) -> Reply:
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
    wanted = attributes.asked(call)
    request = gateway_pb2.CreateFaceRequest(
        image=image_pb(photo), bboxes=[box_pb(b) for b in boxes], meta=meta, galleries=galleries,
        mf_selector=SELECTORS.get(selector, 0), person_id=person_id, cam_id=cam_id, min_quality=min_quality or 0.0,
        try_rotations=try_rotations, sighting=video.sighting(upstream, call, cam_id),
    )
    # The attributes come from a Detect of the same photo, asked first, so that a refusal (an attribute the
    # license lacks) leaves nothing enrolled; they are not stored.
    found = upstream.rpc(call, "Detect", gateway_pb2.FaceDetectRequest(
        image=image_pb(photo), try_rotations=try_rotations, attributes=wanted), {"image": ("photo", photo.shown)},
    ).faces if wanted else None
    reply = upstream.rpc(call, "CreateFace", request, {
        "image": ("photo", photo.shown), "bboxes": ("bbox", p.get("bbox")),
        "galleries": ("galleries", p.get("galleries")), "min_quality": ("min_quality", p.get("min_quality")),
    })
    results = [face_json(f) for f in reply.faces]
    if found is not None:
        for out, face in zip(results, reply.faces):
            match = attributes.matching(face.bbox, found)
            out.update(attributes.v1_json(match) if match is not None else {})
    return Reply(body={"results": results, "skipped": skipped_json(reply.skipped)})


def get_face(upstream: Upstream, call: Call) -> Reply:
    fid = face_id(call)
    face = face_json(upstream.rpc(call, "GetFace", gateway_pb2.GetFaceRequest(id=fid), {"face": ("id", fid)}))
    # The Go client reads /faces/id/<id> as a list of faces (its fixture faces/get.json); /face/id/ is the
    # object the SDK documents.
    return Reply(body=[face] if call.args.get("_plural") else face)


def update_face(upstream: Upstream, call: Call) -> Reply:
    fid = face_id(call)
    p = call.params
    meta = p.string("meta")
    change = p.gallery_change("galleries")
    person_id = p.string("person_id", 256)
    request = gateway_pb2.UpdateFaceRequest(id=fid)
    if meta is not None:
        request.meta = meta
    if person_id is not None:
        request.person_id = person_id
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
    face = upstream.rpc(call, "UpdateFace", request, {
        "face": ("id", fid), "galleries_add": gallery_field, "galleries_remove": gallery_field,
        "galleries_set": gallery_field,
    })
    return Reply(body=face_json(face))


def delete_face(upstream: Upstream, call: Call) -> Reply:
    fid = face_id(call)
    upstream.rpc(call, "DeleteFace", gateway_pb2.DeleteFaceRequest(id=fid), {"face": ("id", fid)})
    return Reply(status=204)


def list_faces(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    max_id = p.integer("max_id", 1, MAX_PAGE_ID)
    limit = p.integer("limit", 1, MAX_LIMIT)
    gallery = path_gallery(call) if "gallery" in call.args else ""
    request = gateway_pb2.ListFacesRequest(gallery=gallery, max_id=max_id or 0, limit=limit or 0)
    reply = upstream.rpc(call, "ListFaces", request, {"gallery": ("gallery", gallery)})
    return Reply(body={
        "results": [face_json(f) for f in reply.faces],
        "next_page": _page_link(call, reply.next_max_id, limit) if reply.next_max_id else None,
        "prev_page": _prev_link(call, reply, limit),
    })


def faces_by_meta(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    meta = call.args["meta"]
    gallery = path_gallery(call) if "gallery" in call.args else ""
    limit = p.integer("limit", 1, MAX_LIMIT)
    max_id = p.integer("max_id", 1, MAX_PAGE_ID) or 0
    fields = {"gallery": ("gallery", gallery)}
    faces: list = []
    prev_page = None
    while True:
        request = gateway_pb2.ListFacesRequest(gallery=gallery, max_id=max_id, limit=limit or META_PAGE,
                                               meta=meta)
        reply = upstream.rpc(call, "ListFaces", request, fields)
        faces.extend(reply.faces)
        if limit is not None:
            prev_page = _prev_link(call, reply, limit)
        max_id = reply.next_max_id
        if limit is not None or not max_id:
            break
    body: dict[str, Any] = {"results": [face_json(f) for f in faces]}
    if limit is not None:
        body["next_page"] = _page_link(call, max_id, limit) if max_id else None
        body["prev_page"] = prev_page
    return Reply(body=body)


def delete_by_meta(upstream: Upstream, call: Call) -> Reply:
    """DELETE /faces/meta/<meta> (the Go client's FacesService.Delete): every face with that meta."""
    meta = call.args["meta"]
    gallery = path_gallery(call) if "gallery" in call.args else ""
    fields = {"gallery": ("gallery", gallery)}
    while True:
        reply = upstream.rpc(call, "ListFaces",
                             gateway_pb2.ListFacesRequest(gallery=gallery, limit=META_PAGE, meta=meta), fields)
        for face in reply.faces:
            try:
                upstream.stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id),
                                         timeout=upstream.config.call_timeout_s, metadata=call.metadata)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # deleted meanwhile by someone else: fine
                    raise from_grpc(exc, {}) from None
        if not reply.next_max_id:
            break
    return Reply(status=204)


def list_meta(upstream: Upstream, call: Call) -> Reply:
    gallery = path_gallery(call) if "gallery" in call.args else ""
    reply = upstream.rpc(call, "ListMeta", gateway_pb2.ListMetaRequest(gallery=gallery),
                         {"gallery": ("gallery", gallery)})
    return Reply(body={"results": [
        {"meta": r.meta, "count": r.count, "face": face_json(r.face)} for r in reply.results
    ]})
