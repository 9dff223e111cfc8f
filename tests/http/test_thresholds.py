"""Confidences and numeric thresholds on the original FindFace's scale, over real HTTP, on the labelled pairs.

By default the legacy API speaks the original's scale: its preset numbers (0.7834, 0.6616, 0.5690) decide exactly as
our presets do, and a number between two of them decides between the two. `[http] confidence_scale = "cosine"`
gives the gateway's raw confidence instead, as gRPC clients see it.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from findface_grpc import launch
from findface_grpc.gateway import scoring
from tests.gateway.conftest import PACK
from tests.gateway.harness import START_TIMEOUT, address
from tests.helpers import labelled_pairs
from tests.http.harness import HttpClient

# The pack's embedder, whose presets the mapping is anchored on.
MODEL = {"scrfd-mbf": "w600k_mbf", "yunet-sface": "sface_2021dec"}[PACK]
# Verify calls at once: the extractor embeds on every core.
PARALLEL = 16
FULL = ("medium", "strict", "0.6616", "0.75")
SAMPLE = 8  # every 8th pair for the rest


def verify(api: HttpClient, photo_server, a: str, b: str, threshold) -> dict:
    """A JSON body, where a number is a JSON number; the photos by URL."""
    reply = api.post("/v1/verify", json_body={"threshold": threshold, "photo1": photo_server.url(a),
                                              "photo2": photo_server.url(b)})
    assert reply.status == 200, reply.json
    return reply.json


def verify_form(api: HttpClient, photos, a: str, b: str, threshold) -> dict:
    reply = api.post("/v1/verify", form={"threshold": threshold},
                     files={"photo1": ("a.jpg", photos[a][1]), "photo2": ("b.jpg", photos[b][1])})
    assert reply.status == 200, reply.json
    return reply.json


@pytest.fixture(scope="module")
def decisions(cluster, photos, photo_server, faces) -> dict[str, dict[tuple[str, str], dict]]:
    """Each labelled pair verified at each threshold, given as a preset name or as a number (a JSON number,
    and 0.6616 also as form text): threshold -> pair -> answer."""
    pairs = [(a, b) for a, b, _ in labelled_pairs(faces)]
    asks = {"medium": "medium", "strict": "strict", "0.6616": 0.6616, "0.75": 0.75, "0.7834": 0.7834,
            "form 0.6616": "0.6616"}
    # Every pair at medium, strict and the numbers the test compares them with; a sample for the other forms,
    # since each call embeds both photos again.
    jobs = [(key, pair) for key in asks for pair in (pairs if key in FULL else pairs[::SAMPLE])]
    local = threading.local()
    clients = []

    def run(job):
        if not hasattr(local, "api"):  # one connection per thread: a client is not thread-safe
            local.api = HttpClient(cluster.http_address, cluster.token)
            clients.append(local.api)
        key, (a, b) = job
        if key.startswith("form"):
            return verify_form(local.api, photos, a, b, asks[key])
        return verify(local.api, photo_server, a, b, asks[key])

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            answers = list(pool.map(run, jobs))
    finally:
        for client in clients:
            client.close()
    out: dict[str, dict] = {}
    for (key, pair), answer in zip(jobs, answers):
        out.setdefault(key, {})[pair] = answer
    return out


def verdicts(answers: dict) -> dict:
    return {pair: answer["verified"] for pair, answer in answers.items()}


def test_the_presets_numbers_decide_as_the_presets(decisions):
    assert verdicts(decisions["0.6616"]) == verdicts(decisions["medium"])
    medium, strict = verdicts(decisions["medium"]), verdicts(decisions["strict"])
    assert verdicts(decisions["form 0.6616"]) == {p: medium[p] for p in decisions["form 0.6616"]}
    assert verdicts(decisions["0.7834"]) == {p: strict[p] for p in decisions["0.7834"]}


def test_a_number_between_two_presets_decides_between_them(decisions, faces):
    medium, strict, between = (verdicts(decisions[k]) for k in ("medium", "strict", "0.75"))
    accepted = {k: {p for p, v in d.items() if v} for k, d in (("medium", medium), ("strict", strict),
                                                                ("0.75", between))}
    assert accepted["strict"] <= accepted["0.75"] <= accepted["medium"]
    # The original's default, 0.75, accepts the genuine pairs a client expects it to (issue 11: one at cosine
    # 0.643 was rejected when numbers were raw cosines), and no impostor pair.
    same = {(a, b): s for a, b, s in labelled_pairs(faces)}
    assert not {p for p in accepted["0.75"] if not same[p]}
    genuine = [p for p, s in same.items() if s]
    assert len(accepted["0.75"]) >= 0.9 * len(genuine)


def test_confidences_are_on_the_original_scale(decisions):
    """A pair verifies exactly when its confidence reaches the number, and medium sits at 0.6616."""
    for key, number in (("0.6616", 0.6616), ("0.75", 0.75), ("0.7834", 0.7834)):
        for pair, answer in decisions[key].items():
            (result,) = answer["results"]
            assert result["verified"] is (result["confidence"] >= number), (key, pair, result)
    for pair, answer in decisions["medium"].items():
        (result,) = answer["results"]
        assert result["verified"] is (result["confidence"] >= scoring.ORIGINAL.medium), (pair, result)
    presets = scoring.presets_for(MODEL)
    for pair, answer in decisions["medium"].items():
        (result,) = answer["results"]
        assert 0.0 <= result["confidence"] <= 1.0
        cosine = scoring.from_original(result["confidence"], presets)
        assert scoring.to_original(cosine, presets) == pytest.approx(result["confidence"], abs=1e-9)


def test_identify_speaks_the_same_scale(api, photos, decisions):
    name = "deepface/img1.jpg"
    enrolled = api.post("/v1/face", files={"photo": ("a.jpg", photos[name][1])}, form={"meta": "scale"})
    assert enrolled.status == 200, enrolled.json
    try:
        reply = api.post("/v1/identify", files={"photo": ("b.jpg", photos[name][1])}, form={"threshold": "0.7834"})
        (matches,) = reply.json["results"].values()
        assert matches and matches[0]["confidence"] > 0.99  # itself; mapped, 1 stays 1
        assert all(m["confidence"] >= 0.7834 for m in matches)
    finally:
        assert api.request("DELETE", "/v1/face/meta/scale").status == 204


def test_the_cosine_setting_gives_raw_confidences(cluster, photo_server, decisions, tmp_path):
    """[http] confidence_scale = "cosine": confidences and numbers are the gateway's raw cosine."""
    listen = address(launch.free_port())
    proc = launch.python_server("http-cosine", "gateway_http.server",
                                ["--listen", listen, "--gateway", cluster.gateway_address], tmp_path / "http.log",
                                env={"FINDFACE_HTTP_CONFIDENCE_SCALE": "cosine"})
    proc.start()
    client = HttpClient(listen, cluster.token)
    try:
        launch.wait_http_ok(listen, "/health", START_TIMEOUT, proc)
        presets = scoring.presets_for(MODEL)
        pair, original = next(iter(decisions["medium"].items()))
        raw = verify(client, photo_server, *pair, "none")["results"][0]["confidence"]
        assert raw == pytest.approx(scoring.from_original(original["results"][0]["confidence"], presets), abs=1e-6)
        medium = verify(client, photo_server, *pair, presets.medium)
        assert medium["verified"] is decisions["medium"][pair]["verified"]
    finally:
        client.close()
        proc.stop()
