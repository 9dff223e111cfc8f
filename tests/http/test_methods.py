"""Every legacy method over real HTTP, against a real two-shard cluster, on the labelled photos.

Every labelled photo is enrolled once per module (by upload, JSON photo URL, urlencoded form and query string in
turn), with its identity as meta; tests that enroll more remove what they add, or use their own gallery.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import pytest

from findface_grpc import __version__, launch
from findface_grpc.gateway.cells import CellMap
from tests.gateway.conftest import PACK
from tests.gateway.harness import START_TIMEOUT, address
from tests.http.harness import CELLS, HttpClient
from tests.http.shapes import check
from tests.license.conftest import LicenseServer

FACE_KEYS = {"id", "timestamp", "photo", "photo_hash", "thumbnail", "normalized", "x1", "y1", "x2", "y2", "meta",
             "galleries"}


def upload(photos, name):
    return {"photo": (name.rsplit("/", 1)[-1], photos[name][1])}


def enroll(api: HttpClient, photo_server, photos, name: str, how: str, **extra):
    """POST /face with the photo sent `how`: upload, json (URL), form (URL) or query (URL)."""
    url = photo_server.url(name)
    if how == "upload":
        reply = api.post("/v1/face", form=extra, files=upload(photos, name))
    elif how == "json":
        reply = api.post("/v1/face", json_body={"photo": url, **extra})
    elif how == "form":
        reply = api.post("/v1/face", form={"photo": url, **extra})
    else:
        reply = api.post("/v1/face", query={"photo": url, **extra})
    assert reply.status == 200, reply.json
    return reply.json["results"]


@pytest.fixture(scope="module")
def enrolled(api, photo_server, photos):
    """name -> the face enrolled from it; the ways of sending the photo rotate over the photos."""
    hows = ("upload", "json", "form", "query")
    out = {}
    for i, (name, (identity, _)) in enumerate(sorted(photos.items())):
        faces = enroll(api, photo_server, photos, name, hows[i % 4], meta=identity)
        assert len(faces) == 1
        out[name] = faces[0]
    return out


def identify(api, photos, name, path="/v1/identify", **params):
    reply = api.post(path, form={k: str(v) for k, v in params.items()}, files=upload(photos, name))
    assert reply.status == 200, reply.json
    return reply


def test_face_objects_have_every_field(enrolled, photo_server):
    for name, face in enrolled.items():
        assert FACE_KEYS <= set(face), face
        assert isinstance(face["id"], int) and face["id"] > 0
        assert all(isinstance(face[k], int) for k in ("x1", "y1", "x2", "y2"))
        assert face["x1"] < face["x2"] and face["y1"] < face["y2"]
        assert face["galleries"] == ["default"]
        datetime.fromisoformat(face["timestamp"])
        assert len(face["photo_hash"]) == 64
        assert face["thumbnail"] == "" and face["normalized"] == ""
    # The photo's source URL is kept when it came by URL; an upload has no URL (no photo store yet).
    sources = {face["photo"] for face in enrolled.values()}
    assert "" in sources and any(s.startswith(photo_server.base) for s in sources)


def test_detect_by_upload_and_url(api, photos, photo_server, faces):
    name = "deepface/img1.jpg"
    by_upload = api.post("/v1/detect", files=upload(photos, name))
    by_url = api.post("/v0/detect/", json_body={"photo": photo_server.url(name)})
    for reply in (by_upload, by_url):
        assert reply.status == 200, reply.json
        assert reply.json["orientation"] == 1
        (box,) = reply.json["faces"]
        assert set(box) == {"x1", "y1", "x2", "y2", "quality", "orientation"}
        assert all(isinstance(box[k], int) for k in ("x1", "y1", "x2", "y2", "orientation"))
    assert by_upload.json == by_url.json
    couple = api.post("/v1/detect", files={"photo": ("couple.jpg", (faces / "deepface/couple.jpg").read_bytes())})
    assert couple.status == 200 and len(couple.json["faces"]) == 2


def test_identify_finds_each_photo_itself_first(api, photos, enrolled):
    for name, (identity, _) in sorted(photos.items())[::3]:
        reply = identify(api, photos, name, n=3, threshold="none")
        assert reply.header("X-Live-Servers") == "2/2"
        (key, matches), = reply.json["results"].items()
        face = enrolled[name]
        assert key == f"[{face['x1']}, {face['y1']}, {face['x2']}, {face['y2']}]"
        assert len(matches) == 3
        assert matches[0]["face"]["id"] == face["id"] and matches[0]["confidence"] > 0.99
        assert matches[0]["face"] == face
        assert [m["confidence"] for m in matches] == sorted((m["confidence"] for m in matches), reverse=True)


def test_identify_threshold_and_n(api, photos, enrolled):
    name = "deepface/img1.jpg"
    identity = photos[name][0]
    same = sum(1 for i, _ in photos.values() if i == identity)
    # medium (the default): only this person's photos come back, however many are asked for.
    default = identify(api, photos, name, n=20).json["results"]
    matches = next(iter(default.values()))
    assert matches and all(m["face"]["meta"] == identity for m in matches)
    assert len(matches) <= same
    assert len(next(iter(identify(api, photos, name, n=20, threshold="low").json["results"].values()))) >= len(matches)
    # A number is a confidence on the same scale: 1.0 keeps at most the photo itself.
    exact = next(iter(identify(api, photos, name, n=5, threshold="0.9999").json["results"].values()))
    assert [m["face"]["id"] for m in exact] in ([], [enrolled[name]["id"]])
    # n defaults to 1.
    assert len(next(iter(identify(api, photos, name, threshold="none").json["results"].values()))) == 1


def test_identify_bbox_forms_agree(api, photos, enrolled, photo_server):
    name = "deepface/img2.jpg"
    f = enrolled[name]
    box = {k: f[k] for k in ("x1", "y1", "x2", "y2")}
    as_list = [f["x1"], f["y1"], f["x2"], f["y2"]]
    url = photo_server.url(name)
    replies = [
        api.post("/v1/identify", json_body={"photo": url, "bbox": box, "threshold": "none"}),
        api.post("/v1/identify", json_body={"photo": url, "bbox": as_list, "threshold": "none"}),
        api.post("/v1/identify", json_body={"photo": url, "bbox": [box], "threshold": "none"}),
        api.post("/v1/identify", json_body={"photo": url, **box, "threshold": "none"}),
        api.post("/v1/identify", query={"photo": url, "bbox": str(as_list), "threshold": "none"}),
        api.post("/v1/identify", form={"photo": url, "x1": f["x1"], "y1": f["y1"], "x2": f["x2"], "y2": f["y2"],
                                       "threshold": "none"}),
    ]
    for reply in replies:
        assert reply.status == 200, reply.json
        (matches,) = reply.json["results"].values()
        assert matches[0]["face"]["id"] == f["id"]


def test_identify_in_a_gallery(api, photos, photo_server):
    assert api.post("/v1/galleries/gal_ident").status == 201
    name, other = "deepface/img1.jpg", "deepface/img2.jpg"
    added = enroll(api, photo_server, photos, name, "json", meta="in-gallery", galleries=["gal_ident"])
    try:
        for path in ("/v1/faces/gallery/gal_ident/identify", "/v1/face/gallery/gal_ident/identify",
                     "/v0/faces/gallery/gal_ident/identify/"):
            (matches,) = identify(api, photos, other, path=path, n=10, threshold="none").json["results"].values()
            assert [m["face"]["id"] for m in matches] == [added[0]["id"]]
            assert matches[0]["face"]["galleries"] == ["default", "gal_ident"]
    finally:
        assert api.request("DELETE", "/v1/galleries/gal_ident").status == 204


def test_verify(api, photos, photo_server, faces):
    same1, same2 = "deepface/img1.jpg", "deepface/img2.jpg"
    other = next(n for n, (i, _) in sorted(photos.items()) if i != photos[same1][0])
    yes = api.post("/v1/verify", json_body={"photo1": photo_server.url(same1), "photo2": photo_server.url(same2)})
    assert yes.status == 200, yes.json
    assert yes.json["verified"] is True
    (pair,) = yes.json["results"]
    assert set(pair) == {"bbox1", "bbox2", "confidence", "verified"} and 0 < pair["confidence"] <= 1
    no = api.post("/v1/verify", files={"photo1": ("a.jpg", photos[same1][1]), "photo2": ("b.jpg", photos[other][1])})
    assert no.status == 200 and no.json["verified"] is False and no.json["results"][0]["verified"] is False
    assert no.json["results"][0]["confidence"] < pair["confidence"]
    # threshold none measures similarity only, as the original: no verdicts.
    measured = api.post("/v1/verify", json_body={"photo1": photo_server.url(same1), "photo2": photo_server.url(other),
                                                 "threshold": "none"})
    assert "verified" not in measured.json and "verified" not in measured.json["results"][0]
    # A caller's box in either form; every pair of faces with mf_selector all.
    b = pair["bbox2"]
    boxed = api.post("/v1/verify", json_body={"photo1": photo_server.url(same1), "photo2": photo_server.url(same2),
                                              "bbox2": [b["x1"], b["y1"], b["x2"], b["y2"]]})
    assert boxed.status == 200 and boxed.json["results"][0]["confidence"] == pytest.approx(pair["confidence"], abs=0.02)
    couple = photo_server.url("deepface/couple.jpg")
    every = api.post("/v1/verify", json_body={"photo1": couple, "photo2": couple, "mf_selector": "all"})
    assert every.status == 200 and len(every.json["results"]) == 4
    assert every.json["verified"] is True  # each face of photo 1 has itself in photo 2
    # Arrays of boxes, as the original documents bbox1 and bbox2: each box selects a face, every pair compared.
    found = api.post("/v1/detect", json_body={"photo": couple}).json["faces"]
    corners = [[f["x1"], f["y1"], f["x2"], f["y2"]] for f in found]
    assert len(corners) == 2
    arrays = api.post("/v1/verify", json_body={"photo1": couple, "photo2": couple, "bbox1": corners,
                                               "bbox2": [found[0]]})
    assert arrays.status == 200, arrays.json
    assert len(arrays.json["results"]) == 2 and arrays.json["verified"] is False  # one face of photo 1 unmatched
    assert {r["bbox2"]["x1"] for r in arrays.json["results"]} == {found[0]["x1"]}
    assert sorted(r["bbox1"]["x1"] for r in arrays.json["results"]) == sorted(c[0] for c in corners)
    listed = api.post("/v1/verify", form={"photo1": couple, "photo2": couple, "bbox1": json.dumps([corners[1]]),
                                          "bbox2": json.dumps(corners)})
    assert len(listed.json["results"]) == 2 and listed.json["verified"] is True
    top = listed.json["results"][0]
    assert (top["bbox1"]["x1"], top["bbox2"]["x1"]) == (found[1]["x1"], found[1]["x1"]) and top["confidence"] > 0.9


@pytest.mark.parametrize("path, body_photo", [("/v1/face", "photo"), ("/v1/identify", "photo"),
                                              ("/v1/verify", "photo1")])
def test_mf_selector_reject_lists_the_faces(api, photo_server, path, body_photo):
    couple = photo_server.url("deepface/couple.jpg")
    body = {body_photo: couple, "mf_selector": "reject"}
    if body_photo == "photo1":
        body["photo2"] = photo_server.url("deepface/img1.jpg")
    reply = api.post(path, json_body=body)
    assert reply.status == 400
    assert reply.json["reason"] == "Too many faces: 2"
    assert reply.json["code"] == "BAD_PARAM" and reply.json["param"] == "mf_selector"
    assert len(reply.json["faces"]) == 2
    assert all(set(f) == {"x1", "y1", "x2", "y2"} for f in reply.json["faces"])


def test_enroll_every_face_with_all_and_given_boxes(api, photo_server, faces):
    couple = photo_server.url("deepface/couple.jpg")
    both = api.post("/v1/face", json_body={"photo": couple, "mf_selector": "all", "meta": "couple"}).json["results"]
    biggest = api.post("/v1/face", json_body={"photo": couple, "meta": "couple"}).json["results"]
    b = both[1]
    boxed = api.post("/v1/face", json_body={"photo": couple, "meta": "couple",
                                            "bbox": [[b["x1"], b["y1"], b["x2"], b["y2"]]]}).json["results"]
    try:
        assert len(both) == 2 and len(biggest) == 1 and len(boxed) == 1
        area = lambda f: (f["x2"] - f["x1"]) * (f["y2"] - f["y1"])  # noqa: E731
        assert area(biggest[0]) == max(area(f) for f in both)
        assert abs(boxed[0]["x1"] - b["x1"]) < 20
    finally:
        assert api.request("DELETE", "/v1/face/meta/couple").status == 204
    assert api.get("/v1/face/meta/couple").json["results"] == []


def test_face_get_update_delete(api, photos, photo_server):
    (face,) = enroll(api, photo_server, photos, "deepface/img3.jpg", "upload", meta="crud", person_id="p-1",
                     cam_id="cam-7")
    fid = face["id"]
    assert face["person_id"] == "p-1" and face["cam_id"] == "cam-7"
    assert api.get(f"/v1/face/id/{fid}").json == face
    assert api.get(f"/v0/faces/id/{fid}/").json == [face]  # the Go client reads a list here
    assert api.post("/v1/galleries/crud_a").status == 201
    assert api.post("/v1/galleries/crud_b").status == 201
    try:
        put = api.request("PUT", f"/v1/face/id/{fid}", json_body={"meta": "Sam Berry #2", "galleries": {"add": ["crud_a"]}})
        assert put.status == 200 and put.json["meta"] == "Sam Berry #2"
        assert put.json["galleries"] == ["default", "crud_a"]
        assert put.json["id"] == fid and put.json["timestamp"] == face["timestamp"]
        put = api.request("PUT", f"/v1/faces/id/{fid}", form={"galleries": '{"set": ["crud_b"]}'})
        assert put.status == 200 and put.json["galleries"] == ["default", "crud_b"] and put.json["meta"] == "Sam Berry #2"
        put = api.request("PUT", f"/v1/face/id/{fid}", json_body={"galleries": {"del": ["crud_b"]}})
        assert put.json["galleries"] == ["default"]
        # The original's persons: a face joins a person by PUT (docs/persons.rst).
        put = api.request("PUT", f"/v1/face/id/{fid}", json_body={"person_id": "p-2"})
        assert put.status == 200 and put.json["person_id"] == "p-2" and put.json["meta"] == "Sam Berry #2"
        assert api.get(f"/v1/face/id/{fid}").json["person_id"] == "p-2"
        too_long = api.request("PUT", f"/v1/face/id/{fid}", json_body={"person_id": "p" * 257})
        assert too_long.status == 400 and too_long.json["param"] == "person_id"
        assert api.request("DELETE", f"/v1/face/id/{fid}").status == 204
        gone = api.get(f"/v1/face/id/{fid}")
        assert gone.status == 404 and gone.json["code"] == "NOT_FOUND"
        assert api.request("DELETE", f"/v1/faces/id/{fid}").status == 404
    finally:
        for g in ("crud_a", "crud_b"):
            api.request("DELETE", f"/v1/galleries/{g}")


def test_faces_pages_follow_next_page(api, enrolled):
    first = api.get("/v1/faces", query={"limit": 7})
    assert first.status == 200
    assert first.json["prev_page"] is None and first.json["next_page"].startswith("/v1/faces?max_id=")
    seen, page = [], first.json
    while True:
        seen += [f["id"] for f in page["results"]]
        if page["next_page"] is None:
            break
        assert "limit=7" in page["next_page"]
        reply = api.get(page["next_page"])
        assert reply.status == 200, reply.json
        page = reply.json
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert {f["id"] for f in enrolled.values()} <= set(seen)
    default = api.get("/v1/faces/").json  # 100 a page by default
    assert default["results"][0]["id"] == seen[0] and len(default["results"]) == min(100, len(seen))
    assert api.get("/v0/faces/gallery/default", query={"limit": 3}).json["next_page"].startswith(
        "/v0/faces/gallery/default?max_id=")


def walk_pages(api, path: str, limit: int) -> list[tuple[str, list[int], dict]]:
    """Follow next_page from `path` to the last page, then prev_page back to the first: (link, ids, body) per page
    going back, which must be the pages going forward in reverse."""
    link, forward = f"{path}?limit={limit}", []
    while link is not None:
        reply = api.get(link)
        assert reply.status == 200, reply.json
        forward.append((link, [f["id"] for f in reply.json["results"]], reply.json))
        link = reply.json["next_page"]
    back, link = [], forward[-1][2]["prev_page"]
    back.append(forward[-1])
    while link is not None:
        assert link.startswith(f"{path}?") and f"limit={limit}" in link
        reply = api.get(link)
        assert reply.status == 200, reply.json
        back.append((link, [f["id"] for f in reply.json["results"]], reply.json))
        link = reply.json["prev_page"]
    assert [ids for _, ids, _ in back] == [ids for _, ids, _ in reversed(forward)]
    # The links back are the very links that led forward: the first page's without max_id.
    assert [link for link, _, _ in back] == [link for link, _, _ in reversed(forward)]
    assert forward[0][2]["prev_page"] is None and "max_id" not in forward[0][0]
    return forward


def test_faces_pages_follow_prev_page_back(api, photos, enrolled):
    pages = walk_pages(api, "/v1/faces/gallery/default", 7)
    assert len(pages) >= 3
    ids = [i for _, page, _ in pages for i in page]
    assert ids == sorted(ids, reverse=True) and {f["id"] for f in enrolled.values()} <= set(ids)
    assert all(len(page) == 7 for _, page, _ in pages[:-1])
    # An odd max_id (not a page boundary): the page before holds the faces just newer, and from one with fewer
    # than a page of newer faces, the way back is the first page.
    middle = ids[10]
    reply = api.get("/v0/faces", query={"max_id": middle, "limit": 4}).json
    assert [f["id"] for f in reply["results"]] == ids[11:15]
    back = api.get(reply["prev_page"]).json
    assert [f["id"] for f in back["results"]] == ids[7:11]
    back = api.get(back["prev_page"]).json
    assert [f["id"] for f in back["results"]] == ids[3:7]
    back = api.get(back["prev_page"]).json
    assert [f["id"] for f in back["results"]] == ids[:4] and back["prev_page"] is None
    reply = api.get("/v0/faces", query={"max_id": ids[2], "limit": 4}).json
    assert reply["prev_page"] == "/v0/faces?limit=4"
    # Nothing newer than max_id: this is the first page.
    assert api.get("/v1/faces", query={"max_id": ids[0] + 1000, "limit": 4}).json["prev_page"] is None
    # The same with a meta filter: only faces with that meta count.
    identity = max(Counter(i for i, _ in photos.values()).items(), key=lambda kv: kv[1])[0]
    pages = walk_pages(api, f"/v1/face/meta/{identity}", 3)
    expected = sorted((f["id"] for n, f in enrolled.items() if photos[n][0] == identity), reverse=True)
    assert [i for _, page, _ in pages for i in page] == expected and len(pages) >= 3
    assert "prev_page" not in api.get(f"/v1/face/meta/{identity}").json  # every face at once: no pages


def test_faces_by_meta_and_meta_counts(api, photos, enrolled, photo_server):
    identity = photos["deepface/img1.jpg"][0]
    expected = sorted((f["id"] for n, f in enrolled.items() if photos[n][0] == identity), reverse=True)
    for path in (f"/v1/face/meta/{identity}", f"/v0/faces/meta/{identity}/",
                 f"/v1/face/gallery/default/meta/{identity}", f"/v1/faces/gallery/default/meta/{identity}"):
        reply = api.get(path)
        assert reply.status == 200, reply.json
        assert [f["id"] for f in reply.json["results"]] == expected
    # Meta strings with spaces and slashes travel URL-encoded in the path (%20, %2F).
    (face,) = enroll(api, photo_server, photos, "deepface/img5.jpg", "json", meta="Sam Berry/2")
    try:
        assert [f["id"] for f in api.get("/v1/face/meta/Sam%20Berry%2F2").json["results"]] == [face["id"]]
    finally:
        api.request("DELETE", f"/v1/face/id/{face['id']}")
    counts = {r["meta"]: r for r in api.get("/v1/meta").json["results"]}
    assert counts[identity]["count"] == len(expected)
    assert counts[identity]["face"]["id"] == expected[0] and counts[identity]["face"]["meta"] == identity
    assert api.get("/v0/meta/gallery/default/").json["results"] == api.get("/v0/meta").json["results"]


def test_galleries_create_list_delete(api, photos, photo_server):
    assert api.post("/v1/galleries/gal_one").json == {"name": "gal_one"}
    created = api.post("/v1/galleries", json_body={"name": "gal_two"})
    assert created.status == 201 and created.json == {"name": "gal_two"}
    # The documented shape, a list of names, on both versions; face counts only when asked for.
    for version in ("v0", "v1"):
        names = api.get(f"/{version}/galleries").json["results"]
        assert {"default", "gal_one", "gal_two"} <= set(names) and all(isinstance(n, str) for n in names)
    for query in ("counts=true", "counts=1"):
        counted = api.get(f"/v0/galleries?{query}").json
        check(counted, "gallery_counts")
        listed = {g["name"]: g for g in counted["results"]}
        assert listed["gal_one"]["face_count"] == 0
    datetime.fromisoformat(listed["gal_one"]["timestamp"])
    assert api.get("/v1/galleries?counts=false").json["results"] == names
    assert api.get("/v1/galleries?counts=maybe").json["param"] == "counts"
    (face,) = enroll(api, photo_server, photos, "deepface/img4.jpg", "upload", galleries='["gal_one", "gal_two"]')
    assert face["galleries"] == ["default", "gal_one", "gal_two"]
    counted = api.get("/v1/galleries?counts=true").json["results"]
    assert {g["name"]: g["face_count"] for g in counted}["gal_one"] == 1
    # Deleting a gallery deletes its faces, everywhere.
    assert api.request("DELETE", "/v1/galleries/gal_one/").status == 204
    assert api.get(f"/v1/face/id/{face['id']}").status == 404
    assert api.request("DELETE", "/v1/galleries/gal_two").status == 204
    assert not {"gal_one", "gal_two"} & set(api.get("/v1/galleries").json["results"])


def test_galleries_from_a_multipart_form(api, photos):
    assert api.post("/v1/galleries/form_a").status == 201
    assert api.post("/v1/galleries/form_b").status == 201
    try:
        # curl -F galleries=form_a -F galleries=form_b: a repeated field; one -F: a single name.
        reply = api.post("/v1/face", form={"galleries": ["form_a", "form_b"], "meta": "forms"},
                         files=upload(photos, "deepface/img6.jpg"))
        assert reply.status == 200, reply.json
        assert reply.json["results"][0]["galleries"] == ["default", "form_a", "form_b"]
        reply = api.post("/v1/face", form={"galleries": "form_a", "meta": "forms"},
                         files=upload(photos, "deepface/img6.jpg"))
        assert reply.json["results"][0]["galleries"] == ["default", "form_a"]
    finally:
        api.request("DELETE", "/v1/galleries/form_a")
        api.request("DELETE", "/v1/galleries/form_b")


def test_v1_attribute_flags_answer_in_the_documented_shapes(api, photo_server):
    """img1 is a smiling woman, img30 a man with a straight face (tests/data)."""
    woman, man = photo_server.url("deepface/img1.jpg"), photo_server.url("deepface/img30.jpg")
    everything = {"gender": True, "age": True, "emotions": True}
    (face,) = api.post("/v1/detect", json_body={"photo": woman, **everything}).json["faces"]
    assert face["gender"] == "female" and isinstance(face["age"], int) and 20 <= face["age"] <= 60
    assert face["emotions"][0] == "happy"
    (face,) = api.post("/v1/detect", json_body={"photo": man, "emotions": True}).json["faces"]
    assert face["emotions"][0] == "neutral" and "gender" not in face and "age" not in face
    # Off is nothing (the Go client always sends them), and v0 has no such flags at all.
    (face,) = api.post("/v1/detect", json_body={"photo": woman, "gender": False, "age": False,
                                                "emotions": False}).json["faces"]
    assert not {"gender", "age", "emotions"} & set(face)
    (face,) = api.post("/v0/detect", json_body={"photo": woman, **everything}).json["faces"]
    assert not {"gender", "age", "emotions"} & set(face)
    # /face: the enrolled face object carries them (not stored: GET gives the plain object).
    created = api.post("/v1/face", form={"photo": man, "gender": "true", "age": "true"}).json["results"][0]
    assert created["gender"] == "male" and isinstance(created["age"], int) and "emotions" not in created
    stored = api.get(f"/v1/face/id/{created['id']}").json
    assert "gender" not in stored
    # /identify: the query faces' attributes, keyed as the results are.
    found = api.post("/v1/identify", json_body={"photo": man, "gender": True}).json
    assert list(found["attributes"]) == list(found["results"])
    assert list(found["attributes"].values()) == [{"gender": "male"}]
    assert "attributes" not in api.post("/v1/identify", json_body={"photo": man}).json
    api.request("DELETE", f"/v1/face/id/{created['id']}")


def test_unversioned_paths_are_v1(api, photo_server, enrolled):
    url = photo_server.url("deepface/img1.jpg")
    assert api.post("/detect", json_body={"photo": url}).status == 200
    assert "age" in api.post("/detect", json_body={"photo": url, "age": True}).json["faces"][0]
    assert api.get("/galleries").status == 200
    face = next(iter(enrolled.values()))
    assert api.get(f"/faces/id/{face['id']}").json == [face]


def test_docs_without_a_token(api):
    index = api.get("/docs", token=False)
    assert index.status == 200 and index.json["results"] == ["v0", "v1"]
    spec = api.get("/v1/docs/v1", token=False)
    assert spec.status == 200 and spec.json["openapi"].startswith("3.")
    paths = spec.json["paths"]
    for path in ("/v1/detect", "/v1/verify", "/v1/identify", "/v1/faces/gallery/{gallery}/identify", "/v1/face",
                 "/v1/face/id/{id}", "/v1/faces", "/v1/meta", "/v1/galleries", "/v1/galleries/{gallery}", "/v1/docs"):
        assert path in paths, path
    assert "gender" in str(paths["/v1/detect"])
    v0 = api.get("/v0/docs/v0/openapi.json", token=False).json
    assert "/v0/detect" in v0["paths"] and "gender" not in str(v0["paths"]["/v0/detect"])
    page = api.get("/v1/docs/v1/overview.html", token=False)
    assert page.status == 200 and page.header("Content-Type").startswith("text/html")
    assert b"/identify" in page.raw and b"X-Live-Servers" in page.raw
    browser = api.get("/docs/v1", token=False, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.header("Content-Type").startswith("text/html")
    assert api.get("/docs", token=False, headers={"Accept": "text/html"}).raw.startswith(b"<!DOCTYPE html>")
    assert api.get("/docs/v7", token=False).status == 404


STATUS_KEYS = {"shards", "extractor", "faces", "galleries", "license", "launcher"}
SHARD_KEYS = {"index", "address", "live", "error", "shard_id", "face_count", "galleries", "model_id", "dim",
              "index_bytes", "fast_indexes"}
EXTRACTOR_KEYS = {"address", "live", "error", "model_pack", "detector_model_id", "embedder_model_id",
                  "descriptor_dim", "version"}


def test_status_counts_each_shards_faces_per_gallery(api, cluster, photos, photo_server, enrolled):
    assert api.post("/v1/galleries/status_gal").status == 201
    try:
        added = [enroll(api, photo_server, photos, name, "json", meta="status", galleries=["status_gal"])[0]
                 for name in sorted(photos)[:5]]
        reply = api.get("/v1/status")
        assert reply.status == 200, reply.json
        body = reply.json
        assert set(body) == STATUS_KEYS
        extractor = body["extractor"]
        assert set(extractor) == EXTRACTOR_KEYS
        assert extractor["live"] and extractor["error"] == "" and extractor["address"] == cluster.extractor
        assert extractor["model_pack"] == PACK and extractor["version"] == __version__
        assert extractor["detector_model_id"] and extractor["embedder_model_id"] and extractor["descriptor_dim"] > 0
        shards = body["shards"]
        assert (shards["live"], shards["total"]) == (2, 2)
        items = shards["items"]
        assert [s["index"] for s in items] == [0, 1]
        assert [s["address"] for s in items] == cluster.shards.addresses
        assert [s["shard_id"] for s in items] == ["shard-0", "shard-1"]
        for s in items:
            assert set(s) == SHARD_KEYS
            assert s["live"] and s["error"] == ""
            assert (s["model_id"], s["dim"]) == (extractor["embedder_model_id"], extractor["descriptor_dim"])
            assert s["index_bytes"] > 0 and s["galleries"]["default"] == s["face_count"]
            assert s["fast_indexes"] == []  # far below fast_index_min_faces, and none built by hand
        # Each face lives on the shard its id's cell maps to: the new gallery's count on each shard is exact.
        owner = CellMap.from_config(CELLS, 2).shard_of
        placed = Counter(owner(face["id"]) for face in added)
        assert [s["galleries"].get("status_gal", 0) for s in items] == [placed[0], placed[1]]
        # And each gallery's count is its faces summed over the shards that answered (all of them here).
        listed = {g["name"]: g["face_count"] for g in api.get("/v1/galleries?counts=true").json["results"]}
        assert listed["status_gal"] == len(added) and listed["default"] >= len(enrolled) + len(added)
        for name, count in listed.items():
            assert sum(s["galleries"].get(name, 0) for s in items) == count, name
        assert body["faces"] == listed["default"] == sum(s["face_count"] for s in items)
        assert body["galleries"] == len(listed)
        # No license server and no launcher configured for this HTTP gateway.
        assert body["license"] is None and body["launcher"] is None
        # The same page without a version and under v0.
        for path in ("/status", "/v0/status/"):
            again = api.get(path)
            assert again.status == 200 and again.json["faces"] == body["faces"], path
    finally:
        assert api.request("DELETE", "/v1/galleries/status_gal").status == 204
    after = api.get("/v1/status").json
    assert after["faces"] == body["faces"] - len(added)
    assert all("status_gal" not in s["galleries"] or not s["galleries"]["status_gal"] for s in after["shards"]["items"])


def test_status_needs_a_token(api):
    for token in (False, "Token not-a-token"):
        reply = api.get("/v1/status", token=token)
        assert reply.status == 401 and reply.json["code"] == "AUTH_FAILED", reply.json
    assert api.request("POST", "/v1/status").status == 405


def test_status_shows_the_license_and_answers_without_it(cluster, tmp_path):
    """An HTTP gateway with a license server: /status carries what /license.json shows, and an error in its place
    once the license server is gone."""
    lic = LicenseServer(tmp_path / "license")
    lic.base.mkdir()
    lic.start()
    listen = address(launch.free_port())
    http = launch.python_server("http-status", "gateway_http.server",
                                ["--listen", listen, "--gateway", cluster.gateway_address,
                                 "--license-server", lic.address], tmp_path / "http-status.log")
    client = HttpClient(listen, cluster.token)
    try:
        http.start()
        launch.wait_http_ok(listen, "/health", START_TIMEOUT, http)
        status = client.get("/v1/status")
        assert status.status == 200, status.json
        page = client.get("/license.json", token=False).json
        changing = ("time", "last_updated")
        assert {k: v for k, v in status.json["license"].items() if k not in changing} == \
            {k: v for k, v in page.items() if k not in changing}
        assert status.json["license"]["type"] == "unlicensed" and status.json["license"]["valid"]["value"]
        lic.stop()
        down = client.get("/v1/status")
        assert down.status == 200, down.json
        assert down.json["license"] == {"error": f"license server {lic.address} unreachable: UNAVAILABLE"}
        assert down.json["shards"]["live"] == 2
        # Without a token the license server is not asked: the gateway refuses first.
        assert client.get("/v1/status", token=False).status == 401
    finally:
        client.close()
        http.stop()
        lic.stop()
