"""`findface-reextract`: recompute every active face's descriptor with a new model pack, into new shards.

    findface-reextract --mongo-uri URI [--mongo-db findface] --extractor NEW_EXTRACTOR \
        --shards NEW_SHARD1,NEW_SHARD2 [--cells 1024] [--cell-map 0-511:0 ...] [--state FILE] [--concurrency 4]

Pages through the active faces in MongoDB by id; for each, fetches the original photo from the face's `photo`
URL (the photo store; http(s) only, at most 10 MB), asks the NEW extractor for the descriptor of the face in the
recorded bbox (Extract with boxes=[bbox], so the same face is embedded), and Adds it, batched, to the shard that
owns its id under the same cell map (--cells, --cell-map as in the gateway's config) among the NEW shards, with
the same galleries. The gateway can then be pointed at the new extractor and the new shards with the same MongoDB.

Never writes to MongoDB or the old shards. Refuses to start when a target shard holds descriptors of another model
(each must be empty or hold exactly the new extractor's model, as after an interrupted run). Resumable: the state
file (default ./findface-reextract.state.json) records the last face id completed and the faces that failed; a
re-run continues after that id and retries the failures. Progress on stderr; a summary (done, skipped, failed with
reasons) on stdout. Exit code 0 when nothing failed, 1 when some face failed, 2 for bad arguments or refused shards.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pymongo

from findface_grpc.gateway.cells import CellMap
from findface_grpc.gateway.domain import DEFAULT_GALLERY
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc, shard_pb2, shard_pb2_grpc

MAX_PHOTO_BYTES = 10_000_000
PAGE = 256
STATE_NAME = "findface-reextract.state.json"


class Refused(Exception):
    """A target shard that must not be written to."""


class FaceFailed(Exception):
    """One face that cannot be re-extracted; the message is the reason."""


@dataclass
class Summary:
    total: int = 0
    done: int = 0
    skipped: int = 0  # completed by an earlier run
    failed: dict[int, str] = field(default_factory=dict)


def fetch_photo(url: str, timeout_s: float, max_bytes: int = MAX_PHOTO_BYTES) -> bytes:
    if not url:
        raise FaceFailed("no photo URL")
    if urlsplit(url).scheme not in ("http", "https"):
        raise FaceFailed(f"photo URL {url!r} is not http(s)")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            data = reply.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise FaceFailed(f"photo {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FaceFailed(f"photo {url}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > max_bytes:
        raise FaceFailed(f"photo {url}: larger than {max_bytes} bytes")
    return data


def load_state(path: Path) -> tuple[int, dict[int, str]]:
    try:
        state = json.loads(path.read_text())
        return int(state.get("last_id", 0)), {int(k): v for k, v in state.get("failed", {}).items()}
    except FileNotFoundError:
        return 0, {}
    except (ValueError, AttributeError):
        return 0, {}  # unreadable: start over (Add overwrites, so nothing is duplicated)


def save_state(path: Path, last_id: int, model_id: str, failed: dict[int, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"last_id": last_id, "model_id": model_id,
                               "failed": {str(k): v for k, v in sorted(failed.items())}}))
    os.replace(tmp, path)


def check_shards(shards: list, model_id: str, addresses: list[str], timeout_s: float) -> None:
    for stub, addr in zip(shards, addresses):
        stats = stub.Stats(shard_pb2.StatsRequest(), timeout=timeout_s)
        if stats.face_count and stats.model_id != model_id or stats.model_id not in ("", model_id):
            raise Refused(f"target shard {addr} holds {stats.face_count} descriptors of model {stats.model_id!r}, "
                          f"not of the new extractor's {model_id!r}: use empty shards (or these after a "
                          "run of this tool with the same extractor)")


class Reextractor:
    def __init__(self, faces_collection, extractor, shards: list, cell_map: CellMap, timeout_s: float,
                 concurrency: int, progress_stream=None) -> None:
        self.faces = faces_collection
        self.extractor = extractor
        self.shards = shards
        self.cell_map = cell_map
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.stream = progress_stream or sys.stderr
        self._last_shown = 0.0
        self._last_line = ""
        self._lock = threading.Lock()

    def descriptor(self, doc: dict) -> common_pb2.Descriptor:
        data = fetch_photo(doc.get("photo") or "", self.timeout_s)
        x1, y1, x2, y2 = (list(doc.get("bbox") or ()) + [0.0] * 4)[:4]
        if x2 <= x1 or y2 <= y1:
            raise FaceFailed("no bounding box recorded")
        request = extractor_pb2.ExtractRequest(
            image=data, boxes=[common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)])
        try:
            reply = self.extractor.Extract(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise FaceFailed(f"extractor: {exc.code().name}: {exc.details()}") from None
        found = [f for f in reply.faces if f.descriptor.vector or f.descriptor.dim]
        if not found:
            raise FaceFailed("no face found in the recorded box")
        return found[0].descriptor

    def one(self, doc: dict) -> tuple[int, shard_pb2.ShardFace | None, str]:
        try:
            d = self.descriptor(doc)
        except FaceFailed as exc:
            return doc["_id"], None, str(exc)
        galleries = list(dict.fromkeys([DEFAULT_GALLERY, *doc.get("galleries", ())]))
        return doc["_id"], shard_pb2.ShardFace(id=doc["_id"], galleries=galleries, descriptor=d), ""

    def process(self, docs: list[dict], pool: ThreadPoolExecutor, summary: Summary) -> None:
        by_shard: dict[int, list[shard_pb2.ShardFace]] = {}
        for face_id, face, reason in pool.map(self.one, docs):
            if face is None:
                summary.failed[face_id] = reason
                continue
            summary.failed.pop(face_id, None)
            by_shard.setdefault(self.cell_map.shard_of(face_id), []).append(face)
        for shard, faces in by_shard.items():
            try:
                self.shards[shard].Add(shard_pb2.AddRequest(faces=faces), timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                    # A shard refusing the model is not a per-face problem: stop, the state stays before this page.
                    raise Refused(f"shard {shard} refused the batch: {exc.code().name}: {exc.details()}") from None
                raise
            summary.done += len(faces)

    def show(self, summary: Summary, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_shown < 2.0:
            return
        self._last_shown = now
        line = (f"reextract: {summary.done + summary.skipped + len(summary.failed)}/{summary.total}  "
                f"done {summary.done}  skipped {summary.skipped}  failed {len(summary.failed)}\n")
        if line == self._last_line:
            return
        self._last_line = line
        self.stream.write(line)
        self.stream.flush()

    def run(self, state_path: Path, model_id: str) -> Summary:
        last_id, failed_before = load_state(state_path)
        summary = Summary()
        active = {"state": "active", "_id": {"$type": "number"}}
        summary.total = self.faces.count_documents(active)
        summary.skipped = self.faces.count_documents({**active, "_id": {"$lte": last_id}}) if last_id else 0
        with ThreadPoolExecutor(self.concurrency) as pool:
            # First the faces that failed last time (photo back, perhaps), then on from where it stopped.
            if failed_before:
                retry = list(self.faces.find({"state": "active", "_id": {"$in": sorted(failed_before)}}))
                summary.skipped -= len(retry)
                self.process(retry, pool, summary)
                save_state(state_path, last_id, model_id, summary.failed)
            while True:
                docs = list(self.faces.find({"state": "active", "_id": {"$gt": last_id, "$type": "number"}})
                            .sort("_id", pymongo.ASCENDING).limit(PAGE))
                if not docs:
                    break
                self.process(docs, pool, summary)
                last_id = docs[-1]["_id"]
                save_state(state_path, last_id, model_id, summary.failed)
                self.show(summary)
        self.show(summary, final=True)
        return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-extract every active face with a new extractor into new shards")
    parser.add_argument("--mongo-uri", required=True)
    parser.add_argument("--mongo-db", default="findface")
    parser.add_argument("--extractor", required=True, help="the NEW extractor's gRPC address, host:port")
    parser.add_argument("--shards", required=True, help="the NEW shards' addresses, comma-separated, in order")
    parser.add_argument("--cells", type=int, default=1024, help="the gateway's [gateway].cells (default 1024)")
    parser.add_argument("--cell-map", nargs="*", default=(), help="the gateway's [gateway].cell_map entries")
    parser.add_argument("--state", type=Path, default=Path(STATE_NAME), help=f"progress file (default ./{STATE_NAME})")
    parser.add_argument("--concurrency", type=int, default=4, help="faces fetched and extracted at once (default 4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call and photo fetch (default 60)")
    args = parser.parse_args(argv)
    addresses = [a.strip() for a in args.shards.split(",") if a.strip()]
    if not addresses:
        parser.error("--shards: at least one address")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be in 1..64")
    try:
        cell_map = CellMap.from_config(args.cells, len(addresses), args.cell_map)
    except Exception as exc:  # noqa: BLE001 - the config's own message
        parser.error(f"--cells/--cell-map: {exc}")

    channels = [grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in [args.extractor, *addresses]]
    client = pymongo.MongoClient(args.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        extractor = extractor_pb2_grpc.ExtractorStub(channels[0])
        shards = [shard_pb2_grpc.ShardStub(ch) for ch in channels[1:]]
        try:
            model_id = extractor.Info(extractor_pb2.InfoRequest(), timeout=args.timeout).embedder_model_id
            check_shards(shards, model_id, addresses, args.timeout)
            tool = Reextractor(client[args.mongo_db]["faces"], extractor, shards, cell_map, args.timeout,
                               args.concurrency)
            summary = tool.run(args.state, model_id)
        except Refused as exc:
            sys.stderr.write(f"findface-reextract: refused: {exc}\n")
            return 2
        except grpc.RpcError as exc:
            sys.stderr.write(f"findface-reextract: {exc.code().name}: {exc.details()}\n")
            return 2
    finally:
        client.close()
        for ch in channels:
            ch.close()
    sys.stdout.write(f"{summary.total} active faces: {summary.done} re-extracted, {summary.skipped} skipped "
                     f"(done before), {len(summary.failed)} failed\n")
    for face_id, reason in sorted(summary.failed.items()):
        sys.stdout.write(f"  failed  face {face_id}: {reason}\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
