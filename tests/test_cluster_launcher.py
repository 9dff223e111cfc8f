"""The README's run command: the whole cluster from one launcher, stopped cleanly, found again on restart."""
from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import grpc
import pytest

from findface_grpc.extractor.models import packs
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.helpers import CLUSTER_PORT_KEYS, ROOT, cluster_config, start_cluster, with_token


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_cluster_starts_stops_and_keeps_faces(tmp_path, faces):
    try:
        packs.verify_pack("scrfd-mbf", packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"models not fetched: {exc}")
    config = tmp_path / "cluster.toml"
    ports = cluster_config(config)
    data = tmp_path / "data"
    gateway = f"127.0.0.1:{ports['gateway_port']}"
    photo = (faces / "deepface/img1.jpg").read_bytes()

    log = tmp_path / "launcher-1.log"
    proc = start_cluster(config, data, log)
    try:
        # The first start creates the token "admin" and logs it once; clients get their own with the CLI.
        assert 'API token "admin"' in log.read_text()
        mongo_uri = f"mongodb://127.0.0.1:{ports['mongo_port']}/?directConnection=true"
        token = subprocess.run(
            [sys.executable, "-m", "findface_grpc.auth", "create", "test", "--mongo-uri", mongo_uri],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.strip()
        with with_token(grpc.insecure_channel(gateway), token) as channel:
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            created = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo), meta="x"))
            face_id = created.faces[0].id
        # The photo store is up too: the gateway kept the face's thumbnail there, at the URL the face carries.
        # Its name carries a random key: thumbnails are served without credentials, so they must not be guessable.
        thumbnail = created.faces[0].thumbnail
        assert re.fullmatch(rf"http://127\.0\.0\.1:{ports['upload_port']}/faces/{face_id}/[A-Za-z0-9_-]{{22}}"
                            r"-thumbnail\.jpg", thumbnail), thumbnail
        store = http.client.HTTPConnection("127.0.0.1", ports["upload_port"], timeout=30)
        store.request("GET", urlsplit(thumbnail).path)
        reply = store.getresponse()
        assert reply.status == 200 and reply.read()[:2] == b"\xff\xd8"
        store.close()
        # The HTTP gateway is up too, in front of the same gateway, with the same tokens.
        conn = http.client.HTTPConnection("127.0.0.1", ports["http_port"], timeout=30)
        conn.request("GET", f"/v1/face/id/{face_id}", headers={"Authorization": f"Token {token}"})
        reply = conn.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["meta"] == "x"
        # The license page, open like the original's license.json: unlicensed mode, with who holds a lease.
        conn.request("GET", "/license.json")
        reply = conn.getresponse()
        page = json.loads(reply.read())
        assert reply.status == 200 and page["type"] == "unlicensed" and page["valid"]["value"] is True
        assert sorted(s["name"] for s in page["services"]) == ["findface-extractor", "findface-shard", "findface-shard"]
        assert {"type": "number", "name": "faces", "value": None, "current": 1} in page["limits"]
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    for key in CLUSTER_PORT_KEYS:
        assert not port_open(ports[key]), f"{key} still open after the launcher stopped"

    log = tmp_path / "launcher-2.log"
    proc = start_cluster(config, data, log)
    try:
        assert 'API token "admin"' not in log.read_text()
        with with_token(grpc.insecure_channel(gateway), token) as channel:
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            assert stub.GetFace(gateway_pb2.GetFaceRequest(id=face_id)).meta == "x"
            query = (faces / "deepface/img2.jpg").read_bytes()  # the same person
            reply = stub.Identify(gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=query)))
            assert (reply.shards_answered, reply.shards_total) == (2, 2)
            assert reply.results[0].matches[0].face.id == face_id
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
