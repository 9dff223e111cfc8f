"""The legacy video methods on /v0 and /v1: /camera, /face and /identify from a camera (cam_id, timestamp),
/persons, /person/history/id/<id>, /history/search with paging, the screenshot, and GET /events (long poll)."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.http.harness import HttpClient

VERSIONS = ("v0", "v1")
URL = "rtsp://cam:hunter2@192.0.2.7/live"


@pytest.mark.parametrize("version", VERSIONS)
def test_camera_crud(alice, version):
    made = alice.http.post(f"/{version}/camera/", json_body={
        "meta": "test", "url": URL, "detector": "detec1", "rot": [120, 120, 35, 50]})
    assert made.status == 201, made.raw
    camera = made.json
    assert (camera["meta"], camera["url"], camera["detector"], camera["rot"]) == ("test", URL, "detec1",
                                                                                   [120, 120, 35, 50])
    assert "roi" not in camera and "url_hidden" not in camera
    path = f"/{version}/camera/{camera['id']}"
    try:
        assert alice.http.get(path).json == camera
        assert camera["id"] in {c["id"] for c in alice.http.get(f"/{version}/camera").json}
        only = alice.http.get(f"/{version}/camera", query={"detector": "detec1"}).json
        assert {c["detector"] for c in only} == {"detec1"}
        # The documented example #2: rot and roi given; meta and url absent, so kept.
        put = alice.http.request("PUT", path, json_body={"rot": [120, 120, 35, 50], "roi": [100, 100, 40, 50]})
        assert put.status == 200 and put.json["roi"] == [100, 100, 40, 50] and put.json["meta"] == "test"
        # Example #1: meta and url; rot and roi absent, so removed.
        put = alice.http.request("PUT", path, json_body={"meta": "newinfo", "url": URL + "2"})
        assert put.json["meta"] == "newinfo" and put.json["url"] == URL + "2"
        assert "rot" not in put.json and "roi" not in put.json
    finally:
        deleted = alice.http.request("DELETE", path)
    assert deleted.status == 204 and deleted.raw == b""
    gone = alice.http.get(path)
    assert gone.status == 404 and gone.json["code"] == "NOT_FOUND"


def test_camera_url_hidden_from_other_tokens(alice, bob):
    camera = alice.http.post("/v1/camera", json_body={"url": URL, "meta": "door"}).json
    try:
        theirs = bob.http.get(f"/v1/camera/{camera['id']}").json
        assert theirs["url"] == "" and theirs["url_hidden"] is True
        listed = {c["id"]: c for c in bob.http.get("/v1/camera").json}
        assert listed[camera["id"]]["url"] == ""
    finally:
        alice.http.request("DELETE", f"/v1/camera/{camera['id']}")


@pytest.mark.parametrize("body, param", [
    ({"rot": [0, 10, 0, 0]}, "rot"),
    ({"rot": [10, 10, 0]}, "rot"),
    ({"roi": [10, 10, -1, 0]}, "roi"),
    ({"roi": "wide"}, "roi"),
    ({"url": "x" * 3000}, "url"),
    ({"meta": 5.5}, "meta"),
])
def test_bad_camera_is_bad_param(alice, body, param):
    reply = alice.http.post("/v1/camera", json_body=body)
    assert reply.status == 400 and reply.json["code"] == "BAD_PARAM" and reply.json["param"] == param, reply.json


def test_camera_needs_token(cluster):
    anonymous = HttpClient(cluster.http_address, None)
    try:
        assert anonymous.get("/v1/camera").status == 401
    finally:
        anonymous.close()


@pytest.fixture(scope="module")
def sightings(alice, people):
    """A camera; person03 posted twice and person04 once to /face with its cam_id and frame timestamps."""
    camera = alice.http.post("/v0/camera", json_body={"meta": "lobby"}).json["id"]
    posted = []
    for i, (identity, k) in enumerate((("person03", 0), ("person03", 1), ("person04", 0))):
        reply = alice.http.post("/v0/face", files={"photo": ("f.jpg", people[identity][k])},
                                form={"cam_id": camera, "timestamp": f"2024-05-0{i + 1}T10:00:00"})
        assert reply.status == 200, reply.raw
        posted.append(reply.json["results"][0])
    yield camera, posted
    alice.http.request("DELETE", f"/v0/camera/{camera}")


def test_face_from_camera_gets_person_and_history(alice, sightings):
    camera, (p1, p2, other) = sightings
    assert p1["cam_id"] == camera and p1["person_id"] == p2["person_id"] != other["person_id"]
    for version in VERSIONS:
        body = alice.http.post(f"/{version}/history/search", json_body={"person_id": p1["person_id"]}).json
        assert [e["face_id"] for e in body["results"]] == [p2["id"], p1["id"]]
        newest = body["results"][0]
        assert newest["cam_id"] == camera and newest["timestamp"].startswith("2024-05-02T10:00:00")
        assert newest["match"]["face"]["id"] == p1["id"] and 0 < newest["match"]["confidence"] <= 1
        shot = alice.http.get(newest["screenshot"])
        assert shot.status == 200 and shot.header("content-type") == "image/jpeg" and shot.raw[:2] == b"\xff\xd8"
        person = alice.http.get(f"/{version}/person/history/id/{p1['person_id']}").json
        assert [e["id"] for e in person["results"]] == [e["id"] for e in body["results"]]


def test_history_search_paging_and_filters(alice, sightings):
    camera, posted = sightings
    first = alice.http.post("/v1/history/search", query={"limit": 2}, json_body={"cam_ids": [camera]}).json
    assert len(first["results"]) == 2 and first["prev_page"] is None and "max_id=" in first["next_page"]
    second = alice.http.post(first["next_page"], json_body={"cam_ids": [camera]}).json
    assert [e["face_id"] for e in first["results"] + second["results"]] == [f["id"] for f in reversed(posted)]
    assert second["next_page"] is None and second["prev_page"] is not None
    window = alice.http.post("/v1/history/search", json_body={
        "cam_ids": [camera], "start": "2024-05-02T00:00:00", "end": "2024-05-03T00:00:00"}).json
    assert [e["face_id"] for e in window["results"]] == [posted[1]["id"]]
    bad = alice.http.post("/v1/history/search", json_body={"start": "yesterday"})
    assert bad.status == 400 and bad.json["param"] == "start"
    backwards = alice.http.post("/v1/history/search", json_body={"start": "2024-05-03", "end": "2024-05-01"})
    assert backwards.status == 400


def test_persons(alice, sightings):
    _, (p1, _, other) = sightings
    persons = {p["id"]: p for p in alice.http.get("/v1/persons", query={"limit": 1000}).json["results"]}
    assert persons[p1["person_id"]]["face_count"] == 2 and persons[other["person_id"]]["face_count"] == 1


def test_person_id_set_by_put(alice, sightings):
    _, (_, _, other) = sightings
    reply = alice.http.request("PUT", f"/v0/face/id/{other['id']}", json_body={"person_id": "4"})
    assert reply.status == 200 and reply.json["person_id"] == "4"
    assert any(p["id"] == "4" for p in alice.http.get("/v0/persons", query={"limit": 1000}).json["results"])


def test_identify_from_camera_and_plain_cam_id(alice, sightings, people):
    camera, (p1, _, _) = sightings
    reply = alice.http.post("/v1/identify", files={"photo": ("f.jpg", people["person03"][2])},
                            form={"cam_id": camera})
    assert reply.status == 200
    newest = alice.http.post("/v1/history/search", json_body={"cam_ids": [camera]}).json["results"][0]
    assert newest["face_id"] is None and newest["match"]["face"]["person_id"] == p1["person_id"]
    # A cam_id that names no camera stays a label on the face, as before cameras existed: no history.
    label = str(uuid.uuid4())
    face = alice.http.post("/v1/face", files={"photo": ("f.jpg", people["person03"][2])},
                           form={"cam_id": label}).json["results"][0]
    assert face["cam_id"] == label and "person_id" not in face
    assert alice.http.post("/v1/history/search", json_body={"cam_ids": [label]}).json["results"] == []


def test_events_long_poll(alice, bob, sightings, people):
    camera, _ = sightings
    start = alice.http.get("/v1/events", query={"cam_ids": camera}).json
    assert start["results"] == []
    answer: dict = {}

    def poll() -> None:
        started = time.monotonic()
        answer["body"] = bob.http.get("/v1/events", query={"cam_ids": camera, "after": start["last_id"],
                                                           "wait": 20}).json
        answer["took"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1)
    alice.http.post("/v1/identify", files={"photo": ("f.jpg", people["person04"][1])}, form={"cam_id": camera})
    poller.join(30)
    (event,) = answer["body"]["results"]
    assert event["cam_id"] == camera and answer["body"]["last_id"] == event["id"] > start["last_id"]
    assert answer["took"] < 15  # answered when the event came, not at the end of the wait
    # Polling again from before it replays it: a client that reconnects misses nothing.
    again = alice.http.get("/v1/events", query={"cam_ids": camera, "after": start["last_id"], "wait": 5}).json
    assert [e["id"] for e in again["results"]] == [event["id"]]
    assert alice.http.get("/v1/events", query={"after": "soon"}).status == 400


def test_events_polls_beyond_the_cap_are_answered_at_once(cluster, alice):
    """With every long-poll slot taken (a quarter of the worker threads), a poll is answered at once, empty, with
    retry_after: waiting polls never hold all the HTTP gateway's threads. The app runs in process over the
    cluster's real gateway, so that the test can hold its slots."""
    from werkzeug.test import Client

    from gateway_http.app import LegacyApp
    from gateway_http.config import HttpConfig

    app = LegacyApp(HttpConfig(gateway=cluster.gateway_address, threads=8))
    try:
        client = Client(app)
        headers = {"Authorization": f"Token {alice.token}"}
        assert app.upstream.long_polls.acquire(blocking=False) and app.upstream.long_polls.acquire(blocking=False)
        started = time.monotonic()
        body = client.get("/v1/events?after=1&wait=20", headers=headers).json
        assert body["results"] == [] and body["retry_after"] > 0 and time.monotonic() - started < 5
        app.upstream.long_polls.release()
        started = time.monotonic()
        body = client.get("/v1/events?after=999999999&wait=1", headers=headers).json
        assert body == {"results": [], "last_id": 999999999} and time.monotonic() - started >= 0.9
    finally:
        app.close()
