"""A launcher killed with -9: its children exit with it (parent-death signal), and the next launcher over the same
data folder starts cleanly, with every face; children that did outlive one are stopped from its pid file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from findface_grpc import supervise
from findface_grpc.v1 import gateway_pb2
from tests.faults.harness import gone, image, launch, relaunch, wait_for


def test_children_exit_with_a_killed_launcher_and_the_next_one_starts_cleanly(tmp_path, faces):
    first = launch(tmp_path)
    try:
        channel, stub = first.stub()
        with channel:
            face_id = stub.CreateFace(gateway_pb2.CreateFaceRequest(
                image=image((faces / "deepface/img1.jpg").read_bytes()))).faces[0].id
        children = first.pids()
        assert len(children) == 10  # license, secantusdb, 2 Tarantools, 2 shards, extractor, gateway, http, upload
        first.proc.kill()
        first.proc.wait()
        for name, pid in children.items():
            wait_for(lambda: gone(pid), 30, f"{name} (pid {pid}) exited after its launcher was killed")
    finally:
        for pid in first.pids().values():
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    second = relaunch(first, "launcher-2.log")
    try:
        channel, stub = second.stub()
        with channel:
            assert stub.GetFace(gateway_pb2.GetFaceRequest(id=face_id)).id == face_id
            reply = stub.Identify(gateway_pb2.IdentifyRequest(image=image((faces / "deepface/img2.jpg").read_bytes())))
            assert reply.shards_answered == 2 and reply.results[0].matches[0].face.id == face_id
    finally:
        second.stop()
    assert not (second.data / supervise.PID_FILE).exists()


@pytest.fixture
def sleeper():
    """A process of ours that ignores no signal; killed at the end if a test left it."""
    started = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_children_left_by_a_previous_launcher_are_stopped_and_no_other_process(tmp_path, sleeper):
    ours, reused = sleeper(), sleeper()
    entries = [
        {"name": "shard-0", "pid": ours.pid, "start_time": supervise._start_time(ours.pid), "argv0": sys.executable},
        # The same pid as a child of the old launcher, but started at another time: a pid since reused.
        {"name": "shard-1", "pid": reused.pid, "start_time": supervise._start_time(reused.pid) - 1,
         "argv0": sys.executable},
    ]
    (tmp_path / supervise.PID_FILE).write_text(json.dumps({"launcher": 1, "children": entries}))
    assert supervise.stop_previous(tmp_path) == ["shard-0"]
    assert ours.wait(5) == -signal.SIGTERM
    assert reused.poll() is None
    assert not (tmp_path / supervise.PID_FILE).exists()


def test_the_lock_is_held_once(tmp_path):
    fd = supervise.hold_lock(tmp_path)
    try:
        with pytest.raises(supervise.AlreadyRunning, match=str(os.getpid())):
            supervise.hold_lock(tmp_path)
    finally:
        os.close(fd)
    os.close(supervise.hold_lock(tmp_path))
