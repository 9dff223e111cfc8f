"""Bad requests over real HTTP: each is answered with the legacy error JSON and the right status."""
from __future__ import annotations

import http.client
import io
import json

import pytest
from PIL import Image


def check_error(reply, status: int, code: str, param: str | None = None):
    assert reply.status == status, (reply.status, reply.raw[:500])
    assert reply.header("Content-Type").startswith("application/json")
    body = reply.json
    assert body["code"] == code, body
    assert isinstance(body["reason"], str) and body["reason"]
    if code == "BAD_PARAM":
        assert "param" in body and "value" in body, body
    if param is not None:
        assert body["param"] == param, body
    return body


def blank_png(size=(200, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 200, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def url(photo_server):
    return photo_server.url("deepface/img1.jpg")


def test_tokens(api, cluster, url):
    body = {"photo": url}
    check_error(api.post("/v1/detect", json_body=body, token=False), 401, "AUTH_FAILED")
    check_error(api.post("/v1/detect", json_body=body, token="Token not-a-real-token"), 401, "AUTH_FAILED")
    check_error(api.post("/v1/detect", json_body=body, token=f"Bearer {cluster.token}"), 401, "AUTH_FAILED")
    check_error(api.get("/v1/galleries", token="Token caf\u00e9".encode().decode("latin-1")), 401, "AUTH_FAILED")
    assert api.post("/v1/detect", json_body=body, token=f"Token {cluster.token}").status == 200
    assert api.get("/v1/docs", token=False).status == 200


def test_a_raw_photo_body_is_told_how_to_send_a_photo(api, faces):
    jpeg = (faces / "deepface/img2.jpg").read_bytes()
    body = check_error(api.post("/v1/detect", body=jpeg, headers={"Content-Type": "image/jpeg"}), 400, "BAD_PARAM",
                       "photo")
    assert "multipart" in body["reason"] and "image/jpeg" in body["reason"]


@pytest.mark.parametrize("body", [b"{bad json", b'{"photo": "http://x/a.jpg",}', b"\xff\xfe", b"[1, 2]", b'"photo"'])
def test_malformed_json(api, body):
    reply = api.post("/v1/detect", body=body, headers={"Content-Type": "application/json"})
    check_error(reply, 400, "MALFORMED_JSON")


@pytest.mark.parametrize(
    "path, params, param",
    [
        ("/v1/identify", {"n": "abc"}, "n"),
        ("/v1/identify", {"n": 0}, "n"),
        ("/v1/identify", {"n": 1001}, "n"),
        ("/v1/identify", {"n": 2.5}, "n"),
        ("/v1/identify", {"n": True}, "n"),
        ("/v1/identify", {"threshold": 1.5}, "threshold"),
        ("/v1/identify", {"threshold": -0.1}, "threshold"),
        ("/v1/identify", {"threshold": "high"}, "threshold"),
        ("/v1/identify", {"threshold": [0.5]}, "threshold"),
        ("/v1/identify", {"mf_selector": "first"}, "mf_selector"),
        ("/v1/identify", {"bbox": [1, 2, 3]}, "bbox"),
        ("/v1/identify", {"bbox": {"x1": 10, "y1": 10, "x2": 5, "y2": 50}}, "bbox"),
        ("/v1/identify", {"bbox": {"x1": 10, "y1": 10, "x2": 50}}, "bbox"),
        ("/v1/identify", {"bbox": ["a", 1, 2, 3]}, "bbox"),
        ("/v1/identify", {"x1": 10, "y1": 10}, "x2"),
        ("/v1/identify", {"strict": "maybe"}, "strict"),
        ("/v1/verify", {"photo2": None}, "photo2"),
        ("/v1/verify", {"bbox1": [[0, 0, 10, 10], [10, 10, 20, 20]]}, "bbox1"),
        ("/v1/face", {"galleries": 5}, "galleries"),
        ("/v1/face", {"galleries": ["no spaces allowed"]}, "galleries"),
        ("/v1/face", {"galleries": ["x" * 49]}, "galleries"),
        ("/v1/face", {"galleries": ["does_not_exist"]}, "galleries"),
        ("/v1/face", {"meta": {"a": 1}}, "meta"),
        ("/v1/face", {"meta": "x" * 5000}, "meta"),
        ("/v1/face", {"photo": 123}, "photo"),
        ("/v1/face", {"photo": "ftp://example.com/a.jpg"}, "photo"),
        ("/v1/face", {"photo": "not a url"}, "photo"),
        ("/v1/face", {"photo": None}, "photo"),
        ("/v1/detect", {"gender": "perhaps"}, "gender"),
    ],
)
def test_bad_parameters(api, url, path, params, param):
    body = {"photo": url, "photo1": url, "photo2": url} if path == "/v1/verify" else {"photo": url}
    body.update(params)
    body = {k: v for k, v in body.items() if v is not None}
    check_error(api.post(path, json_body=body), 400, "BAD_PARAM", param)


def test_bad_parameters_in_query_strings_and_forms(api, url):
    check_error(api.post("/v1/identify", query={"photo": url, "bbox": "[1, 2"}), 400, "BAD_PARAM", "bbox")
    check_error(api.post("/v1/identify", form={"photo": url, "n": "-1"}), 400, "BAD_PARAM", "n")
    check_error(api.get("/v1/faces", query={"limit": "0"}), 400, "BAD_PARAM", "limit")
    check_error(api.get("/v1/faces", query={"max_id": "x"}), 400, "BAD_PARAM", "max_id")
    check_error(api.request("PUT", "/v1/face/id/1", json_body={"galleries": ["a"]}), 400, "BAD_PARAM", "galleries")
    check_error(api.request("PUT", "/v1/face/id/1", json_body={"galleries": {"add": ["a"], "del": ["b"]}}), 400,
                "BAD_PARAM", "galleries")


def test_bodies_over_10_mb(api, cluster):
    photo = b"\xff\xd8" + b"\0" * 10_500_000
    reply = api.post("/v1/detect", files={"photo": ("big.jpg", photo)})
    check_error(reply, 413, "BODY_TOO_LARGE")
    reply = api.post("/v1/detect", body=b"{" + b" " * 10_000_001 + b"}", headers={"Content-Type": "application/json"})
    check_error(reply, 413, "BODY_TOO_LARGE")
    # Without a Content-Length (chunked), the limit holds while reading.
    host, _, port = cluster.http_address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (b"x" * 1_000_000 for _ in range(12))
    conn.request("POST", "/v1/detect", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Token {cluster.token}",
                          "Transfer-Encoding": "chunked"})
    reply = conn.getresponse()
    assert reply.status == 413 and json.loads(reply.read())["code"] == "BODY_TOO_LARGE"
    conn.close()
    # The server is fine afterwards.
    assert api.get("/v1/galleries").status == 200


def test_unknown_ids_and_galleries(api):
    for method in ("GET", "PUT", "DELETE"):
        body = check_error(api.request(method, "/v1/face/id/987654321", json_body={"meta": "x"}), 404, "NOT_FOUND")
        assert body["param"] == "id" and body["value"] == 987654321
    check_error(api.get("/v1/face/id/abc"), 400, "BAD_PARAM", "id")
    check_error(api.get("/v1/face/id/0"), 400, "BAD_PARAM", "id")
    check_error(api.get(f"/v1/face/id/{1 << 64}"), 400, "BAD_PARAM", "id")
    check_error(api.get("/v1/faces/gallery/no_such_gallery"), 404, "NOT_FOUND", "gallery")
    check_error(api.get("/v1/meta/gallery/no_such_gallery"), 404, "NOT_FOUND", "gallery")
    check_error(api.request("DELETE", "/v1/galleries/no_such_gallery"), 404, "NOT_FOUND")
    check_error(api.get("/v1/faces/gallery/bad%20name"), 400, "BAD_PARAM", "gallery")
    check_error(api.post("/v1/galleries/bad%20name"), 400, "BAD_PARAM", "gallery")
    check_error(api.post("/v1/galleries/" + "x" * 49), 400, "BAD_PARAM", "gallery")
    check_error(api.post("/v1/galleries", json_body={}), 400, "BAD_PARAM", "name")
    check_error(api.post("/v1/galleries", json_body={"name": "a/b"}), 400, "BAD_PARAM", "name")
    check_error(api.request("DELETE", "/v1/galleries/default"), 400, "BAD_PARAM")
    assert api.post("/v1/galleries/twice").status == 201
    # A duplicate names the gallery, in the path or in the body, so that a client can tell which one.
    for version in ("v0", "v1"):
        again = check_error(api.post(f"/{version}/galleries/twice"), 409, "BAD_PARAM", "gallery")
        assert again["value"] == "twice" and "twice" in again["reason"]
        again = check_error(api.post(f"/{version}/galleries", json_body={"name": "twice"}), 409, "BAD_PARAM", "name")
        assert again["value"] == "twice"
    assert api.request("DELETE", "/v1/galleries/twice").status == 204


def test_identify_in_an_unknown_gallery(api, url):
    check_error(api.post("/v1/faces/gallery/nowhere/identify", json_body={"photo": url}), 404, "NOT_FOUND", "gallery")


def test_unusable_photos(api, photo_server, faces):
    text = api.post("/v1/detect", files={"photo": ("a.jpg", b"this is not a photo")})
    check_error(text, 400, "EXTRACTION_ERROR", "photo")
    truncated = (faces / "deepface/img1.jpg").read_bytes()[:3000]
    check_error(api.post("/v1/face", files={"photo": ("t.jpg", truncated)}), 400, "EXTRACTION_ERROR")
    check_error(api.post("/v1/detect", files={"photo": ("empty.jpg", b"")}), 400, "BAD_PARAM", "photo")
    check_error(api.post("/v1/verify", json_body={"photo1": photo_server.url("text.html"),
                                                  "photo2": photo_server.url("deepface/img1.jpg")}),
                400, "EXTRACTION_ERROR", "photo1")
    # A photo without a face: nothing to enroll.
    body = check_error(api.post("/v1/face", files={"photo": ("blank.png", blank_png())}), 400, "BAD_PARAM", "photo")
    assert "no face" in body["reason"]
    # ... while identify just finds no face to look for.
    assert api.post("/v1/identify", files={"photo": ("blank.png", blank_png())}).json == {"results": {}, "skipped": []}
    # A box with no face in it names the box.
    check_error(api.post("/v1/identify", files={"photo": ("blank.png", blank_png())},
                         form={"bbox": "[10, 10, 120, 120]"}), 400, "BAD_PARAM", "bbox")

    # Boxes are bounded: each costs an embedding, and copies of one box once held the extractor for as long as
    # the body had room for them (10 MB: about 400,000 boxes, hours of work).
    box = [588, 153, 968, 702]
    for path in ("/v1/identify", "/v1/face"):
        body = check_error(api.post(path, files={"photo": ("img2.jpg", (faces / "deepface/img2.jpg").read_bytes())},
                                    form={"bbox": json.dumps([box] * 257)}), 400, "BAD_PARAM", "bbox")
        assert "too many boxes: 257; at most 256" in body["reason"]


# A URL refused as given is the client's bad parameter; one that gives no photo is, as in the original, a photo
# that could not be processed.
@pytest.mark.parametrize(
    "path, code, why",
    [
        ("missing.jpg", "EXTRACTION_ERROR", "HTTP 404"),
        ("redirect/deepface/img1.jpg", "BAD_PARAM", "redirect"),
        ("big.jpg", "EXTRACTION_ERROR", "over the limit"),
        ("slow.jpg", "EXTRACTION_ERROR", "no answer"),
    ],
)
def test_photo_urls_that_cannot_be_fetched(api, photo_server, path, code, why):
    url = photo_server.url(path)
    body = check_error(api.post("/v1/detect", json_body={"photo": url}), 400, code, "photo")
    assert body["value"] == url and why in body["reason"]


def test_photo_urls_that_reach_nothing_and_urls_refused_as_given(api):
    unreachable = "http://127.0.0.1:9/a.jpg"  # nothing listens on port 9
    body = check_error(api.post("/v1/face", json_body={"photo": unreachable}), 400, "EXTRACTION_ERROR", "photo")
    assert body["value"] == unreachable and "cannot fetch" in body["reason"]
    private = "http://10.0.0.1/a.jpg"
    body = check_error(api.post("/v1/detect", json_body={"photo": private}), 400, "BAD_PARAM", "photo")
    assert body["value"] == private and "not a public address" in body["reason"]


def test_unknown_methods_and_paths(api):
    check_error(api.get("/v1/nothing/here"), 404, "NOT_FOUND")
    check_error(api.get("/v2/detect"), 404, "NOT_FOUND")
    reply = api.get("/v1/detect")
    check_error(reply, 405, "METHOD_NOT_ALLOWED")
    assert reply.header("Allow") == "POST"
    check_error(api.request("PATCH", "/v1/face/id/1"), 405, "METHOD_NOT_ALLOWED")
