"""`findface-enroll`: enroll a folder tree of photos over the gateway's gRPC API (the original's mass enroll).

    FINDFACE_TOKEN=<key> findface-enroll PHOTOS --gateway 127.0.0.1:50051 [--gallery NAME] [--concurrency 8]
        [--multi-face biggest|all] [--min-quality Q]

Each photo (jpg, jpeg, png, webp, gif, heic, heif or avif, in any case: photo_formats.EXTENSIONS; found
recursively, in name order) is one CreateFace with meta = its file name without the extension. The gallery is
--gallery, or else the photo's first folder under PHOTOS (photos directly in PHOTOS go to "default"); missing
galleries are created unless --no-create-galleries. At most --concurrency calls are in flight. Progress goes to
stderr; a summary of enrolled, skipped and failed files (with reasons) ends it, with how many faces the gateway
found but left out (too small, under --min-quality) and why: with --multi-face all a photo is enrolled with its
usable faces and the others are left out; a photo with no usable face (with biggest, the default: whose
biggest face cannot be used) fails with the extractor's reason.

Resumable and idempotent: every outcome is appended to a state file (default PHOTOS/.findface-enroll.jsonl, one
JSON object per line, written as each photo finishes); a later run skips the photos it lists as enrolled with the
same content (sha256) and gallery, and tries the rest again. An enrolled photo's line lists the faces left out
(`skipped`: each one's reason and the extractor's message). A line cut short by a crash is ignored. Exit code 0
when nothing failed, 1 otherwise, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from findface_grpc import photo_formats
from findface_grpc.auth import token_metadata
from findface_grpc.gateway.domain import DEFAULT_GALLERY, GALLERY_NAME
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

STATE_NAME = ".findface-enroll.jsonl"
SELECTORS = {"biggest": common_pb2.MULTI_FACE_SELECTOR_BIGGEST, "all": common_pb2.MULTI_FACE_SELECTOR_ALL}
# Worth another try in the same run: the cluster, not the photo, was the problem.
RETRY_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
ATTEMPTS = 3
# How the summary names each SkippedFace reason (its state-file name, as in the HTTP API's "skipped").
LEFT_OUT_WORDS = {"too_small": "too small", "low_quality": "under min_quality"}


@dataclass
class Summary:
    total: int = 0
    enrolled: int = 0
    faces: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file -> reason
    left_out: Counter[str] = field(default_factory=Counter)  # skip reason -> faces found but not enrolled

    @property
    def done(self) -> int:
        return self.enrolled + self.skipped + len(self.failed)

    def left_out_line(self) -> str:
        """The faces found but not enrolled, by reason ("3 faces left out: 2 too small, 1 under min_quality");
        "" when there were none."""
        total = sum(self.left_out.values())
        if not total:
            return ""
        # In one order whatever the order the photos finished in; reasons of a newer gateway last.
        order = [*LEFT_OUT_WORDS, *sorted(set(self.left_out) - set(LEFT_OUT_WORDS))]
        reasons = ", ".join(f"{self.left_out[r]} {LEFT_OUT_WORDS.get(r, r)}" for r in order if self.left_out[r])
        return f"{total} face{'s' if total > 1 else ''} left out: {reasons}"


@dataclass(frozen=True)
class Outcome:
    status: str  # "enrolled", "skipped" (enrolled by an earlier run) or "failed"
    face_ids: tuple[int, ...] = ()
    reason: str = ""  # why it failed, or was skipped
    left_out: tuple[str, ...] = ()  # the reason of each face found but not enrolled


def skip_reason(value: int) -> str:
    """A SkipReason as the HTTP API and the drop folder name it: "too_small", "low_quality"."""
    known = common_pb2.SkipReason.DESCRIPTOR.values_by_number.get(value)
    return known.name.removeprefix("SKIP_REASON_").lower() if known else f"reason_{value}"


def find_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower().lstrip(".") in photo_formats.EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def gallery_of(root: Path, photo: Path, given: str) -> str:
    if given:
        return given
    parts = photo.relative_to(root).parts
    return parts[0] if len(parts) > 1 else DEFAULT_GALLERY


def load_state(path: Path) -> dict[tuple[str, str, str], list[int]]:
    """(file, sha256, gallery) -> face ids, for the photos an earlier run enrolled."""
    done: dict[tuple[str, str, str], list[int]] = {}
    if not path.exists():
        return done
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run that was killed while writing it
        if entry.get("status") == "enrolled":
            done[(entry["file"], entry["sha256"], entry["gallery"])] = entry["face_ids"]
    return done


class Enroller:
    def __init__(self, stub, token: str, timeout_s: float, selector: str, create_galleries: bool,
                 min_quality: float = 0.0) -> None:
        self.stub = stub
        self.metadata = token_metadata(token) if token else ()
        self.timeout_s = timeout_s
        self.selector = SELECTORS[selector]
        self.create_galleries = create_galleries
        self.min_quality = min_quality
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def _ensure_gallery(self, name: str) -> None:
        with self._lock:
            if name in self._created or name == DEFAULT_GALLERY:
                return
            try:
                self.stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name=name), metadata=self.metadata,
                                        timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            self._created.add(name)

    def enroll(self, image: bytes, gallery: str, meta: str) -> gateway_pb2.CreateFaceResponse:
        if self.create_galleries:
            self._ensure_gallery(gallery)
        request = gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=image), galleries=[gallery],
                                                meta=meta, mf_selector=self.selector, min_quality=self.min_quality)
        for attempt in range(ATTEMPTS):
            try:
                return self.stub.CreateFace(request, metadata=self.metadata, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() not in RETRY_CODES or attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")


class Progress:
    def __init__(self, summary: Summary, stream=sys.stderr) -> None:
        self.summary = summary
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last = 0.0

    def show(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        s = self.summary
        width = 30
        filled = int(width * s.done / s.total) if s.total else width
        rate = s.done / max(now - self.started, 1e-9)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {s.done}/{s.total}  enrolled {s.enrolled}  "
                f"skipped {s.skipped}  failed {len(s.failed)}  {rate:.1f} photos/s")
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()


def run(root: Path, enroller: Enroller, gallery: str = "", concurrency: int = 8, state_path: Path | None = None,
        progress_stream=sys.stderr) -> Summary:
    state_path = state_path or root / STATE_NAME
    done = load_state(state_path)
    photos = find_photos(root)
    summary = Summary(total=len(photos))
    progress = Progress(summary, progress_stream)
    state_lock = threading.Lock()

    with open(state_path, "a") as state:
        def record(entry: dict) -> None:
            with state_lock:
                state.write(json.dumps(entry) + "\n")
                state.flush()

        def one(photo: Path) -> Outcome:
            rel = photo.relative_to(root).as_posix()
            name = gallery_of(root, photo, gallery)
            if not GALLERY_NAME.fullmatch(name):
                return Outcome("failed", reason=f"gallery name {name!r} must match [a-zA-Z0-9_-]{{1,48}}")
            data = photo.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            if (rel, sha256, name) in done:
                return Outcome("skipped", reason="enrolled by an earlier run")
            try:
                reply = enroller.enroll(data, name, photo.stem)
            except grpc.RpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
                record({"file": rel, "sha256": sha256, "gallery": name, "status": "failed", "reason": reason})
                return Outcome("failed", reason=reason)
            ids = [f.id for f in reply.faces]
            skipped = [{"reason": skip_reason(s.reason), "message": s.message} for s in reply.skipped]
            record({"file": rel, "sha256": sha256, "gallery": name, "status": "enrolled", "face_ids": ids,
                    "skipped": skipped})
            return Outcome("enrolled", tuple(ids), left_out=tuple(s["reason"] for s in skipped))

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            in_flight: dict[Future, Path] = {}
            queue = iter(photos)
            while True:
                # Bounded: a huge folder is read as calls complete, not all at once.
                for photo in queue:
                    in_flight[pool.submit(one, photo)] = photo
                    if len(in_flight) >= concurrency:
                        break
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    photo = in_flight.pop(fut)
                    rel = photo.relative_to(root).as_posix()
                    try:
                        outcome = fut.result()
                    except OSError as exc:
                        outcome = Outcome("failed", reason=f"cannot read: {exc}")
                    if outcome.status == "enrolled":
                        summary.enrolled += 1
                        summary.faces += len(outcome.face_ids)
                        summary.left_out.update(outcome.left_out)
                    elif outcome.status == "skipped":
                        summary.skipped += 1
                    else:
                        summary.failed[rel] = outcome.reason
                progress.show()
    progress.show(final=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Enroll a folder tree of photos into a findface-grpc cluster")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--gateway", default="127.0.0.1:50051", help="the gateway's gRPC address, host:port")
    parser.add_argument("--gallery", default="", help="one gallery for every photo (default: one per top folder)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at once (default 8)")
    parser.add_argument("--state-file", type=Path, help=f"progress record (default FOLDER/{STATE_NAME})")
    parser.add_argument("--multi-face", choices=sorted(SELECTORS), default="biggest",
                        help="enroll the biggest face of each photo (default) or all of them")
    parser.add_argument("--min-quality", type=float, default=0.0,
                        help="leave out faces of a lower quality, in [0, 1] (default 0: no limit)")
    parser.add_argument("--no-create-galleries", action="store_true", help="fail photos whose gallery is missing")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(message)s")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be in 1..256")
    if not 0.0 <= args.min_quality <= 1.0:  # also refuses nan
        parser.error("--min-quality must be in [0, 1]")
    if args.gallery and not GALLERY_NAME.fullmatch(args.gallery):
        parser.error("--gallery must match [a-zA-Z0-9_-]{1,48}")
    token = os.environ.get("FINDFACE_TOKEN", "")
    if not token:
        log.warning("FINDFACE_TOKEN is not set: a gateway that requires tokens will refuse every photo")
    with grpc.insecure_channel(args.gateway, options=CHANNEL_OPTIONS) as channel:
        enroller = Enroller(gateway_pb2_grpc.FaceServiceStub(channel), token, args.timeout, args.multi_face,
                            not args.no_create_galleries, args.min_quality)
        summary = run(args.folder, enroller, args.gallery, args.concurrency, args.state_file)
    sys.stdout.write(f"{summary.total} photos: {summary.enrolled} enrolled ({summary.faces} faces), {summary.skipped} "
                     f"skipped (enrolled before), {len(summary.failed)} failed\n")
    if left_out := summary.left_out_line():
        sys.stdout.write(f"{left_out} (per photo in {args.state_file or args.folder / STATE_NAME})\n")
    for rel, reason in sorted(summary.failed.items()):
        sys.stdout.write(f"  failed  {rel}: {reason}\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
