"""The original's findface-extraction-api on the HTTP gateway: its documents' requests, a real cluster's answers."""
from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from gateway_http import extraction
from gateway_http.errors import LegacyError

EVERYTHING = {"detector": "nnd", "need_facen": True, "need_gender": True, "need_age": True, "need_emotions": True,
              "need_normalized": True}


def facen(face: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(face["facen"]), "<f4")


def test_a_json_request_with_everything(api, photo_server):
    """img1 is a smiling woman (tests/data); the documents' example request, with the photo as a URL."""
    reply = api.post("/", json_body={"requests": [{"image": photo_server.url("deepface/img1.jpg"), **EVERYTHING}]})
    assert reply.status == 200, reply.json
    ((face,),) = [r["faces"] for r in reply.json["responses"]]
    assert set(face["bbox"]) == {"left", "top", "right", "bottom"} and face["bbox"]["right"] > face["bbox"]["left"]
    assert 0.5 < face["detection_score"] <= 1
    vector = facen(face)
    assert vector.shape == (512,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4
    assert face["gender"]["gender"] == "FEMALE" and 0.5 < face["gender"]["score"] <= 1
    assert 20 < face["age"] < 60
    names = [e["emotion"] for e in face["emotions"]]
    assert names[0] == "happy" and sorted(names) == sorted(["neutral", "happy", "sad", "angry", "fear", "disgust",
                                                              "surprise"])
    assert base64.b64decode(face["normalized"]).startswith(b"\x89PNG")


def test_multipart_as_the_documents_curl_sends_it(api, photos):
    """curl -F sample=@sample.jpg -F 'request={"requests": [{"image": "multipart:sample", ...}]}': two photos of
    one person and one of another, each its own request; the facens say who is who."""
    parts = {name: (name, photos[f"deepface/{name}.jpg"][1]) for name in ("img1", "img2", "img30")}
    request = {"requests": [{"image": f"multipart:{name}", "need_facen": True, "need_gender": True}
                            for name in parts]}
    reply = api.post("/extraction-api", form={"request": json.dumps(request)}, files=parts)
    assert reply.status == 200, reply.json
    first, second, other = (r["faces"][0] for r in reply.json["responses"])
    assert [f["gender"]["gender"] for f in (first, second, other)] == ["FEMALE", "FEMALE", "MALE"]
    assert "age" not in first and "emotions" not in first and "normalized" not in first
    assert float(facen(first) @ facen(second)) > float(facen(first) @ facen(other)) + 0.2


def test_one_bad_request_does_not_fail_the_others(api, photo_server):
    reply = api.post("/", json_body={"requests": [
        {"image": "multipart:absent"},
        {"image": photo_server.url("deepface/img30.jpg"), "detector": "prenormalized"},
        {"image": photo_server.url("deepface/img30.jpg"), "need_emotions": True},
        {"image": photo_server.url("deepface/img30.jpg"), "roi": {"left": 0, "top": 0, "right": 5, "bottom": 5}},
    ]})
    assert reply.status == 200
    missing, prenormalized, fine, outside = reply.json["responses"]
    assert missing["faces"] == [] and missing["error"]["code"] == "BAD_PARAM" and "absent" in missing["error"]["desc"]
    assert prenormalized["error"]["code"] == "BAD_PARAM"
    assert "error" not in fine and fine["faces"][0]["emotions"][0]["emotion"] == "neutral"
    assert "facen" not in fine["faces"][0]
    assert outside == {"faces": []}


def test_undecodable_photo_and_no_token(api, cluster):
    reply = api.post("/", form={"request": json.dumps({"requests": [{"image": "multipart:p"}]})},
                     files={"p": ("p.jpg", b"not a photo")})
    assert reply.status == 200 and reply.json["responses"][0]["error"]["code"] == "IMAGE_DECODING_FAILED"
    assert api.post("/", json_body={"requests": []}).json["param"] == "requests"
    assert api.post("/", json_body={"requests": [{"image": "x"}]}, token=False).status == 401


def fake_upstream(unlicensed: bool, features: list[str]):
    asked = []

    def license_status(timeout):
        asked.append(timeout)
        return SimpleNamespace(unlicensed_mode=unlicensed, features=features)

    upstream = SimpleNamespace(license_channel=object(), config=SimpleNamespace(call_timeout_s=60.0),
                               feature_seen={}, license_status=license_status)
    return upstream, asked


def test_the_license_feature_gates_it():
    allowed, asked = fake_upstream(False, ["gender", "extraction-api"])
    extraction._check_license(allowed)
    extraction._check_license(allowed)
    assert len(asked) == 1  # the answer stands a few seconds
    extraction._check_license(fake_upstream(True, [])[0])  # unlicensed mode allows every feature
    refused, _ = fake_upstream(False, ["gender"])
    with pytest.raises(LegacyError) as caught:
        extraction._check_license(refused)
    assert caught.value.status == 403
    assert caught.value.reason == "license: the license does not include the feature 'extraction-api' (it has: gender)"
    refused.feature_seen["extraction-api"] = (time.monotonic() - 10, False, "gender")
    refused.license_status = lambda timeout: SimpleNamespace(unlicensed_mode=False, features=["extraction-api"])
    extraction._check_license(refused)  # a renewed license is seen once the last answer is stale
