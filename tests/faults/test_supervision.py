"""The launcher as a supervisor, on one cluster in order: a second launcher over it refuses without harming it;
a shard server or a Tarantool killed with -9 comes back (Tarantool from its own WAL, nothing acknowledged lost);
a shard that keeps failing fast is given up on while the rest of the cluster serves."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from findface_grpc import cluster as cluster_mod
from findface_grpc import supervise
from findface_grpc.v1 import gateway_pb2
from tests.faults.harness import Launched, gone, image, launch, wait_for
from tests.helpers import ROOT, labelled_photos


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    launched = launch(tmp_path_factory.mktemp("supervised"))
    yield launched
    launched.stop()


@pytest.fixture(scope="module")
def enrolled(running, faces) -> dict[int, bytes]:
    """One face of each of several people, so that both shards hold some: face id -> its photo."""
    people: dict[str, str] = {}
    for file, identity in labelled_photos(faces):
        people.setdefault(identity, file)
    channel, stub = running.stub()
    with channel:
        out = {}
        for file in list(people.values())[:8]:
            photo = (faces / file).read_bytes()
            out[stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(photo))).faces[0].id] = photo
    return out


def found_by_own_photo(launched: Launched, faces: dict[int, bytes]) -> bool:
    """Every face is the best match of its own photo, with every shard answering."""
    channel, stub = launched.stub()
    with channel:
        for face_id, photo in faces.items():
            reply = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photo)), timeout=30)
            if reply.partial or reply.results[0].matches[0].face.id != face_id:
                return False
    return True


def test_a_second_launcher_refuses_and_leaves_the_running_cluster_whole(running, faces):
    pids = running.pids()
    second = subprocess.run(
        [sys.executable, "-m", "findface_grpc.cluster", "--config", str(running.config),
         "--data-dir", str(running.data)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert second.returncode == cluster_mod.EXIT_ALREADY_RUNNING, second.stderr
    assert f"another launcher (pid {running.proc.pid}) is running over" in second.stderr
    assert running.proc.poll() is None and running.pids() == pids
    # The running cluster's service token to the photo store was neither revoked nor replaced: a face enrolled
    # now still gets its thumbnail stored, at the URL it carries.
    channel, stub = running.stub()
    with channel:
        photo = (faces / "deepface/img1.jpg").read_bytes()
        face = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(photo))).faces[0]
        stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id))
    assert face.thumbnail and face.photo
    store = http.client.HTTPConnection("127.0.0.1", running.ports["upload_port"], timeout=30)
    store.request("GET", urlsplit(face.photo).path)
    assert store.getresponse().status == 200
    store.close()


def test_a_killed_shard_server_and_tarantool_come_back_with_every_face(running, enrolled):
    assert found_by_own_photo(running, enrolled)
    # Tarantool first: it comes back from its own WAL. Then the shard server, which rebuilds its index from that
    # Tarantool: every face acknowledged before is found again.
    for name in ("tarantool-0", "shard-0"):
        pid = running.pids()[name]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid), 10, f"{name} gone")
        channel, stub = running.stub()
        with channel:  # during the outage searches are answered, flagged partial where a shard is missing
            photo = next(iter(enrolled.values()))
            reply = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photo)), timeout=30)
            assert reply.shards_total == 2
        wait_for(lambda: running.child(name)["pid"] not in (None, pid), 10, f"{name} restarted")
        assert running.child(name)["restarts"] == 1 and running.child(name)["last_exit"] == "killed by SIGKILL"
        wait_for(lambda: found_by_own_photo(running, enrolled), 60, f"every face found after {name} restarted")
    assert f"shard-0 killed by SIGKILL" in running.log.read_text()


def test_a_shard_failing_fast_is_given_up_on_while_the_rest_serve(running, enrolled):
    """shard-1 killed and its port taken: each restart fails at once, and after five the launcher gives up on
    shard-1 alone."""
    port = running.ports["shard_base_port"] + 1
    blocker = socket.socket()
    # The killed server's accepted connections linger in TIME_WAIT; without SO_REUSEPORT (which gRPC's sockets
    # set) the listening blocker still keeps every restart from binding.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        pid = running.pids()["shard-1"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # the port is free once the process is gone, and the first restart is 0.5 s later
            try:
                blocker.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "shard-1's port never came free"
                time.sleep(0.01)
        blocker.listen()
        wait_for(lambda: running.child("shard-1")["state"] == supervise.GIVEN_UP, 90, "shard-1 given up")
        status = running.status()
        # Five fast failures in a row, after the kill (itself a fast failure only if shard-1 had just started).
        assert status["children"]["shard-1"]["restarts"] in (supervise.GIVE_UP_AFTER - 1, supervise.GIVE_UP_AFTER)
        assert all(c["state"] == supervise.RUNNING for n, c in status["children"].items() if n != "shard-1")
        assert "shard-1" in running.log.read_text().split("giving up on it")[0].splitlines()[-1]
        assert running.proc.poll() is None
        channel, stub = running.stub()
        with channel:
            reply = stub.Identify(gateway_pb2.IdentifyRequest(image=image(next(iter(enrolled.values())))))
            assert (reply.shards_answered, reply.shards_total, reply.partial) == (1, 2, True)
        http_port = running.ports["http_port"]
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/health")
        health = conn.getresponse()
        assert health.status == 200
        health.read()
        # Operators see it where they look: the HTTP API's /status shows the launcher's processes.
        conn.request("GET", "/status", headers={"Authorization": f"Token {running.token}"})
        reply = conn.getresponse()
        assert reply.status == 200
        launcher = json.loads(reply.read())["launcher"]
        assert launcher["children"]["shard-1"]["state"] == supervise.GIVEN_UP
        assert launcher["children"]["shard-0"]["state"] == supervise.RUNNING
        conn.close()
    finally:
        blocker.close()
