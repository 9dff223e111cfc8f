"""Face quality, orientation, min_quality, try_rotations and skipped faces over real HTTP, on a real cluster.

The legacy shapes only gain keys: face objects and /detect faces get "quality" and "orientation", answers that
use faces get "skipped" ("skipped1", "skipped2" for /verify), always a list. The cluster's extractor is this
module's own, embedding faces from STRICT_MIN_FACE_SIZE (40 px) while /detect reports them from 20 px, so that a
face can be too small to use.
"""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import STRICT_MIN_FACE_SIZE, running_strict_extractor
from tests.helpers import face_collage
from tests.http.shapes import check

IMG1, IMG2 = "deepface/img1.jpg", "deepface/img2.jpg"
SIZE = re.compile(r"\d+x\d+ px")  # how the extractor names a face's size in its reasons
SKIPPED_KEYS = {"bbox", "quality", "reason", "message"}


def upload(data: bytes, name: str = "photo.jpg", field: str = "photo") -> dict:
    return {field: (name, data)}


def ok(reply):
    assert reply.status == 200, reply.json
    return reply.json


def box(face: dict) -> tuple[int, int, int, int]:
    return face["x1"], face["y1"], face["x2"], face["y2"]


def turned(data: bytes) -> bytes:
    """The photo turned 90 degrees counter-clockwise: its face then needs turning clockwise, EXIF orientation 6."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> str:
    """This module's extractor (the cluster fixture's), in place of the package's."""
    require_pack(PACK)
    with running_strict_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


@pytest.fixture(scope="module")
def enrolled(api, photos) -> dict:
    """img1 enrolled (by upload): its face object."""
    body = ok(api.post("/v1/face", form={"meta": "quality"}, files=upload(photos[IMG1][1])))
    assert body["skipped"] == []
    (face,) = body["results"]
    return face


@pytest.fixture(scope="module")
def collage(photos, enrolled) -> bytes:
    """img1's face twice: 160 px wide, and 26 px wide, too small to recognise."""
    return face_collage(photos[IMG1][1], box(enrolled), (160, 26))


def test_face_objects_carry_quality_and_orientation(api, enrolled, photos):
    check(enrolled, "face")
    assert isinstance(enrolled["quality"], float) and 0 < enrolled["quality"] <= 1
    assert enrolled["orientation"] == 1
    assert ok(api.get(f"/v1/face/id/{enrolled['id']}")) == enrolled
    assert ok(api.get("/v1/face/meta/quality"))["results"] == [enrolled]
    assert enrolled in ok(api.get("/v1/faces"))["results"]
    found = ok(api.post("/v1/identify", form={"threshold": "none"}, files=upload(photos[IMG2][1])))
    (matches,) = found["results"].values()
    assert matches[0]["face"] == enrolled and found["skipped"] == []


def test_detect_gives_each_faces_quality_and_orientation(api, photos, enrolled):
    body = ok(api.post("/v1/detect", files=upload(photos[IMG1][1])))
    check(body, "detect")
    assert body["orientation"] == 1
    (face,) = body["faces"]
    assert face["orientation"] == 1 and face["quality"] == pytest.approx(enrolled["quality"], abs=0.05)


@pytest.mark.parametrize("value", ["true", "1", "on"])
def test_try_rotations_finds_a_face_lying_on_its_side(api, photos, enrolled, value):
    lying = turned(photos[IMG2][1])
    body = ok(api.post("/v1/detect", form={"try_rotations": value}, files=upload(lying)))
    assert body["orientation"] == 6
    (face,) = body["faces"]
    assert face["orientation"] == 6 and 0 < face["quality"] <= 1
    found = ok(api.post("/v1/identify", form={"try_rotations": value, "threshold": "none"}, files=upload(lying)))
    ((key, matches),) = found["results"].items()
    assert key == f"[{face['x1']}, {face['y1']}, {face['x2']}, {face['y2']}]"
    assert matches[0]["face"]["id"] == enrolled["id"]
    same = ok(api.post("/v1/verify", form={"try_rotations": value},
                       files={**upload(lying, field="photo1"), **upload(photos[IMG1][1], "b.jpg", "photo2")}))
    assert same["verified"] is True and same["skipped1"] == same["skipped2"] == []


def test_try_rotations_as_json_and_off(api, photo_server):
    for value in (True, 1, False, 0, "false"):
        reply = api.post("/v1/detect", json_body={"photo": photo_server.url(IMG1), "try_rotations": value})
        assert ok(reply)["orientation"] == 1
    bad = api.post("/v1/detect", json_body={"photo": photo_server.url(IMG1), "try_rotations": "sideways"})
    assert bad.status == 400 and (bad.json["code"], bad.json["param"]) == ("BAD_PARAM", "try_rotations")


def test_enrolling_a_turned_photo_keeps_its_orientation(api, photos):
    body = ok(api.post("/v1/face", form={"meta": "lying", "try_rotations": "true"},
                       files=upload(turned(photos[IMG2][1]))))
    (face,) = body["results"]
    try:
        assert face["orientation"] == 6 and ok(api.get(f"/v1/face/id/{face['id']}"))["orientation"] == 6
    finally:
        assert api.request("DELETE", f"/v1/face/id/{face['id']}").status == 204


def test_min_quality(api, photos, enrolled):
    data = photos[IMG1][1]
    picky = api.post("/v1/face", form={"meta": "picky", "min_quality": "0.99"}, files=upload(data))
    assert picky.status == 400 and (picky.json["code"], picky.json["param"]) == ("BAD_PARAM", "photo"), picky.json
    assert ok(api.get("/v1/face/meta/picky"))["results"] == []
    body = ok(api.post("/v1/face", form={"meta": "picky", "min_quality": str(enrolled["quality"] / 2)},
                       files=upload(data)))
    try:
        assert body["results"][0]["quality"] == pytest.approx(enrolled["quality"], abs=1e-3)
    finally:
        assert api.request("DELETE", "/v1/face/meta/picky").status == 204
    for bad in ("abc", "1.5", "-0.1", "NaN", "[0.5]"):
        reply = api.post("/v1/face", form={"min_quality": bad}, files=upload(data))
        assert reply.status == 400, reply.json
        assert reply.json["code"] == "BAD_PARAM" and reply.json["param"] == "min_quality", reply.json
        assert reply.json["value"] == bad


def check_skipped(items: list, small: dict) -> None:
    """One face skipped as too small, where the collage's small face is."""
    (item,) = items
    assert set(item) == SKIPPED_KEYS and item["reason"] == "too_small" and SIZE.search(item["message"]), item
    assert 0 <= item["quality"] <= 1
    assert all(abs(item["bbox"][k] - small[k]) <= 3 for k in ("x1", "y1", "x2", "y2")), (item, small)


def test_skipped_faces_are_listed(api, collage, enrolled):
    detected = ok(api.post("/v1/detect", files=upload(collage)))["faces"]
    assert len(detected) == 2  # /detect shows the small face too
    small = min(detected, key=lambda f: f["x2"] - f["x1"])
    assert small["x2"] - small["x1"] < STRICT_MIN_FACE_SIZE

    body = ok(api.post("/v1/face", form={"meta": "collage", "mf_selector": "all"}, files=upload(collage)))
    try:
        (face,) = body["results"]
        assert face["x2"] - face["x1"] > 100
        check_skipped(body["skipped"], small)
    finally:
        assert api.request("DELETE", "/v1/face/meta/collage").status == 204

    found = ok(api.post("/v1/identify", form={"mf_selector": "all", "threshold": "none"}, files=upload(collage)))
    assert len(found["results"]) == 1
    check_skipped(found["skipped"], small)
    (matches,) = found["results"].values()
    assert matches[0]["face"]["id"] == enrolled["id"]
    # reject: a face too small to use is skipped, not counted as a second face; biggest looks at the big one only.
    rejecting = ok(api.post("/v1/identify", form={"mf_selector": "reject"}, files=upload(collage)))
    assert len(rejecting["results"]) == 1
    check_skipped(rejecting["skipped"], small)
    biggest = ok(api.post("/v1/identify", files=upload(collage)))
    assert len(biggest["results"]) == 1 and biggest["skipped"] == []

    pair = ok(api.post("/v1/verify", form={"mf_selector": "all"},
                       files={**upload(collage, "a.jpg", "photo1"), **upload(collage, "b.jpg", "photo2")}))
    assert len(pair["results"]) == 1 and pair["verified"] is True
    check_skipped(pair["skipped1"], small)
    check_skipped(pair["skipped2"], small)


def test_faces_under_min_quality_are_skipped_with_all(api, photos, enrolled):
    collage = face_collage(photos[IMG1][1], box(enrolled), (160, 45))
    big, small = sorted(ok(api.post("/v1/detect", files=upload(collage)))["faces"], key=lambda f: f["x1"] - f["x2"])
    assert big["quality"] - small["quality"] > 0.1, (big, small)
    between = round((big["quality"] + small["quality"]) / 2, 3)
    body = ok(api.post("/v1/face", form={"meta": "between", "mf_selector": "all", "min_quality": str(between)},
                       files=upload(collage)))
    try:
        (face,) = body["results"]
        assert face["quality"] >= between
        (item,) = body["skipped"]
        assert item["reason"] == "low_quality" and item["quality"] < between and "min_quality" in item["message"]
    finally:
        assert api.request("DELETE", "/v1/face/meta/between").status == 204


def test_a_photo_with_only_a_face_too_small_is_refused_with_the_reason(api, photos, enrolled):
    small = face_collage(photos[IMG1][1], box(enrolled), (26,))
    for path, files in (("/v1/face", upload(small)), ("/v1/identify", upload(small)),
                        ("/v1/verify", {**upload(small, "a.jpg", "photo1"), **upload(photos[IMG1][1], "b.jpg",
                                                                                      "photo2")})):
        reply = api.post(path, files=files)
        assert reply.status == 400, (path, reply.json)
        assert reply.json["code"] == "BAD_PARAM" and reply.json["param"] in ("photo", "photo1"), reply.json
        assert SIZE.search(reply.json["reason"]), reply.json
