"""HTTP gateway memory over repeated passes: does its RSS settle, or keep growing, under the same requests?

Usage: python scripts/bench_soak.py [--passes 10] [--rounds 35] [--clients 8] [--shards 1]
                                    [--http-env MALLOC_ARENA_MAX=8] [--faces DIR] [--model-pack scrfd-mbf]

Starts a whole cluster with the launcher (findface_grpc.cluster, which also starts the HTTP gateway) on free
ports in a temporary folder, creates a token, enrolls the labelled photos, then runs `--passes` identical passes
of a fixed mix of legacy HTTP requests from `--clients` threads (one keep-alive connection each). A pass is
`--rounds` rounds of 11 requests, each round with the next photo: POST /v1/detect, POST /v1/face (multipart, into
gallery "soak"), DELETE that face, POST /v1/identify, POST /v1/verify, GET /v1/faces, GET /v1/galleries,
GET /v1/faces/gallery/soak, and three 4xx (a missing face 404, a detect without a photo 400, no token 401).
So every pass sends the same requests and leaves the data as it found it. After each pass it reads the HTTP
gateway process's VmRSS from /proc/<pid>/status and prints it; the baseline is the same run's pass 2 (pass 1
includes warm-up: imports, first connections, thread stacks touched). Target: RSS after the last pass within
10 % of after pass 2 (ratio at most 1.10).

--http-env KEY=VALUE (repeatable) adds to the HTTP gateway's environment only, e.g. MALLOC_ARENA_MAX=8 to see
the figures without the launcher's setting (see findface_grpc/cluster.py).
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import auth  # noqa: E402
from findface_grpc.cluster import Cluster  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402
from tests.helpers import bench_cluster_config, faces_dir, labelled_photos, with_token  # noqa: E402
from tests.http.harness import multipart  # noqa: E402

TARGET = 1.10
PER_ROUND = 11


def rss_kb(pid: int) -> tuple[int, int, int]:
    """VmRSS, VmHWM (kB) and thread count of `pid`."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields["VmRSS"]), int(fields["VmHWM"]), int(fields["Threads"])


class Client:
    """One keep-alive connection, reopened if the server closes it."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.conn = http.client.HTTPConnection(host, port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
             token: bool = True) -> tuple[int, bytes]:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if token:
            headers["Authorization"] = f"Token {self.token}"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                reply = self.conn.getresponse()
                data = reply.read()
                if reply.getheader("Connection", "").lower() == "close":
                    self.reopen()
                return reply.status, data
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.reopen()
        raise AssertionError("unreachable")

    def reopen(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)


def one_round(client: Client, photos: list[bytes], i: int) -> None:
    """The 11 requests of round `i`; raises if any answers other than expected."""
    a, b = photos[i % len(photos)], photos[(i + 1) % len(photos)]

    def expect(want: int, method: str, path: str, body=None, ctype=None, token=True) -> bytes:
        status, data = client.call(method, path, body, ctype, token)
        if status != want:
            raise RuntimeError(f"{method} {path} answered {status}, not {want}: {data[:200]!r}")
        return data

    body, ctype = multipart({}, {"photo": ("photo.jpg", a)})
    expect(200, "POST", "/v1/detect", body, ctype)
    body, ctype = multipart({"meta": f"soak-{i}", "galleries": "soak", "mf_selector": "biggest"},
                            {"photo": ("photo.jpg", a)})
    created = json.loads(expect(200, "POST", "/v1/face", body, ctype))
    for face in created.get("results", []):
        expect(204, "DELETE", f"/v1/face/id/{face['id']}")
    body, ctype = multipart({}, {"photo": ("photo.jpg", a)})
    expect(200, "POST", "/v1/identify", body, ctype)
    body, ctype = multipart({}, {"photo1": ("a.jpg", a), "photo2": ("b.jpg", b)})
    expect(200, "POST", "/v1/verify", body, ctype)
    expect(200, "GET", "/v1/faces?limit=20")
    expect(200, "GET", "/v1/galleries")
    expect(200, "GET", "/v1/faces/gallery/soak")
    expect(404, "GET", "/v1/face/id/987654321")
    body, ctype = multipart({"threshold": "0.5"}, {})
    expect(400, "POST", "/v1/detect", body, ctype)
    expect(401, "GET", "/v1/faces", token=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=35, help=f"rounds of {PER_ROUND} requests a pass (default 35)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--model-pack", default="scrfd-mbf")
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--http-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the HTTP gateway only (repeatable)")
    args = parser.parse_args(argv)
    if args.passes < 3:
        parser.error("--passes must be at least 3 (pass 2 is the baseline)")
    logging.basicConfig(level=logging.WARNING)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(folder / name).read_bytes() for name, _ in labelled_photos(folder)]
    http_env = dict(item.split("=", 1) for item in args.http_env)

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as work:
        cfg = bench_cluster_config(work, args.shards, args.model_pack)
        cluster = Cluster(cfg)
        if http_env:
            server = cluster._server

            def with_http_env(name, module, server_args, env=None):
                return server(name, module, server_args, {**(env or {}), **http_env} if name == "http" else env)

            cluster._server = with_http_env
        try:
            print(f"starting a {args.shards}-shard cluster ({args.model_pack}) in {work} ...", flush=True)
            addresses = cluster.start()
            http_proc = next(p for p in cluster.processes if p.name == "http")
            pid = http_proc.proc.pid
            env_shown = " ".join(f"{k}={v}" for k, v in {**http_proc.env, **http_env}.items()
                                 if k.startswith("MALLOC")) or "(no MALLOC_* setting)"
            print(f"  HTTP gateway pid {pid}, environment {env_shown}")
            mongo = f"mongodb://{addresses['mongodb'].split('//', 1)[1]}" if "mongodb" in addresses else cfg.mongo_uri
            client, store = auth.open_store(auth.gateway_mongo(mongo_uri=mongo))
            token = store.create("bench-soak")
            client.close()
            channel = with_token(grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS), token)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            for data in photos:
                stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data)), timeout=60)
            channel.close()
            host, _, port = addresses["http"].removeprefix("http://").rpartition(":")
            clients = [Client(host, int(port), token) for _ in range(args.clients)]
            status, _ = clients[0].call("POST", "/v1/galleries/soak")
            print(f"  enrolled {len(photos)} photos; gallery soak: {status}")
            rss0 = rss_kb(pid)
            print(f"  RSS before pass 1: {rss0[0] / 1024:.0f} MB ({rss0[2]} threads)")
            print(f"\n{args.passes} passes of {args.rounds * PER_ROUND} requests, {args.clients} clients:", flush=True)
            local = threading.local()
            pool_ids = iter(range(args.clients))
            lock = threading.Lock()

            def worker_round(i: int) -> None:
                if not hasattr(local, "client"):
                    with lock:
                        local.client = clients[next(pool_ids)]
                one_round(local.client, photos, i)

            samples = []
            with ThreadPoolExecutor(args.clients) as pool:
                for n in range(1, args.passes + 1):
                    t = time.perf_counter()
                    list(pool.map(worker_round, range(args.rounds)))
                    elapsed = time.perf_counter() - t
                    rss, hwm, threads = rss_kb(pid)
                    samples.append(rss)
                    print(f"  pass {n:2d}: RSS {rss / 1024:6.0f} MB  (peak {hwm / 1024:4.0f} MB, {threads} threads, "
                          f"{elapsed:5.1f} s)", flush=True)
            for c in clients:
                c.conn.close()
        finally:
            cluster.stop()

    ratio = samples[-1] / samples[1]
    growth = (samples[-1] - samples[1]) / 1024 / (len(samples) - 2)
    verdict = "within" if ratio <= TARGET else "OVER"
    print(f"\nRSS after pass {args.passes} / after pass 2: {ratio:.3f} (target at most {TARGET:.2f}: {verdict}); "
          f"{growth:+.1f} MB a pass after pass 2")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
