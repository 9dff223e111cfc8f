"""Parts of the cluster going away, seen over HTTP: a shard, the extractor, the gateway itself.

This module runs its own extractor (the package's is shared by the other modules and must stay up).
"""
from __future__ import annotations

import time

import pytest

from findface_grpc import launch
from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import address, start_healthy
from tests.http.harness import HttpCluster


@pytest.fixture(scope="module")
def own_extractor(tmp_path_factory):
    require_pack(PACK)
    base = tmp_path_factory.mktemp("extractor-outages")
    addr = address(launch.free_port())

    def make():
        return launch.python_server("extractor-outages", "findface_grpc.extractor.server",
                                    ["--listen", addr, "--model-pack", PACK], base / "extractor.log")

    holder = {"proc": make()}
    start_healthy([(holder["proc"], addr)])
    yield addr, holder, make
    holder["proc"].stop()


@pytest.fixture(scope="module")
def outage(tmp_path_factory, mongo, own_extractor):
    addr, _, _ = own_extractor
    c = HttpCluster(tmp_path_factory.mktemp("http"), "outages", mongo, addr,
                    gateway_settings={"shard_deadline_s": 1.0}).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def enrolled(outage, photos):
    api = outage.client
    out = []
    for name in sorted(photos)[:12]:
        reply = api.post("/v1/face", form={"meta": photos[name][0]},
                         files={"photo": (name.rsplit("/", 1)[-1], photos[name][1])})
        assert reply.status == 200, reply.json
        out.append(reply.json["results"][0]["id"])
    return out


def identify(api, photo: bytes, **form):
    return api.post("/v1/identify", form={"n": "100", "threshold": "none", **form}, files={"photo": ("q.jpg", photo)})


def test_a_shard_down_gives_partial_answers_or_503_when_strict(outage, enrolled, photos):
    api = outage.client
    photo = photos[sorted(photos)[0]][1]
    whole = identify(api, photo)
    assert whole.status == 200 and whole.header("X-Live-Servers") == "2/2"
    assert len(next(iter(whole.json["results"].values()))) == len(enrolled)
    outage.shards.kill(1)
    try:
        part = identify(api, photo)
        assert part.status == 200, part.json
        assert part.header("X-Live-Servers") == "1/2"
        found = next(iter(part.json["results"].values()))
        assert 0 < len(found) < len(enrolled)
        strict = identify(api, photo, strict="true")
        assert strict.status == 503 and strict.json["code"] == "SERVICE_UNAVAILABLE"
        assert strict.header("X-Live-Servers") == "1/2"
        # The status page answers, naming the shard that is down and why.
        status = api.get("/v1/status")
        assert status.status == 200, status.json
        shards = status.json["shards"]
        assert (shards["live"], shards["total"]) == (1, 2)
        up, down = shards["items"]
        assert up["live"] and up["error"] == "" and up["face_count"] > 0
        assert not down["live"] and down["address"] == outage.shards.addresses[1]
        assert down["error"].startswith(f"shard 1 ({outage.shards.addresses[1]}): UNAVAILABLE"), down["error"]
        assert (down["face_count"], down["galleries"], down["shard_id"]) == (0, {}, "")
        # The faces counted are those the shard that answered holds.
        assert 0 < status.json["faces"] == up["face_count"] < len(enrolled) and status.json["extractor"]["live"]
        counted = api.get("/v1/galleries?counts=true").json
        assert (counted["shards_answered"], counted["shards_total"], counted["partial"]) == (1, 2, True)
        assert {g["name"]: g["face_count"] for g in counted["results"]}["default"] == up["face_count"]
    finally:
        start_healthy(outage.shards.server_items([1]))
    deadline = time.monotonic() + 30
    while identify(api, photo).header("X-Live-Servers") != "2/2":
        assert time.monotonic() < deadline, "the restarted shard is not searched again"
        time.sleep(0.5)


def test_extractor_down_is_503(outage, enrolled, photos, own_extractor):
    api = outage.client
    addr, holder, make = own_extractor
    photo = photos[sorted(photos)[0]][1]
    holder["proc"].stop()
    try:
        for reply in (identify(api, photo), api.post("/v1/face", files={"photo": ("a.jpg", photo)}),
                      api.post("/v1/detect", files={"photo": ("a.jpg", photo)})):
            assert reply.status == 503, reply.json
            assert reply.json["code"] == "SERVICE_UNAVAILABLE" and "extractor" in reply.json["reason"]
        # What needs no extractor still works.
        assert api.get(f"/v1/face/id/{enrolled[0]}").status == 200
        status = api.get("/v1/status")
        assert status.status == 200, status.json
        extractor = status.json["extractor"]
        assert not extractor["live"] and extractor["address"] == addr
        assert "extractor" in extractor["error"] and "UNAVAILABLE" in extractor["error"], extractor["error"]
        assert (extractor["model_pack"], extractor["descriptor_dim"]) == ("", 0)
        assert status.json["shards"]["live"] == 2
    finally:
        holder["proc"] = make()
        start_healthy([(holder["proc"], addr)])
    deadline = time.monotonic() + 30
    while identify(api, photo).status != 200:
        assert time.monotonic() < deadline, "the restarted extractor is not used again"
        time.sleep(0.5)


def test_gateway_down_is_503_and_health_says_so(outage, enrolled):
    api = outage.client
    outage.gateway.stop()
    try:
        reply = api.get(f"/v1/face/id/{enrolled[0]}")
        assert reply.status == 503 and reply.json["code"] == "SERVICE_UNAVAILABLE"
        health = api.get("/health", token=False)
        assert health.status == 503 and health.json["code"] == "SERVICE_UNAVAILABLE"
        # Documentation needs nothing but the HTTP gateway.
        assert api.get("/docs", token=False).status == 200
    finally:
        outage.restart_gateway()
    deadline = time.monotonic() + 30
    while api.get(f"/v1/face/id/{enrolled[0]}").status != 200:
        assert time.monotonic() < deadline, "the HTTP gateway does not reach the restarted gateway"
        time.sleep(0.5)
    assert api.get("/health", token=False).status == 200
