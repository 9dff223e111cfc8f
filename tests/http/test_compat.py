"""Compatibility: requests in the exact shapes existing clients send, replies checked against their structure.

Two kinds of client are replayed:
- the Go client humaniq/findface (both its layouts): JSON bodies as Go's encoding/json writes its option structs
  (nil pointers as null, unset strings as "", false flags, a trailing newline), sent to the paths it builds by
  resolving "face" or "/face" against its base URL http://<host>:8000/v1/, which drops the /v1 for the latter;
- the curl commands of the SDK's documentation (test requests and method examples): -F form fields with the photo
  as a URL or a file, JSON bodies, trailing slashes, bodiless POST and DELETE.
Photo URLs point at a local http.server on loopback. Replies are checked against tests/http/fixtures/.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import urljoin, urlsplit

import pytest

from tests.http.shapes import check

BASE = "http://findface.local:8000/v1/"


def go_path(ref: str) -> str:
    """The path the Go client requests for `ref`: url.ResolveReference against its base URL."""
    return urlsplit(urljoin(BASE, ref)).path


def go_json(value) -> bytes:
    """json.NewEncoder(buf).Encode(v): compact, with a trailing newline."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def go(api, method: str, ref: str, body=None):
    headers = {"User-Agent": "go-findface/0.1.0"}
    data = None
    if body is not None:
        data = go_json(body)
        headers["Content-Type"] = "application/json"
    return api.request(method, go_path(ref), body=data, headers=headers)


def curl_form(api, path: str, fields: dict, files: dict | None = None):
    """curl -H "Authorization: Token ..." -F name=value ... [-F name=@file]: always multipart."""
    return api.post(path, form=fields, files=files or {}, headers={"User-Agent": "curl/8.5.0", "Accept": "*/*"})


def test_go_paths_resolve_as_the_client_builds_them():
    assert go_path("/face") == "/face"
    assert go_path("face") == "/v1/face"
    assert go_path("galleries/testgal") == "/v1/galleries/testgal"
    assert go_path("face/gallery/g/identify") == "/v1/face/gallery/g/identify"


def test_go_client(api, photo_server, faces):
    sample, sample2 = photo_server.url("deepface/img1.jpg"), photo_server.url("deepface/img2.jpg")

    # GalleriesService.Create: {"name"} to "galleries" (relative) or "/galleries".
    assert go(api, "POST", "galleries", {"name": "ppl"}).status == 201
    assert go(api, "POST", "/galleries", {"name": "go_two"}).status == 201

    # FacesService.Create, newer layout: no omitempty, so nulls, "" and false flags.
    created = go(api, "POST", "/face", {"photo": sample, "mf_selector": "", "bbox": None, "meta": "Sam Berry",
                                        "galleries": ["ppl"], "emotions": False, "gender": False, "age": False})
    assert created.status == 200, created.json
    check(created.json, "create")
    face = created.json["results"][0]
    assert face["meta"] == "Sam Berry" and face["galleries"] == ["default", "ppl"] and face["photo"] == sample
    # Older layout: omitempty, relative path "face".
    older = go(api, "POST", "face", {"photo": sample2, "meta": "Sam Berry", "galleries": ["ppl"]})
    assert older.status == 200, older.json
    check(older.json, "create")
    second = older.json["results"][0]

    # FacesService.Detect.
    detected = go(api, "POST", "/detect", {"photo": sample, "emotions": False, "gender": False, "age": False})
    assert detected.status == 200, detected.json
    check(detected.json, "detect")

    # FacesService.Identify: threshold is a string in the Go structs; gallery paths of both layouts.
    for ref in ("/identify", "/faces/gallery/ppl/identify", "face/gallery/ppl/identify"):
        found = go(api, "POST", ref, {"photo": sample, "threshold": "low", "n": 2})
        assert found.status == 200, (ref, found.json)
        check(found.json, "identify")
        assert found.header("X-Live-Servers") == "2/2"
        (matches,) = found.json["results"].values()
        assert [m["face"]["id"] for m in matches] == [face["id"], second["id"]]
    numeric = go(api, "POST", "/identify", {"photo": sample, "threshold": "0.5"})
    assert numeric.status == 200 and list(numeric.json["results"].values())[0][0]["face"]["id"] == face["id"]

    # FacesService.Verify: nil boxes, empty selector and threshold.
    verified = go(api, "POST", "/verify", {"photo1": sample, "bbox1": None, "photo2": sample2, "bbox2": None,
                                           "mf_selector": "", "threshold": ""})
    assert verified.status == 200, verified.json
    check(verified.json, "verify")
    assert verified.json["verified"] is True

    # FacesService.List: GET with a JSON body (its options struct), the gallery in the path.
    listed = go(api, "GET", "/faces", {"gallery": "", "MinID": 0, "MaxID": 0})
    assert listed.status == 200, listed.json
    check(listed.json, "face_list")
    in_gallery = go(api, "GET", "/faces/gallery/ppl", {"gallery": "ppl", "MinID": 0, "MaxID": 0})
    check(in_gallery.json, "face_list")
    assert {f["id"] for f in in_gallery.json["results"]} == {face["id"], second["id"]}
    by_meta = go(api, "GET", "/faces/gallery/ppl/meta/Sam Berry".replace(" ", "%20"))
    assert by_meta.status == 200 and len(by_meta.json["results"]) == 2

    # FacesService.Get reads a list of faces.
    got = go(api, "GET", f"/faces/id/{face['id']}")
    assert got.status == 200
    check(got.json, "get_list")
    assert got.json[0] == face

    # FacesService.Update: omitempty meta, galleries as {"add": [...]}.
    updated = go(api, "PUT", f"/faces/id/{face['id']}", {"meta": "Sam Berry", "galleries": {"add": ["go_two"]}})
    assert updated.status == 200, updated.json
    check(updated.json, "face")
    assert updated.json["galleries"] == ["default", "ppl", "go_two"]

    # MetaService.List.
    for ref in ("/meta", "/meta/gallery/ppl"):
        metas = go(api, "GET", ref)
        assert metas.status == 200
        check(metas.json, "meta_list")
        assert {"meta": "Sam Berry", "count": 2} == {k: v for k, v in metas.json["results"][0].items() if k != "face"}

    # GalleriesService.List: the Go client decodes a list of names.
    galleries = go(api, "GET", "/galleries")
    check(galleries.json, "galleries")
    assert {"default", "ppl", "go_two"} <= set(galleries.json["results"])

    # FacesService.Delete: by id, by meta in a gallery, by meta.
    assert go(api, "DELETE", f"/faces/id/{second['id']}").status == 204
    assert go(api, "DELETE", "/faces/gallery/ppl/meta/nobody").status == 204
    assert go(api, "GET", f"/faces/id/{face['id']}").status == 200
    assert go(api, "DELETE", "/faces/meta/Sam%20Berry").status == 204
    assert go(api, "GET", f"/faces/id/{face['id']}").status == 404

    # GalleriesService.Delete: path.Join("galleries", name), relative.
    assert go(api, "DELETE", "galleries/ppl").status == 204
    assert go(api, "DELETE", "galleries/go_two").status == 204

    # Errors decode into FindFaceError: string code and reason; faces of a rejected photo.
    rejected = go(api, "POST", "/face", {"photo": photo_server.url("deepface/couple.jpg"), "mf_selector": "reject"})
    assert rejected.status == 400
    check(rejected.json, "error")
    assert rejected.json["reason"] == "Too many faces: 2" and len(rejected.json["faces"]) == 2
    unreachable = go(api, "POST", "/face", {"photo": photo_server.url("missing.jpg")})
    assert unreachable.status == 400
    check(unreachable.json, "error")


def test_sdk_curl_requests(api, photo_server, faces):
    sample = photo_server.url("deepface/img1.jpg")
    sample2 = photo_server.url("deepface/img2.jpg")
    local = {"photo": ("sample.jpg", (faces / "deepface/img1.jpg").read_bytes())}

    # curl ... http://localhost:8000/v0/galleries
    check(api.get("/v0/galleries").json, "galleries")
    # curl ... -X POST http://localhost:8000/v0/galleries/testgal
    created = api.post("/v0/galleries/testgal")
    assert created.status == 201 and created.json == {"name": "testgal"}

    # curl ... -F "photo=http://.../sample.jpg" http://localhost:8000/v0/detect
    detected = curl_form(api, "/v0/detect", {"photo": sample})
    assert detected.status == 200, detected.json
    check(detected.json, "detect")
    assert detected.json["orientation"] == 1

    # curl ... -F "photo=<url>" -F "meta=Sam Berry" http://localhost:8000/v0/face
    by_url = curl_form(api, "/v0/face", {"photo": sample, "meta": "Sam Berry"})
    assert by_url.status == 200, by_url.json
    check(by_url.json, "create")
    # curl ... -F "photo=@sample.jpg" -F "meta=sample" -F "galleries=testgal" http://localhost:8000/v0/face
    by_file = curl_form(api, "/v0/face", {"meta": "sample", "galleries": "testgal"}, local)
    assert by_file.status == 200, by_file.json
    check(by_file.json, "create")
    assert by_file.json["results"][0]["galleries"] == ["default", "testgal"]

    # curl ... -F "photo=<url of sample2>" http://localhost:8000/v0/identify, and -F "photo=@sample.jpg"
    for reply in (curl_form(api, "/v0/identify", {"photo": sample2}), curl_form(api, "/v0/identify", {}, local)):
        assert reply.status == 200, reply.json
        check(reply.json, "identify")
        (matches,) = reply.json["results"].values()
        assert matches[0]["face"]["meta"] in ("Sam Berry", "sample")

    # curl ... -F "photo1=@sample.jpg" -F "photo2=<url>" http://localhost:8000/v0/verify
    verified = curl_form(api, "/v0/verify", {"photo2": sample2}, {"photo1": local["photo"]})
    assert verified.status == 200, verified.json
    check(verified.json, "verify")

    # curl ... http://localhost:8000/v0/faces and .../v0/faces/gallery/testgal
    for path in ("/v0/faces", "/v0/faces/gallery/testgal"):
        page = api.get(path)
        check(page.json, "face_list")
        assert "prev_page" in page.json and "next_page" in page.json

    # curl ... -F 'photo=<url>' -F 'gender=true' -F 'emotions=true' -F 'age=true' http://localhost:8000/v1/detect
    attributes = curl_form(api, "/v1/detect", {"photo": sample, "gender": "true", "emotions": "true", "age": "true"})
    assert attributes.status == 200, attributes.json
    check(attributes.json, "detect_attributes")
    assert attributes.json["faces"][0]["gender"] == "female"

    # The method examples: JSON bodies, trailing slashes.
    enrolled = api.post("/v0/face/", json_body={"meta": "Sam Berry", "photo": sample, "galleries": ["testgal"]})
    assert enrolled.status == 200
    check(enrolled.json, "create")
    fid = enrolled.json["results"][0]["id"]
    reject = api.post("/v0/face/", json_body={"mf_selector": "reject", "photo": photo_server.url("deepface/couple.jpg")})
    assert reject.status == 400 and reject.json["reason"] == "Too many faces: 2"
    check(reject.json, "error")
    check(api.get(f"/v0/face/id/{fid}/").json, "face")
    changed = api.request("PUT", f"/v0/face/id/{fid}/", json_body={"meta": "Sam Berry #2"})
    assert changed.status == 200 and changed.json["meta"] == "Sam Berry #2"
    check(api.get("/v0/face/meta/Sam%20Berry/").json, "create")
    found = api.post("/v0/identify/", json_body={"n": 10, "photo": sample})
    check(found.json, "identify")
    assert len(next(iter(found.json["results"].values()))) >= 2
    check(api.get("/v0/meta/").json, "meta_list")
    deleted = api.request("DELETE", f"/v0/face/id/{fid}/", headers={"Content-Length": "0"})
    assert deleted.status == 204 and deleted.raw == b""
    assert api.request("DELETE", "/v0/galleries/testgal").status == 204


@pytest.mark.parametrize("name", ["face", "detect", "verify", "identify", "create", "get_list", "face_list",
                                  "meta_list", "galleries", "error", "bbox", "detect_attributes"])
def test_fixtures_are_well_formed(name):
    from tests.http.shapes import FIXTURES, shape

    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    assert doc["$doc"] and shape(name) is not None


def curl(*args: str) -> tuple[int, object]:
    """Run curl as the SDK's examples do (plus -s, the status written last, and no proxy from the environment)."""
    done = subprocess.run(["curl", "-s", "--noproxy", "*", "-w", "\n%{http_code}", *args], capture_output=True,
                          timeout=120, check=True)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), (json.loads(body) if body.strip() else None)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_sdk_curl_commands_themselves(cluster, photo_server, faces, tmp_path):
    base = f"http://{cluster.http_address}"
    auth = ["-H", f"Authorization: Token {cluster.token}"]
    sample = faces / "deepface/img1.jpg"  # 0.5 MB: curl sends "Expect: 100-continue" first
    url = photo_server.url("deepface/img2.jpg")

    status, body = curl(*auth, f"{base}/v0/galleries")
    assert status == 200 and "default" in body["results"]
    assert curl(*auth, "-X", "POST", f"{base}/v0/galleries/curlgal") == (201, {"name": "curlgal"})
    status, body = curl(*auth, "-F", f"photo={url}", f"{base}/v0/detect")
    assert status == 200
    check(body, "detect")
    status, body = curl(*auth, "-F", f"photo=@{sample}", "-F", "meta=sample", "-F", "galleries=curlgal", f"{base}/v0/face")
    assert status == 200, body
    check(body, "create")
    assert body["results"][0]["galleries"] == ["default", "curlgal"]
    status, body = curl(*auth, "-F", f"photo={url}", f"{base}/v0/identify")
    assert status == 200
    check(body, "identify")
    status, body = curl(*auth, "-F", f"photo1=@{sample}", "-F", f"photo2={url}", f"{base}/v0/verify")
    assert status == 200 and body["verified"] is True
    status, body = curl(*auth, "-H", "Content-Type: application/json", "-d", json.dumps({"n": 10, "photo": url}),
                        f"{base}/v0/identify/")
    assert status == 200
    check(body, "identify")
    # curl -d without a Content-Type labels JSON as a form; it is read as JSON anyway.
    status, body = curl(*auth, "-d", json.dumps({"photo": url}), f"{base}/v1/detect")
    assert status == 200, body
    status, body = curl(*auth, "-F", f"photo={url}", "-F", "gender=true", f"{base}/v1/detect")
    assert status == 200 and body["faces"][0]["gender"] == "female" and "age" not in body["faces"][0]
    status, body = curl(f"{base}/v0/faces")
    assert status == 401 and body["code"] == "AUTH_FAILED"
    # A photo over 10 MB: curl receives the 413 and its JSON, not a reset connection.
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * 10_500_000)
    status, body = curl(*auth, "-F", f"photo=@{big}", f"{base}/v0/face")
    assert status == 413 and body["code"] == "BODY_TOO_LARGE"
    assert curl(*auth, "-X", "DELETE", f"{base}/v0/galleries/curlgal") == (204, None)
