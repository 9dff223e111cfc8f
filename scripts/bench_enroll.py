"""Enrollment paths compared: direct gRPC CreateFace, the bulk CLI (findface-enroll) and the WebDAV drop folder.

Usage: python scripts/bench_enroll.py [--concurrency 4] [--shards 2] [--faces DIR] [--model-pack scrfd-mbf]

Starts a whole cluster with the launcher (findface_grpc.cluster, photo store and drop folder included) on free ports
in a temporary folder, creates a token, warms the extractor up with a few CreateFace calls into a throwaway gallery,
then enrolls the labelled photos three ways, each into its own (pre-created) gallery, with --concurrency callers:
  1. grpc:    FaceService.CreateFace from a thread pool, one call per photo;
  2. bulk:    findface_grpc.bulk.main() (the findface-enroll CLI, in this process) on a temp folder of copies;
  3. dropbox: HTTP PUT of each photo to /dropbox/<gallery>/<name>.jpg on the upload server (basic auth, the API
              token as the password), then GET of <name>.result.json until it exists; faces counted from the
              result files.
Prints faces, seconds, faces/s and photos/s and their ratios to direct gRPC for each (the drop folder enrolls every
face of a photo by default, the others the biggest, so faces/s and photos/s differ for it). Every path goes through the same gateway,
which (with the photo store on) also PUTs the photo and crops of each face into the upload server.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc import auth, bulk, launch  # noqa: E402
from findface_grpc.cluster import Cluster, ClusterConfig  # noqa: E402
from findface_grpc.rpc import CHANNEL_OPTIONS  # noqa: E402
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402
from tests.helpers import faces_dir, labelled_photos  # noqa: E402

WARMUP = 4
POLL_S = 0.05


def flat_name(name: str) -> str:
    """"deepface/img1.jpg" -> "deepface-img1": one folder level, a safe file name and meta."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name.rsplit(".", 1)[0])


def via_grpc(stub, metadata, photos: list[tuple[str, bytes]], gallery: str, concurrency: int) -> tuple[int, float, list]:
    def one(item: tuple[str, bytes]) -> int:
        name, data = item
        request = gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data), galleries=[gallery],
                                                meta=name)
        return len(stub.CreateFace(request, metadata=metadata, timeout=120).faces)

    failures = []

    def safe(item):
        try:
            return one(item)
        except grpc.RpcError as exc:
            failures.append(f"{item[0]}: {exc.code().name} {exc.details()}")
            return 0

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        faces = sum(pool.map(safe, photos))
    return faces, time.perf_counter() - t, failures


def via_bulk(gateway: str, token: str, photos: list[tuple[str, bytes]], gallery: str, concurrency: int,
             work: Path) -> tuple[int, float, list]:
    tree = work / "bulk-photos"
    (tree / gallery).mkdir(parents=True)
    for name, data in photos:
        (tree / gallery / f"{name}.jpg").write_bytes(data)
    os.environ["FINDFACE_TOKEN"] = token
    out = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = bulk.main([str(tree), "--gateway", gateway, "--concurrency", str(concurrency)])
    elapsed = time.perf_counter() - t
    text = out.getvalue()
    match = re.search(r"\((\d+) faces\)", text)
    failures = [line.strip() for line in text.splitlines() if line.strip().startswith("failed ")]
    if rc != 0 and not failures:
        failures.append(f"bulk exited {rc}: {text.strip()}")
    return int(match.group(1)) if match else 0, elapsed, failures


def via_dropbox(upload: str, token: str, photos: list[tuple[str, bytes]], gallery: str,
                concurrency: int) -> tuple[int, float, list]:
    host, _, port = upload.removeprefix("http://").rpartition(":")
    authz = "Basic " + base64.b64encode(f"bench:{token}".encode()).decode()

    def request(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            headers = {"Authorization": authz}
            if body is not None:
                headers["Content-Type"] = "image/jpeg"
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    failures = []

    def one(item: tuple[str, bytes]) -> int:
        name, data = item
        status, raw = request("PUT", f"/dropbox/{gallery}/{name}.jpg", data)
        if status not in (200, 201, 204):
            failures.append(f"{name}: PUT answered {status} {raw[:200]!r}")
            return 0
        deadline = time.monotonic() + 120
        while True:
            status, raw = request("GET", f"/dropbox/{gallery}/{name}.result.json")
            if status == 200:
                break
            if time.monotonic() > deadline:
                failures.append(f"{name}: no result file after 120 s (last GET {status})")
                return 0
            time.sleep(POLL_S)
        result = json.loads(raw)
        if result.get("status") != "enrolled":
            failures.append(f"{name}: {result.get('status')} {result.get('reason') or result.get('error')}")
        return len(result.get("faces") or []) if result.get("status") == "enrolled" else 0

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        faces = sum(pool.map(one, photos))
    return faces, time.perf_counter() - t, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="callers/uploaders at once (default 4)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--model-pack", default="scrfd-mbf")
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = [(flat_name(name), (folder / name).read_bytes()) for name, _ in labelled_photos(folder)]
    rows = []

    with tempfile.TemporaryDirectory(prefix="bench-enroll-") as work:
        cfg = ClusterConfig(
            data_dir=str(Path(work) / "cluster"), shards=args.shards, gateway_port=launch.free_port(), http_port=0,
            extractor_port=launch.free_port(), mongo_port=launch.free_port(), shard_base_port=launch.free_ports(args.shards),
            tarantool_base_port=launch.free_ports(args.shards), tarantool_memtx_mb=256, model_pack=args.model_pack, log_level="WARNING",
            license_port=launch.free_port(), upload_port=launch.free_port(), metrics_base_port=0,
        )
        cluster = Cluster(cfg)
        try:
            print(f"starting a {args.shards}-shard cluster ({args.model_pack}, photo store on) in {work} ...", flush=True)
            t0 = time.perf_counter()
            addresses = cluster.start()
            print(f"  up in {time.perf_counter() - t0:.1f} s: {addresses}", flush=True)
            if "upload" not in addresses:
                sys.stderr.write("the upload server did not start\n")
                return 1
            mongo = f"mongodb://{addresses['mongodb'].split('//', 1)[1]}" if "mongodb" in addresses else cfg.mongo_uri
            client, store = auth.open_store(auth.gateway_mongo(mongo_uri=mongo))
            token = store.create("bench-enroll")
            client.close()
            metadata = auth.token_metadata(token)
            channel = grpc.insecure_channel(addresses["gateway"], options=CHANNEL_OPTIONS)
            stub = gateway_pb2_grpc.FaceServiceStub(channel)
            for gallery in ("warmup", "grpc", "bulk", "dropbox"):
                stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name=gallery), metadata=metadata, timeout=30)
            via_grpc(stub, metadata, photos[:WARMUP], "warmup", args.concurrency)

            c = args.concurrency
            print(f"enrolling {len(photos)} photos each way, concurrency {c} ...", flush=True)
            rows.append(("gRPC CreateFace", *via_grpc(stub, metadata, photos, "grpc", c)))
            print(f"  grpc done: {rows[-1][1]} faces in {rows[-1][2]:.1f} s", flush=True)
            rows.append(("bulk CLI", *via_bulk(addresses["gateway"], token, photos, "bulk", c, Path(work))))
            print(f"  bulk done: {rows[-1][1]} faces in {rows[-1][2]:.1f} s", flush=True)
            rows.append(("WebDAV drop folder", *via_dropbox(addresses["upload"], token, photos, "dropbox", c)))
            print(f"  dropbox done: {rows[-1][1]} faces in {rows[-1][2]:.1f} s", flush=True)
            channel.close()
        finally:
            cluster.stop()
            shutil.rmtree(Path(work) / "bulk-photos", ignore_errors=True)

    base_rate = rows[0][1] / rows[0][2] if rows and rows[0][2] else 0.0
    print(f"\n{len(photos)} photos, concurrency {args.concurrency}, {args.shards} shards, {args.model_pack}:")
    print(f"  {'method':<20} {'faces':>5} {'seconds':>8} {'faces/s':>8} {'vs gRPC':>8} {'photos/s':>9} {'vs gRPC':>8}")
    base_photos = len(photos) / rows[0][2] if rows and rows[0][2] else 0.0
    for method, faces, seconds, _ in rows:
        rate = faces / seconds if seconds else 0.0
        ratio = rate / base_rate if base_rate else 0.0
        prate = len(photos) / seconds if seconds else 0.0
        pratio = prate / base_photos if base_photos else 0.0
        print(f"  {method:<20} {faces:>5} {seconds:>8.2f} {rate:>8.2f} {ratio:>8.2f} {prate:>9.2f} {pratio:>8.2f}")
    print("  (the drop folder enrolls every face of a photo, [upload].multi_face = \"all\" by default; the other two "
          "the biggest one)")
    failed = False
    for method, _, _, failures in rows:
        for f in failures:
            failed = True
            print(f"  {method} failure: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
