"""The HTTP gateway's pure parts, without a cluster: parameter parsing, the error mapping, routing, the docs."""
from __future__ import annotations

import io
import json
import math

import grpc
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from findface_grpc.errors import PHOTO_UNAVAILABLE
from findface_grpc.rpc import DETAILS_KEY
from findface_grpc.v1 import common_pb2
from gateway_http import docs
from gateway_http.errors import LegacyError, from_grpc
from gateway_http.params import Params
from gateway_http.replies import detected_json, face_json, skipped_json
from gateway_http.routes import ROUTES, split_path

LIMIT = 10_000_000


def params(**builder) -> Params:
    return Params.from_request(Request(EnvironBuilder(method="POST", **builder).get_environ()), LIMIT)


def error_of(fn):
    with pytest.raises(LegacyError) as info:
        fn()
    return info.value


def test_sources_and_precedence():
    p = params(query_string={"n": "3", "meta": "from-query"}, json={"meta": "from-body", "photo": "http://h/a.jpg"})
    assert p.integer("n", 1, 10) == 3 and p.string("meta") == "from-body"
    p = params(data={"photo": (io.BytesIO(b"JPEG"), "a.jpg"), "meta": "m", "galleries": ["a", "b"]})
    assert p.photo("photo").content == b"JPEG" and p.galleries() == ["a", "b"] and p.string("meta") == "m"
    p = params(data={"photo": "http://h/a.jpg", "bbox": "[1, 2, 3, 4]"})
    assert p.photo("photo").url == "http://h/a.jpg" and p.boxes("bbox") == [(1.0, 2.0, 3.0, 4.0)]
    # JSON sent with curl -d and no Content-Type arrives labelled as a form.
    p = params(data='{"photo": "http://h/a.jpg", "n": 2}', content_type="application/x-www-form-urlencoded")
    assert p.integer("n", 1, 10) == 2


@pytest.mark.parametrize("value, expected", [
    ({"x1": 1, "y1": 2, "x2": 3, "y2": 4}, [(1, 2, 3, 4)]),
    ([1, 2, 3, 4], [(1, 2, 3, 4)]),
    ([[1, 2, 3, 4], {"x1": 5, "y1": 6, "x2": 7, "y2": 8}], [(1, 2, 3, 4), (5, 6, 7, 8)]),
    ([-10.5, -20, 3, 4], [(-10.5, -20, 3, 4)]),  # outside the photo is allowed
    (None, []),
    ("", []),
])
def test_boxes(value, expected):
    assert params(json={"bbox": value}).boxes("bbox") == expected


@pytest.mark.parametrize("value", [[1, 2, 3], [3, 2, 1, 4], {"x1": 1}, "nope", [1, 2, math.inf, 4], [True, 1, 2, 3],
                                   [[1, 2, 3]], 5])
def test_bad_boxes(value):
    e = error_of(lambda: params(json={"bbox": value}).boxes("bbox"))
    assert e.status == 400 and e.code == "BAD_PARAM" and e.param == "bbox"


@pytest.mark.parametrize("value, expected", [("strict", "strict"), ("MEDIUM", "medium"), ("none", "none"),
                                             ("0.75", 0.75), (0, 0.0), (1, 1.0), (None, None), ("", None)])
def test_thresholds(value, expected):
    assert params(json={"threshold": value}).threshold() == expected


@pytest.mark.parametrize("value", ["1.5", -0.1, "NaN", "high", True, [0.5]])
def test_bad_thresholds(value):
    assert error_of(lambda: params(json={"threshold": value}).threshold()).param == "threshold"


@pytest.mark.parametrize("value, expected", [(0.5, 0.5), ("0.25", 0.25), (" 1 ", 1.0), (0, 0.0), (1, 1.0),
                                             (None, None), ("", None)])
def test_fractions(value, expected):
    assert params(json={"min_quality": value}).fraction("min_quality") == expected
    if isinstance(value, str):
        assert params(data={"min_quality": value}).fraction("min_quality") == expected


@pytest.mark.parametrize("value", ["1.5", 1.01, -0.1, "NaN", "high", True, [0.5], {"q": 1}])
def test_bad_fractions(value):
    e = error_of(lambda: params(json={"min_quality": value}).fraction("min_quality"))
    assert (e.status, e.code, e.param, e.value) == (400, "BAD_PARAM", "min_quality", value)


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), ("1", True), (1, True), (False, False),
                                             ("false", False), ("", False), (None, False), (0, False)])
def test_flags(value, expected):
    assert params(json={"gender": value}).flag("gender") is expected


def test_gallery_changes():
    assert params(json={"galleries": {"add": ["a"]}}).gallery_change() == ("add", ["a"])
    assert params(data={"galleries": '{"set": ["a", "b"]}'}).gallery_change() == ("set", ["a", "b"])
    for bad in ({"add": ["a"], "del": ["b"]}, {"move": ["a"]}, ["a"], {"add": [1]}, {"add": ["bad name"]}):
        assert error_of(lambda: params(json={"galleries": bad}).gallery_change()).param == "galleries"


def test_malformed_and_oversized_bodies():
    for body in (b"{", b"[1]", b"\xff"):
        e = error_of(lambda: params(data=body, content_type="application/json"))
        assert (e.status, e.code) == (400, "MALFORMED_JSON")
    e = error_of(lambda: Params.from_request(
        Request(EnvironBuilder(method="POST", data=b"x" * 100, content_type="application/json").get_environ()), 50))
    assert (e.status, e.code) == (413, "BODY_TOO_LARGE")


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailing=()):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


S = grpc.StatusCode


@pytest.mark.parametrize("code, message, fields, status, legacy, param", [
    (S.UNAUTHENTICATED, "AUTH_FAILED: missing token", {}, 401, "AUTH_FAILED", None),
    (S.INVALID_ARGUMENT, "image: not a JPEG, PNG or WEBP image", {"image": ("photo", "x")}, 400, "EXTRACTION_ERROR",
     "photo"),
    (S.INVALID_ARGUMENT, "image2: image data is truncated or corrupt: x", {"image2": ("photo2", "u")}, 400,
     "EXTRACTION_ERROR", "photo2"),
    (S.INVALID_ARGUMENT, "image.url: the URL redirects (HTTP 302 to '/b.jpg')", {"image": ("photo", "u")}, 400,
     "BAD_PARAM", "photo"),
    (S.INVALID_ARGUMENT, "image: no face found in box [1, 2, 3, 4]", {"image": ("photo", "u"), "bbox": ("bbox", [1])},
     400, "BAD_PARAM", "bbox"),
    (S.INVALID_ARGUMENT, "image: no face found", {"image": ("photo", "u")}, 400, "BAD_PARAM", "photo"),
    (S.INVALID_ARGUMENT, "image1: face at [35, 222, 62, 259] is 27x37 px, under the minimum of 50 px for recognition",
     {"image1": ("photo1", "u")}, 400, "BAD_PARAM", "photo1"),
    (S.INVALID_ARGUMENT, "min_quality must be within [0, 1], got 1.5", {"min_quality": ("min_quality", 1.5)}, 400,
     "BAD_PARAM", "min_quality"),
    (S.INVALID_ARGUMENT, "n must be within 1..1000, got 0", {"n": ("n", 0)}, 400, "BAD_PARAM", "n"),
    (S.NOT_FOUND, "face 12 not found", {"face": ("id", 12)}, 404, "NOT_FOUND", "id"),
    (S.NOT_FOUND, "galleries: gallery 'x' not found", {"galleries": ("galleries", ["x"])}, 400, "BAD_PARAM",
     "galleries"),
    (S.ALREADY_EXISTS, "gallery 'x' already exists", {}, 409, "BAD_PARAM", "name"),
    (S.ALREADY_EXISTS, "gallery 'x' already exists", {"gallery": ("gallery", "x")}, 409, "BAD_PARAM", "gallery"),
    (S.FAILED_PRECONDITION, "the extractor changed its model while this request ran; retry", {}, 503,
     "SERVICE_UNAVAILABLE", None),
    (S.UNAVAILABLE, "extractor 127.0.0.1:1 unavailable", {}, 503, "SERVICE_UNAVAILABLE", None),
    (S.DEADLINE_EXCEEDED, "", {}, 503, "SERVICE_UNAVAILABLE", None),
    (S.RESOURCE_EXHAUSTED, "extractor busy", {}, 503, "SERVICE_UNAVAILABLE", None),
    (S.INTERNAL, "internal error: KeyError", {}, 500, "INTERNAL_ERROR", None),
])
def test_grpc_errors_map_to_legacy_errors(code, message, fields, status, legacy, param):
    e = from_grpc(FakeRpcError(code, message), fields)
    assert (e.status, e.code) == (status, legacy)
    if param is not None:
        assert e.param == param
    body = e.body()
    assert body["code"] == legacy and body["reason"]
    if legacy == "BAD_PARAM":
        assert "param" in body and "value" in body


def test_a_face_too_small_is_refused_in_the_extractors_words():
    message = "image: no face can be used: face at [35, 222, 62, 259] is 27x37 px, under the minimum of 50 px"
    e = from_grpc(FakeRpcError(S.INVALID_ARGUMENT, message), {"image": ("photo", "<uploaded file a.jpg>")})
    assert e.body() == {"code": "BAD_PARAM", "reason": message, "param": "photo", "value": "<uploaded file a.jpg>"}


def test_a_photo_url_that_gives_no_photo_is_an_extraction_error():
    fields = {"image": ("photo", "http://photos.example.com/a.jpg")}
    trailing = ((DETAILS_KEY, json.dumps({PHOTO_UNAVAILABLE: True})),)
    e = from_grpc(FakeRpcError(S.INVALID_ARGUMENT, "image.url: the server answered HTTP 404 Not Found", trailing),
                  fields)
    assert e.body() == {"code": "EXTRACTION_ERROR", "param": "photo", "value": "http://photos.example.com/a.jpg",
                        "reason": "cannot get the photo from its URL: the server answered HTTP 404 Not Found"}


def test_too_many_faces_lists_their_boxes():
    trailing = ((DETAILS_KEY, json.dumps({"faces": [[1.4, 2.6, 30, 40], [50, 60, 70, 80]]})),)
    e = from_grpc(FakeRpcError(S.FAILED_PRECONDITION, "image: 2 faces found", trailing), {})
    assert e.status == 400 and e.reason == "Too many faces: 2"
    assert e.body()["faces"] == [{"x1": 1, "y1": 3, "x2": 30, "y2": 40}, {"x1": 50, "y1": 60, "x2": 70, "y2": 80}]


@pytest.mark.parametrize("details, param", [
    ({"feature": "gender"}, "gender"),
    ({"attributes": ["age", "emotions"]}, "age"),
])
def test_an_attribute_refused_by_the_license_or_for_want_of_a_model_names_its_flag(details, param):
    message = "license: the license does not include the feature 'gender' (it has: age)"
    e = from_grpc(FakeRpcError(S.FAILED_PRECONDITION, message, ((DETAILS_KEY, json.dumps(details)),)), {})
    assert (e.status, e.code, e.body()["param"], e.reason) == (400, "BAD_PARAM", param, message)


@pytest.mark.parametrize("uri, path, parts", [
    ("/v1/face/meta/Sam%20Berry%2F2/?x=1", "/v1/face/meta/Sam%20Berry%2F2/", ["v1", "face", "meta", "Sam Berry/2"]),
    ("//v0//faces", "//v0//faces", ["v0", "faces"]),
    ("http://host:8000/v1/detect", "/v1/detect", ["v1", "detect"]),
    ("/face/meta/%D0%98%D0%B2%D0%B0%D0%BD", "/face/meta/%D0%98%D0%B2%D0%B0%D0%BD", ["face", "meta", "Иван"]),
])
def test_paths_are_unquoted_per_segment(uri, path, parts):
    assert split_path({"REQUEST_URI": uri}) == (path, parts)


def test_every_documented_path_is_routed():
    routed = {"/" + "/".join(s if not s.startswith("<") else "{" + s[1:-1] + "}" for s in r.segments)
              for r in ROUTES}
    spec = docs.openapi("v1")
    for path in spec["paths"]:
        assert path.removeprefix("/v1") in routed, path
    # and every route is documented, but for the docs' own file names.
    documented = {p.removeprefix("/v1") for p in spec["paths"]}
    assert routed - documented == {"/docs/{version}/{page}"}
    assert docs.html("v1", "/v1/docs/v1").startswith("<!DOCTYPE html>")


def test_config_from_file_and_environment(tmp_path):
    from findface_grpc import config as config_mod
    from findface_grpc.errors import ConfigError
    from gateway_http.config import HttpConfig

    path = tmp_path / "c.toml"
    path.write_text('[http]\nlisten = "0.0.0.0:8080"\nmax_body_mb = 20\n')
    cfg = config_mod.load(HttpConfig, "http", path, environ={"FINDFACE_HTTP_GATEWAY": "10.0.0.5:50051"})
    assert (cfg.listen, cfg.gateway, cfg.max_body_bytes) == ("0.0.0.0:8080", "10.0.0.5:50051", 20_000_000)
    assert HttpConfig().max_body_bytes == 10_000_000
    for bad in ({"gateway": "nohost"}, {"listen": "x"}, {"max_body_mb": 0}, {"threads": 0}, {"call_timeout_s": -1}):
        with pytest.raises(ConfigError):
            config_mod.load(HttpConfig, "http", None, environ={}, overrides=bad)


def test_faces_in_replies_carry_quality_orientation_and_why_they_were_skipped():
    face = common_pb2.DetectedFace(bbox=common_pb2.BoundingBox(x1=10.4, y1=20.6, x2=40, y2=60), quality=0.8234,
                                   orientation=6)
    box = {"x1": 10, "y1": 21, "x2": 40, "y2": 60}
    # float32 0.8234 is 0.8234000205993652 as a double; the JSON shows what was meant.
    assert detected_json(face) == {**box, "quality": 0.8234, "orientation": 6}
    skipped = [common_pb2.SkippedFace(face=face, reason=common_pb2.SKIP_REASON_TOO_SMALL, message="27x38 px"),
               common_pb2.SkippedFace(face=face, reason=common_pb2.SKIP_REASON_LOW_QUALITY, message="q"),
               common_pb2.SkippedFace(face=face, message="a newer reason")]
    assert skipped_json(skipped) == [
        {"bbox": box, "quality": 0.8234, "reason": "too_small", "message": "27x38 px"},
        {"bbox": box, "quality": 0.8234, "reason": "low_quality", "message": "q"},
        {"bbox": box, "quality": 0.8234, "reason": "unspecified", "message": "a newer reason"},
    ]
    assert skipped_json([]) == []
    record = face_json(common_pb2.FaceRecord(id=3, bbox=face.bbox, quality=0.5, orientation=1))
    assert (record["quality"], record["orientation"]) == (0.5, 1)
    imported = face_json(common_pb2.FaceRecord(id=4))
    assert (imported["quality"], imported["orientation"]) == (0, 0)


def test_timestamps_are_iso_8601_utc():
    from google.protobuf.timestamp_pb2 import Timestamp

    from gateway_http.replies import timestamp

    assert timestamp(Timestamp(seconds=1465816002, nanos=75754000)) == "2016-06-13T11:06:42.075754"
    assert timestamp(Timestamp()) == ""


def test_json_sent_as_a_form_with_ampersands_in_it():
    body = '{"photo": "http://h/a.jpg?size=big&x=1"}'
    p = params(data=body, content_type="application/x-www-form-urlencoded")
    assert p.photo("photo").url == "http://h/a.jpg?size=big&x=1"
    assert error_of(lambda: params(data="{oops", content_type="application/x-www-form-urlencoded")).code == "MALFORMED_JSON"
