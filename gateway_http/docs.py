"""The API's own documentation, served at /docs without a token: OpenAPI 3.0 JSON and a readable HTML page.

Both are generated from the one table of methods below, so that they cannot disagree with each other.
"""
from __future__ import annotations

import html as html_lib
import json
from dataclasses import dataclass, field
from functools import lru_cache

TITLE = "findface-grpc legacy HTTP API (facenapi-compatible)"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # string, integer, number, fraction, boolean, photo, bbox, bboxes, galleries, threshold, selector, object
    text: str
    required: bool = False
    v1_only: bool = False


@dataclass(frozen=True)
class Method:
    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    returns: str = ""
    aliases: tuple[str, ...] = ()
    status: int = 200
    open: bool = False
    path_params: tuple[str, ...] = field(default=())


PHOTO = ("a JPEG, PNG, WEBP, GIF, HEIC or AVIF photo: an uploaded file (multipart) or an http(s) URL the server "
         "fetches")
THRESHOLD = Param("threshold", "threshold",
                  "strict (FAR 1e-5), medium (1e-3, the default), low (1e-1), none, or a number in [0, 1] on the "
                  "scale of the returned confidence: by default the original FindFace's, where strict, medium and "
                  "low are 0.7834, 0.6616 and 0.5690 (docs/thresholds.md); with [http] confidence_scale = "
                  "\"cosine\" the cosine similarity of the descriptors, clipped to [0, 1]")
SELECTOR = Param("mf_selector", "selector", "several faces in a photo: biggest (default), all, or reject (400 with "
                                            "the faces' boxes and reason 'Too many faces: N')")
FLAGS = (
    Param("gender", "boolean", "v1 only: each face also gets \"gender\", \"female\" or \"male\"", v1_only=True),
    Param("age", "boolean", "v1 only: each face also gets \"age\", whole years", v1_only=True),
    Param("emotions", "boolean", "v1 only: each face also gets \"emotions\", the likely ones of neutral, happy, sad, "
                                 "angry, fear, disgust and surprise, most likely first", v1_only=True),
)
TRY_ROTATIONS = Param("try_rotations", "boolean", "true: look for faces turned by 90, 180 and 270 degrees too "
                                                   "(slower); without it they are looked for only when no upright "
                                                   "face is found")
MIN_QUALITY = Param("min_quality", "fraction", "leave out faces whose quality is under this number in [0, 1]; "
                                               "default 0 (no limit). They are listed under skipped (reason "
                                               "low_quality), or refused with 400 when the face asked for is one")
SKIPPED = ('"skipped": the faces found but not used ([] when none), each {"bbox", "quality", "reason": "too_small" '
           'or "low_quality", "message"}')
FACE = ("a face: id, timestamp (ISO 8601, UTC), photo, photo_hash, thumbnail, normalized (URLs, empty without a "
        "photo store), x1, y1, x2, y2, meta, galleries, quality, orientation (0 for faces imported as descriptors or "
        "enrolled before these were measured); person_id and cam_id when set")
PAGE = ("results (faces, newest first), next_page (path and query of the next page, ?max_id=..., or null on the "
        "last page), prev_page (path and query of the page before, with newer faces: ?max_id=..., or no max_id when "
        "that is the first page; null on the first page)")

CAM_ID = Param("cam_id", "string", "the camera the photo comes from: when it is the id of a camera (/camera), "
                                   "each face becomes a sighting in the history (with its best match), as the "
                                   "original's video detector posts them; any other value is only kept on the face")
TIMESTAMP = Param("timestamp", "string", "with a camera's cam_id: the frame's time, ISO 8601 (UTC unless it says) "
                                         "or unix seconds; default: when the server receives it")
TRACK_ID = Param("track_id", "string", "with a camera's cam_id: the detector's track the face belongs to")
REGION = "[width, height, x, y] in the frame's pixels, as the original's; absent or [] for none"
CAMERA_PARAMS = (
    Param("meta", "string", "free text"),
    Param("url", "string", "the stream's address, at most 2048 characters; shown only to the token that created "
                           "the camera and to admin tokens ([gateway] admin_tokens), never logged"),
    Param("detector", "string", "the name of the findface-video that runs the camera"),
    Param("rot", "object", "region of tracking: faces are detected and tracked only inside; " + REGION),
    Param("roi", "object", "region of interest: only faces inside are posted; " + REGION),
)
CAMERA = ('a camera: {"id" (uuid), "meta", "url", "detector", "rot", "roi" (when set), "created_by" (the token\'s '
          'name), "timestamp", "status" (once its video detector reported it: {"state": "running" or "not_running", '
          '"reason" (why not), "detector", "reported_at"})}; to a token that did not create it (and is not an admin), '
          '"url" is "" and "url_hidden" true')
HISTORY_PARAMS = (
    Param("cam_ids", "object", "only the sightings of these cameras: a list of camera ids"),
    Param("start", "string", "only frames at or after this time: ISO 8601 (UTC unless it says) or unix seconds"),
    Param("end", "string", "only frames before this time"),
    Param("max_id", "integer", "only sightings with smaller ids (as next_page gives it)"),
    Param("limit", "integer", "page size 1..1000, default 100"),
)
SIGHTINGS = ('{"results": [sighting...] newest first, "next_page", "prev_page" (as the face lists)}; a sighting: '
             '{"id", "cam_id", "person_id", "face_id" (the face enrolled by /face; null for /identify), "meta" (the '
             'best match\'s), "timestamp" (the frame\'s), "track_id", "x1", "y1", "x2", "y2", "galleries", '
             '"screenshot" (path of its JPEG), "match": {"face", "confidence"} or null, "received"}')

METHODS = (
    Method("POST", "/detect", "Find the faces in a photo.",
           (Param("photo", "photo", PHOTO, required=True), TRY_ROTATIONS, *FLAGS),
           '{"faces": [{"x1", "y1", "x2", "y2", "quality", "orientation"}...], "orientation": the best face\'s '
           '(1 when there is none)}: every face of at least 20x20 px, those too small to enroll included; '
           'coordinates are always in the photo as sent, EXIF orientation applied'),
    Method("POST", "/verify", "Are the faces in two photos the same person?",
           (Param("photo1", "photo", PHOTO, required=True), Param("photo2", "photo", PHOTO, required=True),
            Param("bbox1", "bboxes", "the faces to use in photo1: one box or an array of boxes, each selecting a "
                                     "face"),
            Param("bbox2", "bboxes", "the faces to use in photo2, as bbox1; every pair of selected faces is "
                                     "compared"),
            THRESHOLD, SELECTOR, TRY_ROTATIONS),
           '{"results": [{"bbox1", "bbox2", "confidence", "verified"}], "verified": true if every face of photo1 '
           'has a match in photo2, "skipped1", "skipped2"}; with threshold none, "verified" is left out; '
           '"skipped1" and "skipped2": the faces of photo1 and photo2 found but not used, as "skipped" of /face'),
    Method("POST", "/identify", "The enrolled faces most like each face of a photo.",
           (Param("photo", "photo", PHOTO, required=True), Param("bbox", "bboxes", "the faces to use"),
            Param("x1", "number", "with y1, x2, y2: one face box given as separate numbers"),
            Param("y1", "number", "see x1"), Param("x2", "number", "see x1"), Param("y2", "number", "see x1"),
            THRESHOLD, Param("n", "integer", "matches per face, 1..1000, default 1"), SELECTOR,
            Param("strict", "boolean", "true: fail with 503 when an index shard does not answer, instead of "
                                       "answering from the others"),
            TRY_ROTATIONS, CAM_ID, TIMESTAMP, TRACK_ID,
            Param("full_scan", "boolean", "true: compare with every face of the gallery even where the shards "
                                          "have a fast index (whose search is approximate), for audits"), *FLAGS),
           '{"results": {"[x1, y1, x2, y2]": [{"confidence", "face"}...]}, "skipped"}; with v1\'s gender, age or '
           'emotions also "attributes": {"[x1, y1, x2, y2]": {"gender", "age", "emotions"}}, the query faces\' own; '
           'header X-Live-Servers: answered/total index shards; ' + SKIPPED,
           aliases=("/faces/gallery/{gallery}/identify", "/face/gallery/{gallery}/identify")),
    Method("POST", "/face", "Enroll the faces of a photo.",
           (Param("photo", "photo", PHOTO, required=True), Param("meta", "string", "free text kept with the face"),
            Param("bbox", "bboxes", "the faces to enroll"), SELECTOR,
            Param("galleries", "galleries", "galleries to add the faces to; 'default' is always one"),
            CAM_ID, TIMESTAMP, TRACK_ID,
            Param("person_id", "string", "your grouping key; from a camera with [gateway] person_identify on, "
                                         "left out to have the server pick it (dynamic person creation)"),
            MIN_QUALITY, TRY_ROTATIONS, *FLAGS),
           '{"results": [face...], "skipped"}; ' + SKIPPED),
    Method("GET", "/face/id/{id}", "One face.", (), FACE + " (/faces/id/{id} answers a one-face list, as the Go "
           "client humaniq/findface reads it)", aliases=("/faces/id/{id}",)),
    Method("PUT", "/face/id/{id}", "Change a face's meta, galleries or person.",
           (Param("meta", "string", "new meta"),
            Param("galleries", "object", '{"add": [names]}, {"del": [names]} or {"set": [names]}'),
            Param("person_id", "string", "the person the face belongs to, up to 256 characters; \"\" clears it")),
           FACE, aliases=("/faces/id/{id}",)),
    Method("DELETE", "/face/id/{id}", "Delete a face.", (), "204 No Content", aliases=("/faces/id/{id}",),
           status=204),
    Method("GET", "/face/meta/{meta}", "The faces with exactly this meta (URL-encoded, spaces as %20).",
           (Param("limit", "integer", "page size 1..1000; without it every face is returned"),
            Param("max_id", "integer", "only faces with smaller ids")),
           '{"results": [face...]} (+ next_page, prev_page with limit)',
           aliases=("/faces/meta/{meta}", "/face/gallery/{gallery}/meta/{meta}",
                    "/faces/gallery/{gallery}/meta/{meta}")),
    Method("DELETE", "/face/meta/{meta}", "Delete every face with exactly this meta.", (), "204 No Content",
           aliases=("/faces/meta/{meta}", "/face/gallery/{gallery}/meta/{meta}", "/faces/gallery/{gallery}/meta/{meta}"),
           status=204),
    Method("GET", "/faces", "All faces, newest first, a page at a time.",
           (Param("max_id", "integer", "only faces with smaller ids (as next_page gives it)"),
            Param("limit", "integer", "page size 1..1000, default 100")),
           PAGE, aliases=("/faces/gallery/{gallery}",)),
    Method("GET", "/meta", "Each meta string with its face count and newest face.", (),
           '{"results": [{"meta", "count", "face"}...]}', aliases=("/meta/gallery/{gallery}",)),
    Method("GET", "/galleries", "All galleries, by name.",
           (Param("counts", "boolean", "true: objects with face counts instead of names (not in the original; "
                                       "the web console uses it): the faces the index shards that answered "
                                       "hold, asked for a few seconds at most"),),
           '{"results": ["default", ...]}, the documented list of names; with counts=true '
           '{"results": [{"name", "face_count", "timestamp"}...], "shards_answered", "shards_total", "partial" '
           '(true when some shard did not answer: its faces are not counted)}'),
    Method("POST", "/galleries/{gallery}", "Create a gallery: 1 to 48 of a-z A-Z 0-9 _ -.", (),
           '201 {"name": ...}', aliases=("/galleries (body {\"name\": ...})",), status=201),
    Method("DELETE", "/galleries/{gallery}", "Delete a gallery and every face in it ('default' cannot be).", (),
           "204 No Content", status=204),
    Method("POST", "/extraction-api", "The original's findface-extraction-api: the faces of each of a set of "
           "photos with what is asked of them (README, \"The extraction API\").",
           (Param("requests", "object", '[{"image": URL or "multipart:<part>", "roi", "detector": "nnd", '
                                        '"need_facen", "need_gender", "need_age", "need_emotions", '
                                        '"need_normalized", "auto_rotate"}...]; in a multipart body, the JSON '
                                        '{"requests": [...]} is the part named request', required=True),),
           '{"responses": [{"faces": [{"bbox": {"left", "top", "right", "bottom"}, "detection_score", "facen", '
           '"gender": {"gender", "score"}, "age", "emotions": [{"emotion", "score"}...], "normalized"}]} or '
           '{"faces": [], "error": {"code", "desc"}}...]}, one per request; 403 LICENSE_FEATURE without the '
           'license\'s extraction-api feature', aliases=("/",)),
    Method("GET", "/status", "The cluster's state, for operators: every index shard and the extractor, live or "
           "not (with the reason), the faces the shards hold, the gallery count, and the license status. Shards and the "
           "extractor are asked at once, each for a few seconds at most; a part that is down is reported in the "
           "answer, which is still 200.", (),
           '{"shards": {"live", "total", "items": [{"index", "address", "live", "error", "shard_id", "face_count", '
           '"galleries": {name: count}, "model_id", "dim", "index_bytes", "fast_indexes": [{"gallery", "state" '
           '(BUILDING, READY or FAILED), "progress", "listed", "delta", "lists", "nprobe", "bytes", "error"}...]}...]}, '
           '"extractor": {"address", "live", '
           '"error", "model_pack", "detector_model_id", "embedder_model_id", "descriptor_dim", "version"}, '
           '"faces": the faces the live shards hold (with shards live < total, not those of the others), '
           '"galleries": gallery count, "license": null without a license server, else '
           'the /license.json object, or {"error": ...} when the license server does not answer}'),
    Method("POST", "/camera", "Create a camera for a video detector.", CAMERA_PARAMS, "201 " + CAMERA, status=201),
    Method("GET", "/camera", "Every camera, in id order.",
           (Param("detector", "string", "only the cameras of this detector"),), "[camera...]; " + CAMERA),
    Method("GET", "/camera/{id}", "One camera.", (), CAMERA),
    Method("PUT", "/camera/{id}", "Change a camera: meta, url and detector are kept when absent; rot and roi are "
           "removed when absent (pass them on every PUT to keep them), as in the original.", CAMERA_PARAMS, CAMERA),
    Method("DELETE", "/camera/{id}", "Delete a camera (its sightings stay in the history).", (), "204 No Content",
           status=204),
    Method("GET", "/persons", "Every person: the distinct person_id values of the faces, with their face counts.",
           (Param("after_id", "string", "only person ids after this one (as next_page gives it)"),
            Param("limit", "integer", "page size 1..1000, default 100")),
           '{"results": [{"id", "meta" (of its newest face), "face_count", "face" (its newest)}...], "next_page"}'),
    Method("GET", "/person/history/id/{id}", "The sightings of a person, newest first.", HISTORY_PARAMS, SIGHTINGS),
    Method("POST", "/person/history/id/{id}", "As GET, with the parameters in a JSON body.", HISTORY_PARAMS,
           SIGHTINGS),
    Method("POST", "/history/search", "Search the sightings of the cameras.",
           (Param("person_id", "string", "only this person's sightings"), *HISTORY_PARAMS), SIGHTINGS),
    Method("GET", "/history/search", "As POST, with the parameters in the query string.",
           (Param("person_id", "string", "only this person's sightings"), *HISTORY_PARAMS), SIGHTINGS),
    Method("GET", "/history/id/{id}/screenshot", "A sighting's face as the camera saw it.", (), "image/jpeg"),
    Method("GET", "/events", "New sightings by long poll (the web console's live page): answered as soon as there "
           "is one after `after`, or empty when `wait` runs out.",
           (Param("after", "integer", "the last sighting id the client has; without it the answer is at once, "
                                      "with last_id the newest sighting's id to poll from"),
            Param("wait", "integer", "seconds to wait, 1..25, default 20"),
            Param("cam_ids", "object", "only these cameras' sightings"),
            Param("galleries", "galleries", "only sightings searched in or enrolled into these galleries")),
           '{"results": [sighting...] oldest first, each with "missed" (sightings lost just before it to a full '
           'queue), "last_id"}; when too many polls wait already: at once, empty, with "retry_after" seconds'),
    Method("GET", "/docs", "This documentation: the versions (JSON), or an index page for browsers.", (),
           '{"results": ["v0", "v1"], "links": {...}}', open=True),
    Method("GET", "/docs/{version}", "OpenAPI 3.0 description of a version (JSON), or this page for browsers.", (),
           "OpenAPI JSON; /docs/{version}/openapi.json and /docs/{version}/overview.html always pick one",
           open=True),
    Method("GET", "/health", "Whether this server reaches a serving gateway.", (),
           '{"status": "SERVING"} or 503', open=True),
    Method("GET", "/license.json", "License status, limits with current use, and the components holding a lease, "
           "in the layout of the original's license.json.", (),
           '{"valid": {"value", "description"}, "limits": [...], "services": [...], ...}', open=True),
)

CONVENTIONS = (
    "Every method but /docs, /health and /license.json needs the header Authorization: Token <key> (findface-token create NAME); "
    "a missing or wrong one is answered 401 AUTH_FAILED.",
    "Parameters may come as a JSON body, an urlencoded or multipart form (the only way to upload the photo file), "
    "or the query string; boxes and gallery lists are JSON-encoded in forms and query strings.",
    "Boxes are accepted as {\"x1\", \"y1\", \"x2\", \"y2\"} or [x1, y1, x2, y2] and always returned as the "
    "object, in whole pixels of the upright photo; they may extend past its edges.",
    "Errors: any non-2xx status with {\"code\", \"reason\"}; BAD_PARAM adds param and value. Codes: AUTH_FAILED "
    "(401), BAD_PARAM (400; 409 for an existing gallery), MALFORMED_JSON (400), EXTRACTION_ERROR (400, a photo "
    "that cannot be decoded, or a photo URL that gives none: unreachable, an error answer, empty or too large; "
    "param and value name it), NOT_FOUND (404), METHOD_NOT_ALLOWED (405), BODY_TOO_LARGE (413, bodies over 10 MB), "
    "SERVICE_UNAVAILABLE (503: a part of the cluster is down), INTERNAL_ERROR (500).",
    "Photos: JPEG, PNG, WEBP, GIF (its first frame), HEIC or AVIF, at most 10 MB and (by default) 50 "
    "megapixels, turned upright as their EXIF orientation says. Photo URLs must be public (the server refuses "
    "private addresses unless configured) and direct: redirects are not followed.",
    "Face size: /detect reports faces from 20x20 px (the extractor's detect_min_face_size); enrolling, identifying "
    "and verifying use faces of at least its min_face_size (also 20 px unless the operator raised it). Smaller "
    "faces, and with min_quality those under it, are left out and listed under skipped (skipped1 and skipped2 in /verify; [] when none) as "
    "{\"bbox\", \"quality\", \"reason\": \"too_small\" or \"low_quality\", \"message\"}. With "
    "mf_selector all the call fails only when no face can be used; with biggest (the default) only the biggest face "
    "counts, and when it cannot be used the call is refused: 400 BAD_PARAM (param photo) whose reason names its size "
    "or quality and the minimum; with reject, faces that cannot be used are skipped, not counted as more faces.",
    "Every face found has a quality in [0, 1]: how fit it is for recognition, from its size, sharpness, pose and "
    "detector score (under about 0.3 expect confidences well below those of the person's good photos), and an "
    "orientation, as in EXIF: 1 upright, 3 upside down, 6 lying on its left side (the photo needs turning 90 "
    "degrees clockwise to show it upright), 8 lying on its right side (90 degrees counter-clockwise). Turned faces "
    "are looked for when no upright one is found, or always with try_rotations; boxes stay in the photo's own "
    "pixels either way. Faces imported as descriptors, or enrolled before quality was measured, have 0 for both.",
    "confidence is in [0, 1], higher is more alike, on the original product's scale: the cosine similarity of "
    "the two faces' descriptors mapped per model pack so that the original's numbers 0.7834, 0.6616 and 0.5690 "
    "are exactly the presets strict, medium and low, which keep the original's false accept rates; numeric "
    "thresholds are on the same scale (docs/thresholds.md). The server's [http] confidence_scale = \"cosine\" "
    "gives the raw cosine instead.",
    "Paths work under /v0 and /v1 (v1 adds the gender/age/emotions flags) and, as v1, without a version; a "
    "trailing slash is optional.",
)

_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "minimum": 1},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "photo": {"type": "string", "description": "http(s) URL; or the file itself in a multipart form"},
    "bbox": {"$ref": "#/components/schemas/BBoxIn"},
    "bboxes": {"oneOf": [{"$ref": "#/components/schemas/BBoxIn"},
                         {"type": "array", "items": {"$ref": "#/components/schemas/BBoxIn"}}]},
    "galleries": {"type": "array", "items": {"$ref": "#/components/schemas/GalleryName"}},
    "threshold": {"oneOf": [{"type": "string", "enum": ["strict", "medium", "low", "none"]},
                            {"type": "number", "minimum": 0, "maximum": 1}]},
    "selector": {"type": "string", "enum": ["biggest", "all", "reject"]},
    "fraction": {"type": "number", "minimum": 0, "maximum": 1},
    "object": {"type": "object"},
}

_SCHEMAS = {
    "BBox": {"type": "object", "required": ["x1", "y1", "x2", "y2"],
             "properties": {k: {"type": "integer"} for k in ("x1", "y1", "x2", "y2")}},
    "BBoxIn": {"oneOf": [
        {"type": "object", "required": ["x1", "y1", "x2", "y2"],
         "properties": {k: {"type": "number"} for k in ("x1", "y1", "x2", "y2")}},
        {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
    ]},
    "GalleryName": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,48}$"},
    "Face": {"type": "object", "required": ["id", "timestamp", "photo", "photo_hash", "thumbnail", "normalized",
                                            "x1", "y1", "x2", "y2", "meta", "galleries", "quality", "orientation"],
             "properties": {
                 "id": {"type": "integer"}, "timestamp": {"type": "string", "format": "date-time"},
                 "photo": {"type": "string"}, "photo_hash": {"type": "string"}, "thumbnail": {"type": "string"},
                 "normalized": {"type": "string"}, "x1": {"type": "integer"}, "y1": {"type": "integer"},
                 "x2": {"type": "integer"}, "y2": {"type": "integer"}, "meta": {"type": "string"},
                 "galleries": {"type": "array", "items": {"type": "string"}}, "person_id": {"type": "string"},
                 "cam_id": {"type": "string"}, "quality": {"type": "number", "minimum": 0, "maximum": 1},
                 "orientation": {"type": "integer", "enum": [0, 1, 3, 6, 8]}}},
    "SkippedFace": {"type": "object", "required": ["bbox", "quality", "reason", "message"], "properties": {
        "bbox": {"$ref": "#/components/schemas/BBox"}, "quality": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "enum": ["too_small", "low_quality", "unspecified"]},
        "message": {"type": "string"}}},
    "Error": {"type": "object", "required": ["code", "reason"], "properties": {
        "code": {"type": "string"}, "reason": {"type": "string"}, "param": {"type": "string"}, "value": {},
        "faces": {"type": "array", "items": {"$ref": "#/components/schemas/BBox"}}}},
}


def _params(method: Method, version: str) -> list[Param]:
    return [p for p in method.params if version == "v1" or not p.v1_only]


def _operation(method: Method, version: str) -> dict:
    params = _params(method, version)
    op: dict = {"summary": method.summary, "description": f"Returns: {method.returns}",
                "responses": {str(method.status): {"description": method.returns},
                              "default": {"description": "error",
                                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
    if method.open:
        op["security"] = []
    if params:
        props = {p.name: {**_TYPES[p.kind], "description": p.text} for p in params}
        required = [p.name for p in params if p.required]
        schema = {"type": "object", "properties": props, **({"required": required} if required else {})}
        if method.method == "GET":
            op["parameters"] = [{"name": p.name, "in": "query", "required": p.required,
                                 "description": p.text, "schema": _TYPES[p.kind]} for p in params]
        else:
            multipart = {"type": "object", "properties": {
                p.name: ({"type": "string", "format": "binary"} if p.kind == "photo" else props[p.name])
                for p in params}}
            op["requestBody"] = {"required": bool(required), "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": multipart},
                "application/x-www-form-urlencoded": {"schema": schema},
            }}
    return op


def _path_parameters(path: str) -> list[dict]:
    out = []
    for name in ("id", "meta", "gallery", "version"):
        if "{" + name + "}" in path:
            schema = {"type": "integer", "minimum": 1} if name == "id" else {"type": "string"}
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


@lru_cache(maxsize=4)
def openapi(version: str) -> dict:
    paths: dict[str, dict] = {}
    for method in METHODS:
        for path in (method.path, *method.aliases):
            path = path.split(" ", 1)[0]
            entry = paths.setdefault(f"/{version}{path}", {})
            op = _operation(method, version)
            if path != method.path:
                op["summary"] += f" (same as {method.path})"
            op["operationId"] = f"{method.method.lower()}_{version}{path}".replace("/", "_").replace("{", "").replace("}", "")
            entry[method.method.lower()] = op
            params = _path_parameters(path)
            if params:
                entry["parameters"] = params
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": version, "description": "\n\n".join(CONVENTIONS)},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization",
                                          "description": "Token <key>"}},
            "schemas": _SCHEMAS,
        },
        "security": [{"token": []}],
        "paths": paths,
    }


def _e(text: str) -> str:
    return html_lib.escape(text, quote=True)


_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
          "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em;vertical-align:top;"
          "text-align:left}code{background:#f4f4f4}h2{margin-top:2em}")


@lru_cache(maxsize=16)
def html(version: str, base: str) -> str:
    """The page for `version`; `base` is where its files are served, e.g. /v1/docs/v1."""
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(TITLE)} {version}</title>",
           f"<style>{_STYLE}</style></head><body><h1>{_e(TITLE)}, {version}</h1>",
           f"<p>Machine-readable: <a href='{_e(base)}/openapi.json'>OpenAPI 3.0 JSON</a>. All paths below start with "
           f"<code>/{version}</code>.</p><h2>Conventions</h2><ul>"]
    out += [f"<li>{_e(c)}</li>" for c in CONVENTIONS]
    out.append("</ul><h2>Methods</h2>")
    for m in METHODS:
        aliases = "".join(f"<br>also <code>{_e(a)}</code>" for a in m.aliases)
        out.append(f"<h3><code>{m.method} {_e(m.path)}</code></h3><p>{_e(m.summary)}{aliases}</p>")
        params = _params(m, version)
        if params:
            out.append("<table><tr><th>parameter</th><th>type</th><th></th></tr>")
            out += [f"<tr><td><code>{_e(p.name)}</code>{' (required)' if p.required else ''}</td>"
                    f"<td>{_e(p.kind)}</td><td>{_e(p.text)}</td></tr>" for p in params]
            out.append("</table>")
        out.append(f"<p>Returns: {_e(m.returns)}</p>")
    out.append("</body></html>")
    return "".join(out)


def index_html(base: str) -> str:
    links = "".join(f"<li>{v}: <a href='{_e(base)}/{v}/overview.html'>overview</a>, "
                    f"<a href='{_e(base)}/{v}/openapi.json'>OpenAPI JSON</a></li>" for v in ("v0", "v1"))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(TITLE)}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{_e(TITLE)}</h1><ul>{links}</ul></body></html>")


def dumps(version: str) -> str:
    return json.dumps(openapi(version), indent=2)
