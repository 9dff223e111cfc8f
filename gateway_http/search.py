"""The legacy search methods: /detect, /verify and /identify (also within a gallery)."""
from __future__ import annotations

from typing import Any

from findface_grpc.v1 import gateway_pb2
from gateway_http.calls import (
    SELECTORS,
    Call,
    Reply,
    Upstream,
    box_pb,
    confidence,
    image_pb,
    path_gallery,
    threshold_pb,
)
from gateway_http.errors import SERVICE_UNAVAILABLE, LegacyError, box_json
from gateway_http import attributes, video
from gateway_http.params import MAX_N
from gateway_http.replies import box_key, box_of, detected_json, face_json, skipped_json


def detect(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    photo = p.photo("photo")
    try_rotations = p.flag("try_rotations")
    request = gateway_pb2.FaceDetectRequest(image=image_pb(photo), try_rotations=try_rotations,
                                            attributes=attributes.asked(call))
    reply = upstream.rpc(call, "Detect", request, {"image": ("photo", photo.shown)})
    # Coordinates are always in the photo as sent, EXIF orientation applied. orientation says which way up
    # its best face is (1 upright); a gateway older than the field sends 0, which meant upright.
    faces = [{**detected_json(f), **attributes.v1_json(f)} for f in reply.faces]
    return Reply(body={"faces": faces, "orientation": reply.orientation or 1})


def verify(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    photo1, photo2 = p.photo("photo1"), p.photo("photo2")
    # One box or, as the original documents, an array of boxes: each selects a face of its photo.
    boxes1, boxes2 = p.boxes("bbox1"), p.boxes("bbox2")
    threshold = p.threshold()
    scale = upstream.config.confidence_scale
    selector = p.selector()
    try_rotations = p.flag("try_rotations")
    request = gateway_pb2.VerifyRequest(image1=image_pb(photo1), image2=image_pb(photo2),
                                        threshold=threshold_pb(threshold, scale), mf_selector=SELECTORS.get(selector, 0),
                                        try_rotations=try_rotations, bboxes1=[box_pb(b) for b in boxes1],
                                        bboxes2=[box_pb(b) for b in boxes2])
    reply = upstream.rpc(call, "Verify", request, {
        "image1": ("photo1", photo1.shown), "image2": ("photo2", photo2.shown), "bbox1": ("bbox1", p.get("bbox1")),
        "bbox2": ("bbox2", p.get("bbox2")), "bboxes1": ("bbox1", p.get("bbox1")), "bboxes2": ("bbox2", p.get("bbox2")), "threshold": ("threshold", p.get("threshold")),
    })
    decide = threshold != "none"
    results = []
    for pair in reply.results:
        item = {"bbox1": box_json(box_of(pair.bbox1)), "bbox2": box_json(box_of(pair.bbox2)),
                "confidence": confidence(pair, scale)}
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


def identify(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    photo = p.photo("photo")
    boxes = p.boxes("bbox")
    single = p.coordinate_box()
    if single is not None:
        boxes.append(single)
    threshold = p.threshold()
    scale = upstream.config.confidence_scale
    n = p.integer("n", 1, MAX_N)
    selector = p.selector()
    strict = p.flag("strict")
    try_rotations = p.flag("try_rotations")
    gallery = path_gallery(call) if "gallery" in call.args else ""
    wanted = attributes.asked(call)
    request = gateway_pb2.IdentifyRequest(
        image=image_pb(photo), bboxes=[box_pb(b) for b in boxes], gallery=gallery, n=n or 1,
        threshold=threshold_pb(threshold, scale), mf_selector=SELECTORS.get(selector, 0), try_rotations=try_rotations,
        sighting=video.sighting(upstream, call, p.string("cam_id", 256) or ""), full_scan=p.flag("full_scan"),
    )
    # The query faces' attributes come from a Detect of the same photo, asked at the same time.
    detected = upstream.start(call, "Detect", gateway_pb2.FaceDetectRequest(
        image=image_pb(photo), try_rotations=try_rotations, attributes=wanted), {"image": ("photo", photo.shown)},
    ) if wanted else None
    reply = upstream.rpc(call, "Identify", request, {
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
            {"confidence": confidence(m, scale), "face": face_json(m.face)} for m in item.matches
        ]
    body: dict[str, Any] = {"results": results, "skipped": skipped_json(reply.skipped)}
    if detected is not None:
        # The identify answer has no object of the query face: its attributes are keyed as its results are.
        faces = detected().faces
        body["attributes"] = {
            box_key(item.query.bbox): attributes.v1_json(face) if (face := attributes.matching(item.query.bbox, faces))
            else {} for item in reply.results
        }
    return Reply(body=body, headers={"X-Live-Servers": live})
