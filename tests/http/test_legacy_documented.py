"""The legacy API as the original's documents describe it, checked by a client that speaks only HTTP.

Written from the FindFace Enterprise Server SDK's REST documents (the methods, galleries and "how to use" pages)
and the response samples of the Go client humaniq/findface: every documented method on /v0 and /v1, in every
parameter form the documents allow (a JSON body, an urlencoded form, a multipart form carrying the photo file,
and the query string with complex values JSON-encoded), each answer checked for the keys and JSON types of the
documents' examples. Where this server deliberately answers otherwise, the README's legacy API section says so
and why, and the test holds this server to what the README says.

Nothing of the project is imported: requests are built by hand with http.client, as a third-party client would.
Only the fixtures that start the cluster and serve the labelled photos over loopback come from tests/.
"""
from __future__ import annotations

import csv
import http.client
import json
import re
import secrets
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

VERSIONS = ("v0", "v1")
FORMS = ("json", "form", "multipart", "query")
GALLERY = "ldoc_ppl"
IDENTITIES = 5
PAIR_PHOTO = "deepface/couple.jpg"
# The original's thresholds on its own confidence scale (the "how to use" page): the presets and their numbers.
PRESETS = {"strict": 0.7834, "medium": 0.6616, "low": 0.5690}
BOX_KEY = re.compile(r"^\[(-?\d+), (-?\d+), (-?\d+), (-?\d+)\]$")


# ---- a client that knows nothing but HTTP ----

@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def __repr__(self) -> str:  # what a failed assertion shows
        return f"<{self.status} {self.body[:400]!r}>"


def _text(value: Any) -> str:
    """A value as a form or query string carries it: structures JSON-encoded, flags as true/false."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _multipart(fields: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "legacydoc" + secrets.token_hex(8)
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{_text(value)}\r\n'.encode()
    for name, (filename, data) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class Client:
    """One request per connection; `photos` names photo parameters by file, sent as a URL or as the file."""

    def __init__(self, address: str, token: str, photo_server, faces) -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.token = token
        self.photo_server = photo_server
        self.faces = faces

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            auth: str | None | bool = True) -> Answer:
        headers = dict(headers or {})
        if auth is True:
            headers["Authorization"] = f"Token {self.token}"
        elif isinstance(auth, str):
            headers["Authorization"] = auth
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            return Answer(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            conn.close()

    def call(self, method: str, path: str, form: str | None = None, params: dict[str, Any] | None = None,
             photos: dict[str, str] | None = None, auth: str | None | bool = True) -> Answer:
        """`form`: json, form (urlencoded), multipart or query; None sends no parameters at all."""
        params = dict(params or {})
        photos = photos or {}
        files = {}
        for name, file in photos.items():
            if form == "multipart":
                files[name] = (file.rsplit("/", 1)[-1], (self.faces / file).read_bytes())
            else:
                params[name] = self.photo_server.url(file)
        body, headers = None, {}
        if form == "json":
            body, headers["Content-Type"] = json.dumps(params).encode(), "application/json"
        elif form == "form":
            body = urllib.parse.urlencode({k: _text(v) for k, v in params.items()}).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif form == "multipart":
            body, headers["Content-Type"] = _multipart(params, files)
        elif form == "query" and params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode({k: _text(v) for k, v in params.items()})
        elif form not in (None, "query"):
            raise ValueError(form)
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "DELETE"):
            headers["Content-Length"] = "0"
        return self.raw(method, path, body, headers, auth)


# ---- the documented shapes ----

def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_json(answer: Answer, status: int = 200) -> Any:
    """A JSON answer in UTF-8 with the status expected."""
    assert answer.status == status, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    return answer.json


def check_box(box: Any) -> tuple[int, int, int, int]:
    """A bbox as returned: always the object form, whole pixels, x1 < x2 and y1 < y2."""
    assert isinstance(box, dict) and {"x1", "y1", "x2", "y2"} <= box.keys(), box
    coords = tuple(box[k] for k in ("x1", "y1", "x2", "y2"))
    assert all(is_int(c) for c in coords), box
    assert coords[0] < coords[2] and coords[1] < coords[3], box
    return coords


def check_face(face: Any, *, meta: str | None = None, galleries: list[str] | None = None,
               photo: str | None = None) -> dict:
    """The Face object of the documents: id number, ISO 8601 timestamp, photo, photo_hash, thumbnail, normalized,
    x1..y2 numbers, meta string, galleries names, default first."""
    assert isinstance(face, dict), face
    assert is_int(face["id"]) and face["id"] > 0, face
    assert isinstance(face["timestamp"], str) and datetime.fromisoformat(face["timestamp"]), face
    for key in ("photo", "photo_hash", "thumbnail", "normalized", "meta"):
        assert isinstance(face[key], str), (key, face)
    assert face["photo_hash"], face
    check_box(face)
    assert isinstance(face["galleries"], list) and all(isinstance(g, str) for g in face["galleries"]), face
    assert face["galleries"][:1] == ["default"], face
    if meta is not None:
        assert face["meta"] == meta, face
    if galleries is not None:
        assert face["galleries"] == ["default", *galleries], face
    if photo is not None:
        assert face["photo"] == photo, face
    return face


def check_error(answer: Answer, status: int, code: str, param: str | None = None) -> dict:
    """A failure: not 200, JSON with a CAPS code and a reason; BAD_PARAM names the parameter and its value."""
    body = check_json(answer, status)
    assert body["code"] == code and isinstance(body["reason"], str) and body["reason"], body
    if code == "BAD_PARAM":
        assert isinstance(body["param"], str) and "value" in body, body
    if param is not None:
        assert body["param"] == param, body
    return body


def box_key(box: tuple[int, int, int, int]) -> str:
    return "[{}, {}, {}, {}]".format(*box)


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---- the world: one cluster, one photo per identity enrolled, the other kept to search with ----

def pairs(faces) -> list[tuple[str, str, str]]:
    """(identity, enrolled photo, probe photo): the first two photos of each of the first identities."""
    by_identity: dict[str, list[str]] = {}
    with open(faces / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_identity.setdefault(row["identity"], []).append(row["file"])
    return [(who, files[0], files[1]) for who, files in sorted(by_identity.items()) if len(files) >= 2][:IDENTITIES]


@dataclass
class World:
    client: Client
    people: list[tuple[str, str, str]]  # identity, enrolled photo, probe photo
    faces: dict[str, dict]  # identity -> its enrolled face
    boxes: dict[str, tuple[int, int, int, int]]  # photo -> the box /detect gives its biggest face

    def meta(self, identity: str) -> str:
        return f"Sam {identity}"  # a space, as in the documents' "Sam Berry", to be URL-encoded as %20

    def box(self, photo: str) -> tuple[int, int, int, int]:
        if photo not in self.boxes:
            found = check_json(self.client.call("POST", "/v1/detect", "json", photos={"photo": photo}))["faces"]
            biggest = max(found, key=lambda b: (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]))
            self.boxes[photo] = check_box(biggest)
        return self.boxes[photo]


@pytest.fixture(scope="module")
def client(cluster, photo_server, faces) -> Client:
    return Client(cluster.http_address, cluster.token, photo_server, faces)


@pytest.fixture(scope="module")
def world(client, faces) -> World:
    people = pairs(faces)
    assert len(people) == IDENTITIES
    w = World(client, people, {}, {})
    assert client.call("POST", f"/v1/galleries/{GALLERY}").status == 201
    for identity, enrolled, _ in people:
        reply = check_json(client.call("POST", "/v1/face", "json", {"meta": w.meta(identity), "galleries": [GALLERY]},
                                       {"photo": enrolled}))
        (w.faces[identity],) = reply["results"]
    return w


# ---- /detect ----

@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
def test_detect(client, world, version, form):
    """POST /detect: {"faces": [bbox, ...]}, the photo uploaded or given by URL."""
    identity, photo, _ = world.people[0]
    body = check_json(client.call("POST", f"/{version}/detect/", form, photos={"photo": photo}))
    assert isinstance(body["faces"], list) and len(body["faces"]) >= 1, body
    boxes = [check_box(b) for b in body["faces"]]
    assert world.box(photo) in boxes


def test_detect_finds_every_face(client, world):
    body = check_json(client.call("POST", "/v0/detect", "multipart", photos={"photo": PAIR_PHOTO}))
    assert len(body["faces"]) == 2, body


# ---- /verify ----

def check_verify(body: dict, decided: bool = True) -> list[dict]:
    assert isinstance(body["results"], list) and body["results"], body
    for pair in body["results"]:
        check_box(pair["bbox1"])
        check_box(pair["bbox2"])
        assert is_number(pair["confidence"]) and 0 <= pair["confidence"] <= 1, pair
        if decided:
            assert isinstance(pair["verified"], bool), pair
        else:
            assert "verified" not in pair, pair
    if decided:
        assert isinstance(body["verified"], bool), body
    else:
        assert "verified" not in body, body
    return body["results"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
def test_verify(client, world, version, form):
    """POST /verify: the same person's two photos verify, two people's do not; boxes as objects."""
    (_, a1, a2), (_, b1, _) = world.people[0], world.people[1]
    same = check_json(client.call("POST", f"/{version}/verify/", form, photos={"photo1": a1, "photo2": a2}))
    (pair,) = check_verify(same)
    assert pair["verified"] is True and same["verified"] is True, same
    assert check_box(pair["bbox1"]) == world.box(a1) and check_box(pair["bbox2"]) == world.box(a2)
    other = check_json(client.call("POST", f"/{version}/verify", form, {"threshold": "medium"},
                                   photos={"photo1": a1, "photo2": b1}))
    (pair2,) = check_verify(other)
    assert pair2["verified"] is False and other["verified"] is False, other
    assert pair2["confidence"] < pair["confidence"]


@pytest.mark.parametrize("version", VERSIONS)
def test_verify_without_a_decision(client, world, version):
    """threshold=none: similarity only; the binary result is left out, as documented."""
    _, a1, a2 = world.people[0]
    body = check_json(client.call("POST", f"/{version}/verify", "query", {"threshold": "none"},
                                  photos={"photo1": a1, "photo2": a2}))
    check_verify(body, decided=False)


@pytest.mark.parametrize("form", ("json", "query"))
def test_verify_with_boxes_in_both_forms(client, world, form):
    """bbox1/bbox2: one box as an object or [x1, y1, x2, y2], or an array of boxes."""
    _, a1, a2 = world.people[0]
    b1, b2 = world.box(a1), world.box(a2)
    as_object = dict(zip(("x1", "y1", "x2", "y2"), b2))
    for bbox1, bbox2 in ((list(b1), as_object), ([list(b1)], [as_object])):
        body = check_json(client.call("POST", "/v1/verify", form, {"bbox1": bbox1, "bbox2": bbox2},
                                      photos={"photo1": a1, "photo2": a2}))
        (pair,) = check_verify(body)
        assert pair["verified"] is True
        assert iou(check_box(pair["bbox1"]), b1) > 0.5 and iou(check_box(pair["bbox2"]), b2) > 0.5


@pytest.mark.parametrize("form", ("json", "multipart"))
def test_verify_with_several_boxes(client, world, form):
    """bbox1 as an array of boxes: each face given is verified; the photos verify only if every face of the
    first has a match in the second."""
    couple = check_json(client.call("POST", "/v1/detect", "json", photos={"photo": PAIR_PHOTO}))["faces"]
    given = [check_box(b) for b in couple]
    _, single, _ = world.people[0]
    body = check_json(client.call("POST", "/v1/verify", form, {"bbox1": [list(b) for b in given]},
                                  photos={"photo1": PAIR_PHOTO, "photo2": single}))
    results = check_verify(body)
    assert len(results) == 2, body
    for box in given:
        assert any(iou(check_box(r["bbox1"]), box) > 0.5 for r in results), (box, body)
    firsts: dict[tuple, bool] = {}
    for r in results:
        key = check_box(r["bbox1"])
        firsts[key] = firsts.get(key, False) or r["verified"]
    assert body["verified"] is all(firsts.values())


@pytest.mark.parametrize("version", VERSIONS)
def test_thresholds_on_the_originals_scale(client, world, version):
    """The presets are the original's numbers: threshold=<preset> and threshold=<its number> decide alike, and a
    pair verifies exactly when its confidence reaches the number; the same person verifies at medium."""
    (_, a1, a2), (_, b1, _) = world.people[0], world.people[1]
    for first, second, same in ((a1, a2, True), (a1, b1, False)):
        photos = {"photo1": first, "photo2": second}
        (plain,) = check_verify(check_json(client.call("POST", f"/{version}/verify", "json", {"threshold": "none"},
                                                       photos=photos)), decided=False)
        confidence = plain["confidence"]
        for preset, number in PRESETS.items():
            by_name = check_json(client.call("POST", f"/{version}/verify", "json", {"threshold": preset},
                                             photos=photos))
            by_number = check_json(client.call("POST", f"/{version}/verify", "form", {"threshold": number},
                                               photos=photos))
            expected = confidence >= number
            assert by_name["verified"] is expected, (preset, confidence, by_name)
            assert by_number["verified"] is expected, (number, confidence, by_number)
        assert (confidence >= PRESETS["medium"]) is same, (first, second, confidence)


@pytest.mark.parametrize("version", VERSIONS)
def test_default_threshold_is_medium(client, world, version):
    """A call without threshold decides as the medium preset (a README difference: the original's 0.75)."""
    (_, a1, a2), (_, b1, _) = world.people[0], world.people[1]
    for second in (a2, b1):
        photos = {"photo1": a1, "photo2": second}
        plain = check_json(client.call("POST", f"/{version}/verify", "json", photos=photos))
        medium = check_json(client.call("POST", f"/{version}/verify", "json", {"threshold": "medium"}, photos=photos))
        assert plain["verified"] is medium["verified"]


# ---- /identify, also within a gallery ----

def check_identify(answer: Answer) -> dict[str, list[dict]]:
    body = check_json(answer)
    assert re.fullmatch(r"\d+/\d+", answer.headers.get("x-live-servers", "")), answer.headers
    assert answer.headers["x-live-servers"] == "2/2"
    assert isinstance(body["results"], dict), body
    for key, matches in body["results"].items():
        m = BOX_KEY.match(key)
        assert m, key
        x1, y1, x2, y2 = map(int, m.groups())
        assert x1 < x2 and y1 < y2, key
        assert isinstance(matches, list), body
        for match in matches:
            assert is_number(match["confidence"]) and 0 <= match["confidence"] <= 1, match
            check_face(match["face"])
        confidences = [match["confidence"] for match in matches]
        assert confidences == sorted(confidences, reverse=True), confidences
    return body["results"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
def test_identify(client, world, version, form):
    """POST /identify: keyed by the query face's box as "[x1, y1, x2, y2]"; the right person first."""
    for identity, _, probe in world.people:
        results = check_identify(client.call("POST", f"/{version}/identify/", form, {"n": 3, "threshold": "none"},
                                             photos={"photo": probe}))
        assert list(results) == [box_key(world.box(probe))], results
        (matches,) = results.values()
        assert len(matches) == 3
        assert matches[0]["face"]["id"] == world.faces[identity]["id"], (identity, matches[0])
        assert matches[0]["face"]["meta"] == world.meta(identity)


@pytest.mark.parametrize("version", VERSIONS)
def test_identify_defaults_to_one_match(client, world, version):
    identity, _, probe = world.people[1]
    for strict in (False, True):  # strict: fail rather than search only the shards that answer (all do here)
        results = check_identify(client.call("POST", f"/{version}/identify", "multipart",
                                             {"threshold": "none", "strict": strict}, photos={"photo": probe}))
        (matches,) = results.values()
        assert len(matches) == 1 and matches[0]["face"]["id"] == world.faces[identity]["id"]


@pytest.mark.parametrize("form", FORMS)
def test_identify_with_a_box(client, world, form):
    """The face to search for as x1, y1, x2, y2 parameters, or as a bbox."""
    identity, _, probe = world.people[2]
    box = world.box(probe)
    for params in (dict(zip(("x1", "y1", "x2", "y2"), box)), {"bbox": list(box)}):
        results = check_identify(client.call("POST", "/v1/identify", form, params, photos={"photo": probe}))
        ((key, matches),) = results.items()
        assert iou(tuple(map(int, BOX_KEY.match(key).groups())), box) > 0.5
        assert matches[0]["face"]["id"] == world.faces[identity]["id"]


@pytest.mark.parametrize("path", ("/{v}/faces/gallery/{g}/identify/", "/{v}/face/gallery/{g}/identify"))
@pytest.mark.parametrize("version", VERSIONS)
def test_identify_in_a_gallery(client, world, version, path):
    """Both spellings of the gallery identify search that gallery only."""
    other = "ldoc_identify"
    assert client.call("POST", f"/{version}/galleries/{other}").status == 201
    try:
        identity, enrolled, probe = world.people[3]
        added = check_json(client.call("POST", f"/{version}/face", "multipart", {"galleries": [other]},
                                       photos={"photo": enrolled}))["results"][0]
        check_face(added, galleries=[other])
        for gallery, want in ((GALLERY, world.faces[identity]["id"]), (other, added["id"])):
            results = check_identify(client.call("POST", path.format(v=version, g=gallery), "query",
                                                 {"n": 10, "threshold": "none"}, photos={"photo": probe}))
            (matches,) = results.values()
            assert matches[0]["face"]["id"] == want
            assert all(gallery in m["face"]["galleries"] for m in matches), matches
        assert [len(m) for m in results.values()] == [1]  # the other gallery holds the one face
    finally:
        assert client.call("DELETE", f"/{version}/galleries/{other}").status == 204


def test_identify_every_face(client, world):
    """mf_selector=all: one key per face of the photo."""
    results = check_identify(client.call("POST", "/v1/identify", "json", {"mf_selector": "all", "threshold": "none"},
                                         photos={"photo": PAIR_PHOTO}))
    assert len(results) == 2, results


# ---- /face and the face by id ----

@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
def test_create_face(client, world, version, form):
    """POST /face: {"results": [face]}, with meta, galleries and cam_id as given; the photo's URL kept."""
    identity, _, probe = world.people[4]
    camera = str(uuid.uuid4())
    params = {"meta": "Sam Berry", "galleries": [GALLERY], "cam_id": camera}
    body = check_json(client.call("POST", f"/{version}/face/", form, params, photos={"photo": probe}))
    (face,) = body["results"]
    try:
        url = None if form == "multipart" else client.photo_server.url(probe)
        check_face(face, meta="Sam Berry", galleries=[GALLERY], photo=url)
        if url is None:  # an upload: our stored copy's URL, or "" without a photo store (a README difference)
            assert face["photo"] == "" or face["photo"].startswith("http"), face
        assert face["cam_id"] == camera
        assert check_box(face) == world.box(probe)
    finally:
        assert client.call("DELETE", f"/{version}/face/id/{face['id']}").status == 204


@pytest.mark.parametrize("form", ("json", "query", "multipart"))
def test_create_face_in_a_box(client, world, form):
    """bbox as [x1, y1, x2, y2] or as an object picks the face to add."""
    couple = [check_box(b) for b in check_json(client.call("POST", "/v1/detect", "json",
                                                            photos={"photo": PAIR_PHOTO}))["faces"]]
    smaller = min(couple, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    for bbox in (list(smaller), dict(zip(("x1", "y1", "x2", "y2"), smaller))):
        body = check_json(client.call("POST", "/v1/face", form, {"bbox": bbox}, photos={"photo": PAIR_PHOTO}))
        (face,) = body["results"]
        client.call("DELETE", f"/v1/face/id/{face['id']}")
        check_face(face, galleries=[])
        assert iou(check_box(face), smaller) > 0.5


@pytest.mark.parametrize("version", VERSIONS)
def test_create_face_selectors(client, world, version):
    """mf_selector: reject answers 400 with the faces' boxes and "Too many faces: N"; all adds every face."""
    rejected = check_error(client.call("POST", f"/{version}/face", "json", {"mf_selector": "reject"},
                                       photos={"photo": PAIR_PHOTO}), 400, "BAD_PARAM")
    assert rejected["reason"] == "Too many faces: 2", rejected
    assert len(rejected["faces"]) == 2 and all(check_box(b) for b in rejected["faces"])
    body = check_json(client.call("POST", f"/{version}/face", "form", {"mf_selector": "all", "meta": "couple"},
                                  photos={"photo": PAIR_PHOTO}))
    try:
        assert len(body["results"]) == 2
        for face in body["results"]:
            check_face(face, meta="couple", galleries=[])
    finally:
        for face in body["results"]:
            client.call("DELETE", f"/{version}/face/id/{face['id']}")


@pytest.mark.parametrize("version", VERSIONS)
def test_face_by_id(client, world, version):
    """GET /face/id/<id> is the face object; /faces/id/<id> (the Go client's spelling) a list holding it."""
    identity = world.people[0][0]
    face = world.faces[identity]
    got = check_json(client.call("GET", f"/{version}/face/id/{face['id']}/"))
    assert check_face(got, meta=world.meta(identity), galleries=[GALLERY]) == face
    listed = check_json(client.call("GET", f"/{version}/faces/id/{face['id']}"))
    assert isinstance(listed, list) and listed == [face]


@pytest.mark.parametrize("spelling", ("face", "faces"))
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
def test_update_and_delete_face(client, world, version, form, spelling):
    """PUT /face/id/<id>: meta, and galleries {"add"}, {"del"} or {"set"}; the updated face back. DELETE: 204,
    and then the face is gone."""
    _, enrolled, _ = world.people[1]
    face = check_json(client.call("POST", f"/{version}/face", "json", {"meta": "Sam Berry"},
                                  photos={"photo": enrolled}))["results"][0]
    path = f"/{version}/{spelling}/id/{face['id']}/"
    updated = check_json(client.call("PUT", path, form, {"meta": "Sam Berry #2"}))
    check_face(updated, meta="Sam Berry #2", galleries=[])
    assert updated["id"] == face["id"] and updated["photo_hash"] == face["photo_hash"]
    updated = check_json(client.call("PUT", path, form, {"galleries": {"add": [GALLERY]}}))
    check_face(updated, meta="Sam Berry #2", galleries=[GALLERY])
    updated = check_json(client.call("PUT", path, form, {"galleries": {"del": [GALLERY]}}))
    check_face(updated, galleries=[])
    updated = check_json(client.call("PUT", path, form, {"galleries": {"set": [GALLERY]}}))
    check_face(updated, galleries=[GALLERY])
    gone = client.call("DELETE", path)
    assert gone.status == 204 and gone.body == b"", gone
    check_error(client.call("GET", f"/{version}/face/id/{face['id']}"), 404, "NOT_FOUND")
    missing = client.call("DELETE", path)
    assert missing.status == 404 and missing.json["code"] == "NOT_FOUND"


# ---- faces by meta, the lists, the metas ----

@pytest.mark.parametrize("version", VERSIONS)
def test_faces_by_meta(client, world, version):
    """GET /face/meta/<meta> (spaces as %20) and /face/gallery/<g>/meta/<meta>: {"results": [face...]}."""
    identity = world.people[2][0]
    meta = urllib.parse.quote(world.meta(identity))
    assert "%20" in meta
    for path in (f"/{version}/face/meta/{meta}/", f"/{version}/face/gallery/{GALLERY}/meta/{meta}"):
        body = check_json(client.call("GET", path))
        assert [check_face(f, meta=world.meta(identity)) for f in body["results"]] == [world.faces[identity]]
    assert check_json(client.call("GET", f"/{version}/face/meta/Nobody%20Here"))["results"] == []


@pytest.mark.parametrize("version", VERSIONS)
def test_faces_pages(client, world, version):
    """GET /faces/gallery/<g> and /faces: results with next_page / prev_page links (path and query, built with
    ?max_id=); following next_page walks every face once, newest first, each page below its max_id."""
    start = f"/{version}/faces/gallery/{GALLERY}/"
    link, seen, pages = f"{start}?limit=2", [], []
    while link is not None:
        body = check_json(client.call("GET", link))
        assert {"results", "next_page", "prev_page"} <= body.keys(), body
        ids = [check_face(f)["id"] for f in body["results"]]
        assert len(ids) <= 2 and ids == sorted(ids, reverse=True), ids
        max_id = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).get("max_id")
        if max_id:
            assert all(i < int(max_id[0]) for i in ids), (link, ids)
        for key in ("next_page", "prev_page"):
            if body[key] is not None:
                assert body[key].startswith(start + "?"), body[key]
        pages.append(body)
        seen += ids
        link = body["next_page"]
        if link is not None:
            assert "max_id=" in link and "limit=2" in link, link
    assert sorted(seen) == sorted(f["id"] for f in world.faces.values())
    assert pages[0]["prev_page"] is None and len(pages) == 3
    back = check_json(client.call("GET", pages[-1]["prev_page"]))
    assert back["results"] == pages[-2]["results"]
    everything = check_json(client.call("GET", f"/{version}/faces/"))
    for face in everything["results"]:
        check_face(face)
    assert {f["id"] for f in world.faces.values()} <= {f["id"] for f in everything["results"]}
    few = check_json(client.call("GET", f"/{version}/faces", "query", {"limit": 1, "max_id": max(seen)}))
    assert [f["id"] for f in few["results"]] == [sorted(seen)[-2]]


@pytest.mark.parametrize("version", VERSIONS)
def test_meta_lists(client, world, version):
    """GET /meta and /meta/gallery/<g>: each meta with its count of faces and one of them."""
    for path in (f"/{version}/meta/", f"/{version}/meta/gallery/{GALLERY}"):
        body = check_json(client.call("GET", path))
        by_meta = {}
        for item in body["results"]:
            assert isinstance(item["meta"], str) and is_int(item["count"]) and item["count"] >= 1, item
            check_face(item["face"], meta=item["meta"])
            by_meta[item["meta"]] = item
        for identity, face in world.faces.items():
            item = by_meta[world.meta(identity)]
            assert item["count"] == 1 and item["face"] == face


# ---- galleries ----

@pytest.mark.parametrize("version", VERSIONS)
def test_galleries(client, world, version):
    """GET /galleries: {"results": [names]}; POST /galleries/<g> (or {"name"} to /galleries): 201; a second
    time: BAD_PARAM naming the gallery; DELETE: 204, and the gallery's faces go with it."""
    names = check_json(client.call("GET", f"/{version}/galleries/"))["results"]
    assert isinstance(names, list) and all(isinstance(n, str) for n in names), names
    assert "default" in names and GALLERY in names
    by_path, by_name, by_form = f"ldoc_p_{version}", f"ldoc-n-{version}", f"ldoc_f_{version}"
    assert client.call("POST", f"/{version}/galleries/{by_path}").status == 201
    assert client.call("POST", f"/{version}/galleries", "json", {"name": by_name}).status == 201
    assert client.call("POST", f"/{version}/galleries/", "form", {"name": by_form}).status == 201
    names = check_json(client.call("GET", f"/{version}/galleries"))["results"]
    assert {by_path, by_name, by_form} <= set(names)
    again = check_error(client.call("POST", f"/{version}/galleries/{by_path}"), 409, "BAD_PARAM")
    assert again["value"] == by_path, again
    again = check_error(client.call("POST", f"/{version}/galleries", "json", {"name": by_name}), 409, "BAD_PARAM")
    assert again["value"] == by_name, again
    face = check_json(client.call("POST", f"/{version}/face", "json", {"galleries": [by_path]},
                                  photos={"photo": world.people[0][1]}))["results"][0]
    for name in (by_path, by_name, by_form):
        gone = client.call("DELETE", f"/{version}/galleries/{name}")
        assert gone.status == 204 and gone.body == b"", gone
    check_error(client.call("GET", f"/{version}/face/id/{face['id']}"), 404, "NOT_FOUND")
    names = check_json(client.call("GET", f"/{version}/galleries"))["results"]
    assert not {by_path, by_name, by_form} & set(names)


@pytest.mark.parametrize("name", ("bad name", "x" * 49, "dot.ted"))
def test_gallery_names(client, name):
    """Names are [a-zA-Z0-9_-]+, at most 48 characters."""
    check_error(client.call("POST", "/v1/galleries", "json", {"name": name}), 400, "BAD_PARAM")
    assert client.call("POST", "/v1/galleries", "json", {"name": "y" * 48}).status == 201
    assert client.call("DELETE", f"/v1/galleries/{'y' * 48}").status == 204


# ---- docs, auth and errors ----

@pytest.mark.parametrize("version", VERSIONS)
def test_docs_without_auth(client, version):
    """GET /docs lists the documented versions and /docs/<version> documents one, both without a token."""
    listed = check_json(client.raw("GET", f"/{version}/docs", auth=None))
    assert {"v0", "v1"} <= set(listed["results"]), listed
    for path in (f"/{version}/docs/{version}", f"/{version}/docs/{version}/overview.html"):
        page = client.raw("GET", path, auth=None)
        assert page.status == 200 and page.body, (path, page)


BAD_TOKENS = (None, "Token 0123456789abcdef0123456789abcdef", "Bearer {token}", "{token}")


def complete_calls(world: World) -> list[tuple[str, str, str | None, dict, dict]]:
    """(method, path, form, params, photos): every documented method, asked as it should be but for the token."""
    identity, enrolled, probe = world.people[0]
    fid = world.faces[identity]["id"]
    return [
        ("POST", "detect", "json", {}, {"photo": probe}),
        ("POST", "verify", "multipart", {}, {"photo1": enrolled, "photo2": probe}),
        ("POST", "identify", "form", {}, {"photo": probe}),
        ("POST", f"faces/gallery/{GALLERY}/identify", "query", {}, {"photo": probe}),
        ("POST", "face", "json", {"meta": "intruder"}, {"photo": probe}),
        ("GET", f"face/id/{fid}", None, {}, {}),
        ("GET", f"faces/id/{fid}", None, {}, {}),
        ("PUT", f"face/id/{fid}", "json", {"meta": "intruder"}, {}),
        ("DELETE", f"face/id/{fid}", None, {}, {}),
        ("GET", f"face/meta/{urllib.parse.quote(world.meta(identity))}", None, {}, {}),
        ("GET", "faces", None, {}, {}),
        ("GET", f"faces/gallery/{GALLERY}", None, {}, {}),
        ("GET", "meta", None, {}, {}),
        ("GET", "galleries", None, {}, {}),
        ("POST", "galleries/ldoc_intruder", None, {}, {}),
        ("POST", "galleries", "json", {"name": "ldoc_intruder"}, {}),
        ("DELETE", f"galleries/{GALLERY}", None, {}, {}),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_failures(client, world, version):
    """No token, a wrong one, another scheme or the bare key: 401 AUTH_FAILED on every method, and nothing done."""
    before = check_json(client.call("GET", f"/{version}/faces"))["results"]
    for method, path, form, params, photos in complete_calls(world):
        for auth in BAD_TOKENS:
            auth = auth if auth is None else auth.format(token=client.token)
            answer = client.call(method, f"/{version}/{path}", form, params, photos, auth=auth)
            assert answer.status == 401, (method, path, auth, answer)
            check_error(answer, 401, "AUTH_FAILED")
    assert check_json(client.call("GET", f"/{version}/faces"))["results"] == before
    assert client.call("GET", f"/{version}/faces/gallery/{GALLERY}").status == 200
    assert client.call("GET", f"/{version}/faces/gallery/ldoc_intruder").status == 404


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_is_checked_before_parameters(client, version):
    """The documents: every request without a valid token is 401, whatever else is wrong with it."""
    for method, path in (("POST", "detect"), ("POST", "identify"), ("POST", "verify"), ("POST", "face")):
        check_error(client.raw(method, f"/{version}/{path}", headers={"Content-Length": "0"}, auth=None),
                    401, "AUTH_FAILED")


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_params(client, world, version):
    """BAD_PARAM names the parameter at fault and echoes its value; a body that is not JSON is MALFORMED_JSON."""
    _, photo, probe = world.people[0]
    cases = (
        ("identify", {"threshold": "sometimes"}, "threshold"),
        ("identify", {"threshold": 1.5}, "threshold"),
        ("identify", {"n": "many"}, "n"),
        ("identify", {"mf_selector": "tallest"}, "mf_selector"),
        ("verify", {"photo2": None, "threshold": "low"}, "photo2"),
        ("face", {"galleries": ["no such gallery!"]}, "galleries"),
        ("face", {"bbox": [10, 10, 5, 5]}, "bbox"),
    )
    for method, params, param in cases:
        photos = {"photo1": photo} if method == "verify" else {"photo": probe}
        body = check_error(client.call("POST", f"/{version}/{method}", "json", params, photos=photos),
                           400, "BAD_PARAM", param)
        sent = params.get(param)
        if sent is not None:  # the value sent, or the one item of it at fault
            assert body["value"] == sent or (isinstance(sent, list) and body["value"] in sent), body
    check_error(client.call("POST", f"/{version}/detect", "json"), 400, "BAD_PARAM", "photo")
    broken = client.raw("POST", f"/{version}/identify", b'{"photo": ', {"Content-Type": "application/json"})
    check_error(broken, 400, "MALFORMED_JSON")


def test_attribute_flags(client, world):
    """v1's gender, age and emotions add those keys to the faces of /detect (the Go client's fixture shape); v0
    has no such flags and ignores them."""
    _, photo, _ = world.people[0]
    for flag, kind in (("gender", str), ("age", int), ("emotions", list)):
        reply = client.call("POST", "/v1/detect", "json", {flag: True}, photos={"photo": photo})
        assert reply.status == 200 and all(isinstance(face[flag], kind) for face in reply.json["faces"])
        plain = client.call("POST", "/v0/detect", "json", {flag: True}, photos={"photo": photo})
        assert plain.status == 200 and all(flag not in face for face in plain.json["faces"])
