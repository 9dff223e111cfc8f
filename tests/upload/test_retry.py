"""Drops are never lost: failed enrollments are retried in the background, and the start-up scan takes up what a
stopped server left behind. Real servers throughout: the module's cluster, plus upload servers with a short
backoff (retry_initial_s = 0.5) started and stopped by the tests."""
from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from findface_grpc import launch
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import HOST, START_TIMEOUT, address, start_healthy
from tests.upload.harness import DavClient

FAST = {"retry_initial_s": 0.5, "retry_max_interval_s": 1.0}


def by_identity(photos) -> list[bytes]:
    """One photo of each person, in a fixed order."""
    seen: dict[str, bytes] = {}
    for name, (identity, data) in sorted(photos.items()):
        seen.setdefault(identity, data)
    return list(seen.values())


class Store:
    """An upload server of the test's own, in front of the module's gateway."""

    def __init__(self, cluster, root: Path, name: str, gateway: str = "", **settings) -> None:
        self.cluster = cluster
        self.root = root
        self.name = name
        self.gateway = gateway
        self.settings = {**FAST, **settings}
        self.listen = address(launch.free_port())
        self.proc = None
        self.dav = DavClient(self.listen, "any", cluster.user_token)

    def start(self) -> "Store":
        self.proc = self.cluster.upload_process(self.name, self.listen, self.root, self.gateway,
                                                **self.settings).start()
        launch.wait_tcp(HOST, int(self.listen.rpartition(":")[2]), START_TIMEOUT, self.proc)
        return self

    def stop(self) -> int:
        self.proc.stop()
        return self.proc.proc.returncode

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace") if self.proc else ""

    def result(self, gallery: str, stem: str) -> dict | None:
        reply = self.dav.get(f"/dropbox/{gallery}/{stem}.result.json")
        assert reply.status in (200, 404), (reply.status, reply.raw)
        return reply.json if reply.status == 200 else None

    def wait_result(self, gallery: str, stem: str, done, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        res = None
        while time.monotonic() < deadline:
            res = self.result(gallery, stem)
            if res is not None and done(res):
                return res
            time.sleep(0.2)
        raise AssertionError(f"{gallery}/{stem}: last result {res}\n{self.log()[-4000:]}")


@pytest.fixture
def store(cluster, tmp_path, request):
    s = Store(cluster, tmp_path / "store", f"upload-{request.node.name}").start()
    yield s
    s.stop()


def faces_named(cluster, gallery: str, meta: str) -> list:
    return list(cluster.stub.ListFaces(gateway_pb2.ListFacesRequest(gallery=gallery, meta=meta), timeout=10).faces)


def test_drop_while_the_gateway_is_down_is_enrolled_once_it_is_back(cluster, photos, store):
    photo = by_identity(photos)[0]
    cluster.gateway.stop()
    try:
        assert store.dav.put("/dropbox/outage/alice.jpg", photo).status == 201
        first = store.result("outage", "alice")
        assert first["status"] == "failed" and first["error"]["code"] == "UNAVAILABLE", first
        retry = first["retry"]
        assert retry["attempts"] == 1 and "gave_up_at" not in retry
        assert datetime.fromisoformat(retry["next_at"]) > datetime.fromisoformat(first["at"])
        # Retried in the background while the gateway stays down, the wait growing, the result saying so.
        later = store.wait_result("outage", "alice", lambda r: r["retry"]["attempts"] >= 3, timeout=20)
        assert later["status"] == "failed" and later["retry"]["since"] == retry["since"]
    finally:
        start_healthy([(cluster.gateway, cluster.gateway_address)])
    # Back: enrolled without dropping it again.
    done = store.wait_result("outage", "alice", lambda r: r["status"] != "failed", timeout=60)
    assert done["status"] == "enrolled", done
    assert done["attempts"] >= 4 and "retry" not in done and "error" not in done
    assert [f.id for f in faces_named(cluster, "outage", "alice")] == done["face_ids"]
    assert done["faces"][0]["thumbnail"]  # the gateway stored its crops as for any enrollment
    # Nothing more happens to it: no further attempt once enrolled.
    time.sleep(1.5)
    assert store.result("outage", "alice") == done
    assert len(faces_named(cluster, "outage", "alice")) == len(done["face_ids"])


def test_rejected_photo_is_not_retried(cluster, store):
    assert store.dav.put("/dropbox/bad/corrupt.jpg", b"\xff\xd8\xff\xe0 not a JPEG at all").status == 201
    res = store.result("bad", "corrupt")
    assert res["status"] == "rejected" and res["error"]["code"] == "INVALID_ARGUMENT" and "retry" not in res
    time.sleep(2.5)  # several retry intervals
    assert store.result("bad", "corrupt") == res
    # Nor at the next start.
    assert store.stop() == 0
    store.start()
    deadline = time.monotonic() + 10
    while store.log().count("found at start") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.log().count("0 photo(s) to enroll or retry found at start") == 2, store.log()[-2000:]
    time.sleep(1.0)
    assert store.result("bad", "corrupt") == res


def _write_result(path: Path, result: dict) -> None:
    path.write_text(json.dumps(result))


def test_photos_left_by_a_stopped_server_are_enrolled_at_start(cluster, photos, tmp_path):
    """What a server stopped (or killed) between taking photos and enrolling them leaves behind, by hand."""
    root = tmp_path / "store"
    drop = root / "dropbox" / "crash"
    drop.mkdir(parents=True)
    p = by_identity(photos)
    now = datetime.now(timezone.utc)

    def iso(t: datetime) -> str:
        return t.isoformat(timespec="milliseconds")

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    # Acknowledged, never enrolled: no result at all.
    (drop / "alice.jpg").write_bytes(p[0])
    # A result of earlier content, the photo replaced after it (its new content never enrolled).
    _write_result(drop / "bob.result.json", {"file": "bob.jpg", "gallery": "crash", "sha256": "0" * 64,
                                             "meta": "bob", "status": "rejected", "at": iso(now)})
    time.sleep(0.05)
    (drop / "bob.jpg").write_bytes(p[1])
    # Failed, retries going on: taken up again.
    (drop / "dave.jpg").write_bytes(p[2])
    _write_result(drop / "dave.result.json", {
        "file": "dave.jpg", "gallery": "crash", "sha256": sha(p[2]), "meta": "dave", "status": "failed",
        "error": {"code": "UNAVAILABLE", "reason": "down"}, "at": iso(now),
        "retry": {"attempts": 3, "since": iso(now - timedelta(minutes=5)), "next_at": iso(now)}})
    # Enrolled already (its result written after it): left alone.
    (drop / "carol.jpg").write_bytes(p[3])
    carol = {"file": "carol.jpg", "gallery": "crash", "sha256": sha(p[3]), "meta": "carol", "status": "enrolled",
             "face_ids": [123456], "faces": [], "at": iso(now)}
    _write_result(drop / "carol.result.json", carol)
    # Failed, past the retry window: not tried again; its result says retries stopped.
    (drop / "erin.jpg").write_bytes(p[4])
    _write_result(drop / "erin.result.json", {
        "file": "erin.jpg", "gallery": "crash", "sha256": sha(p[4]), "meta": "erin", "status": "failed",
        "error": {"code": "UNAVAILABLE", "reason": "down"}, "at": iso(now - timedelta(hours=1)),
        "retry": {"attempts": 40, "since": iso(now - timedelta(hours=25)), "next_at": iso(now - timedelta(hours=1))}})
    # Enrolled by the gateway, but the server stopped before the reply came back: not enrolled twice.
    (drop / "frank.jpg").write_bytes(p[5])
    time.sleep(0.05)
    cluster.stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="crash"), timeout=10)
    lost = cluster.stub.CreateFace(gateway_pb2.CreateFaceRequest(
        image=common_pb2.ImageSource(content=p[5]), galleries=["crash"], meta="frank"), timeout=60)
    # A LOCK's empty placeholder, and an interrupted upload in the partial folder: never enrolled.
    (drop / "empty.jpg").write_bytes(b"")
    partial = root / ".upload-state" / "partial"
    partial.mkdir(parents=True)
    (partial / "0123abcd.part").write_bytes(p[6][: len(p[6]) // 2])
    os.utime(drop / "carol.result.json")  # written after its photo, as the server does

    store = Store(cluster, root, "upload-restarted").start()
    try:
        for stem in ("alice", "bob"):
            res = store.wait_result("crash", stem, lambda r, f=f"{stem}.jpg": r["status"] == "enrolled" and r["file"] == f)
            assert "attempts" not in res and res["face_ids"]
            assert [f.id for f in faces_named(cluster, "crash", stem)] == res["face_ids"]
        dave = store.wait_result("crash", "dave", lambda r: r["status"] == "enrolled")
        assert dave["attempts"] == 4
        frank = store.wait_result("crash", "frank", lambda r: r["status"] == "enrolled")
        assert frank["face_ids"] == [f.id for f in lost.faces] and "reply was lost" in frank["reason"]
        assert frank["skipped"] == [] and "left out are not known" in frank["reason"]
        assert [f["quality"] for f in frank["faces"]] == [round(f.quality, 4) for f in lost.faces]
        assert [f.id for f in faces_named(cluster, "crash", "frank")] == frank["face_ids"]
        erin = store.wait_result("crash", "erin", lambda r: "gave_up_at" in r["retry"])
        assert erin["status"] == "failed" and erin["retry"]["attempts"] == 40 and "next_at" not in erin["retry"]
        assert not faces_named(cluster, "crash", "erin")
        assert store.result("crash", "carol") == carol
        assert not faces_named(cluster, "crash", "carol")
        assert store.result("crash", "empty") is None
        assert not list(partial.iterdir())  # the cut-off upload is deleted, not enrolled
        # alice, bob, dave, erin and frank; not carol, nor the empty placeholder.
        assert "5 photo(s) to enroll or retry found at start" in store.log(), store.log()[-3000:]
        # The scan runs once per start: a second start finds nothing left to do.
        assert store.stop() == 0
        results = {stem: store_result_file(root, stem) for stem in ("alice", "bob", "carol", "dave", "erin", "frank")}
        store.start()
        deadline = time.monotonic() + 10
        while store.log().count("found at start") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.log().count("0 photo(s) to enroll or retry found at start") == 1, store.log()[-3000:]
        time.sleep(1.0)
        assert {stem: store_result_file(root, stem) for stem in results} == results
        assert len(faces_named(cluster, "crash", "alice")) == 1
    finally:
        store.stop()


def store_result_file(root: Path, stem: str) -> str:
    return (root / "dropbox" / "crash" / f"{stem}.result.json").read_text()


def test_deleted_photo_stops_its_retries(cluster, photos, tmp_path):
    # An unreachable gateway for this store only: every attempt fails.
    store = Store(cluster, tmp_path / "store", "upload-nowhere", gateway=address(launch.free_port())).start()
    try:
        assert store.dav.put("/dropbox/gone/x.jpg", by_identity(photos)[0]).status == 201
        assert store.result("gone", "x")["status"] == "failed"
        assert store.dav.delete("/dropbox/gone/x.jpg").status == 204
        res = store.wait_result("gone", "x", lambda r: "gave_up_at" in r["retry"], timeout=10)
        assert res["retry"]["reason"] == "the photo is gone (deleted or moved away)" and "next_at" not in res["retry"]
    finally:
        assert store.stop() == 0
