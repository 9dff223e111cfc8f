"""The drop folder's enrollment: a photo complete on disk under dropbox/<gallery>/ -> the gateway's CreateFace.

No WebDAV here (gateway_http.upload calls `DropFolder.enroll` once a PUT or MOVE has put a whole photo in place,
and `DropFolder.start` once it listens). The outcome is written beside the photo as `<name>.result.json`, which
the uploader reads over WebDAV. Its `status`:
- "enrolled": the faces are in the gallery (`face_ids`, and each face's id, box, quality, orientation and URLs in
  `faces`); `skipped` lists the faces found in the photo but not enrolled (too small, ...) and why, in the HTTP
  API's shape (gateway_http.replies), [] when none;
- "skipped": the same photo is already enrolled in this gallery (`duplicate_of` names its file, `face_ids` its
  faces); with `duplicates = "enroll"` it is enrolled again instead ("enrolled" with `duplicate_of`);
- "rejected": the photo or request is at fault (`error.code` and `error.reason` say why: no face, no face that
  can be used (the extractor's reason names its size and the minimum), not an image, ...): the same photo would
  fail the same way, so it is not retried; dropping it again will not help;
- "failed": the cluster could not take it now (gateway down, timeout, ...) or a file could not be read or
  written (`error` says which). It is retried in the background, `retry_initial_s` after the first attempt,
  doubling up to `retry_max_interval_s` between attempts, for `retry_max_hours` after the first attempt:
  `retry` is {"attempts": failed attempts so far, "since": when the first began, "next_at": the next one}
  while retries go on, and has "gave_up_at" instead of "next_at" once they stopped (the window passed, or the
  photo is gone: `retry.reason`); only then must the photo be dropped again. A retry that succeeds turns the
  file into "enrolled" (or "skipped", "rejected"), with `attempts` counting every try.
Every result also has `file`, `gallery`, `sha256` (of the photo's bytes), `meta` and `at` (when it was written).

At start (`DropFolder.start`) the folder is scanned: a photo with no result of its own (an upload acknowledged,
or put in place, just before the server stopped), or one put in place after its result was written, is enrolled;
a "failed" result still within its retry window is retried at its `next_at`. Interrupted uploads never reach
dropbox/ (uploads are written under .upload-state/partial and moved there only once whole; what a stopped
server left in partial/ is deleted at the next start), so they are never enrolled; empty files (the
placeholders a LOCK makes) are left alone. A retry first looks for faces the gateway enrolled from the same
photo after it was put in place (same gallery, meta and photo hash) whose reply was lost (a timeout, a server
stopped half way), and takes those instead of enrolling the photo twice.

Duplicates are recognised by the photo's sha256 per gallery, recorded under `.upload-state/dropbox/<gallery>/`
once enrolled; a record whose faces have all been deleted since no longer counts. One photo file is enrolled by
one thread at a time (PUTs, retries and the start-up scan alike), and one photo content per gallery too.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import re
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc

from findface_grpc import photo_formats
from findface_grpc.auth import token_metadata
from findface_grpc.observability import metrics
from findface_grpc.observability.interceptors import sync_channel
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from gateway_http.config import SKIP, UploadConfig
from gateway_http.replies import quality, skipped_json

log = logging.getLogger(__name__)

STATE_DIR = ".upload-state"
RESULT_SUFFIX = ".result.json"
# The caller's fault: the same photo will fail the same way. Anything else is the cluster's and worth a retry.
REJECTED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OUT_OF_RANGE,
}
SELECTORS = {"all": common_pb2.MULTI_FACE_SELECTOR_ALL, "biggest": common_pb2.MULTI_FACE_SELECTOR_BIGGEST}
# Names in the drop folder (gateway_http.upload checks them on the way in; the start-up scan checks them again).
DROP_NAME = re.compile(rf"[a-zA-Z0-9_-]{{1,48}}\.(?i:{'|'.join(photo_formats.EXTENSIONS)})")
GALLERY_NAME = re.compile(r"[a-zA-Z0-9_-]{1,48}")
# How long close() waits for enrollments under way before cancelling them (they are retried at the next start).
CLOSE_WAIT_S = 10.0


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


def _parse_time(value) -> datetime | None:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def result_path(photo: Path) -> Path:
    return photo.with_name(photo.name.rsplit(".", 1)[0] + RESULT_SUFFIX)


def read_result(path: Path) -> dict | None:
    """A result file's content; None when missing or unreadable (then it is rewritten by the next attempt)."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[object, list] = {}  # key -> [lock, holders and waiters]

    @contextmanager
    def hold(self, key):
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[key]


class DropFolder:
    def __init__(self, config: UploadConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.state = root / STATE_DIR
        self.channel = grpc.insecure_channel(config.gateway, options=CHANNEL_OPTIONS)
        self.stub = gateway_pb2_grpc.FaceServiceStub(sync_channel(self.channel))
        self.metadata = token_metadata(config.gateway_token) if config.gateway_token else ()
        self._locks = KeyedLocks()
        # Each enrollment makes the gateway PUT crops back into this server: leave threads free to serve them.
        slots = max(1, config.threads // 2)
        self._slots = threading.BoundedSemaphore(slots)
        # Retries: (gallery, name) -> when (epoch s), and a heap of the same (stale entries skipped).
        self._due: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"drop-retry-{i}", daemon=True)
                         for i in range(max(1, slots // 2))]
        self._threads.append(threading.Thread(target=self._scan, name="drop-scan", daemon=True))
        metrics.DROP_RETRIES.set_function(lambda: len(self._due))

    # ---- life cycle ----

    def start(self) -> None:
        """Start the retry workers and the scan for photos left without a result (call once serving: an
        enrollment makes the gateway store crops in this server)."""
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop retrying; enrollments under way get CLOSE_WAIT_S to finish, then their calls are cancelled (the
        photo's result says "failed", retried at the next start)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        self.channel.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(2.0)

    # ---- enrolling ----

    def enroll(self, gallery: str, name: str, photo: Path, sha256: str) -> dict:
        """Enroll the faces of `photo` (dropbox/<gallery>/<name>), just put in place whole, and write its result
        file; returns the result. A failure is retried in the background."""
        with self._slots, self._locks.hold(("file", gallery, name)):
            return self._attempt(gallery, name, photo, sha256, None, None, None)

    def _attempt(self, gallery: str, name: str, photo: Path, sha256: str, data: bytes | None,
                 previous: dict | None, recover_since: datetime | None) -> dict:
        """One attempt, under the file's lock: enroll, write the result, schedule a retry when it failed.

        `previous`: the "failed" result of this photo that this attempt retries (None: a first attempt).
        `recover_since`: when the photo was put in place; faces enrolled from it since then count as its own.
        """
        stem = name.rsplit(".", 1)[0]
        started = datetime.now(timezone.utc)
        result: dict = {"file": name, "gallery": gallery, "sha256": sha256, "meta": stem}
        with self._locks.hold(("photo", gallery, sha256)):
            try:
                if data is None:
                    data = photo.read_bytes()
                result.update(self._enroll(gallery, stem, photo, sha256, data, recover_since))
            except grpc.RpcError as exc:
                code = exc.code()
                result["status"] = "rejected" if code in REJECTED_CODES else "failed"
                result["error"] = {"code": code.name, "reason": exc.details() or code.name}
            except OSError as exc:
                result["status"] = "failed"
                result["error"] = {"code": "IO_ERROR", "reason": str(exc)}
            except Exception as exc:  # noqa: BLE001 - the uploader must still get a result file
                log.exception("drop folder: %s/%s", gallery, name)
                result["status"] = "failed"
                result["error"] = {"code": "INTERNAL", "reason": f"{type(exc).__name__}: {exc}"}
        metrics.DROPS.labels(result["status"]).inc()
        attempts, since = 1, started
        if previous is not None:
            retry = previous.get("retry") or {}
            attempts = int(retry.get("attempts", 1)) + 1
            since = _parse_time(retry.get("since")) or _parse_time(previous.get("at")) or started
        now = datetime.now(timezone.utc)
        if result["status"] == "failed":
            delay = min(self.config.retry_initial_s * 2 ** min(attempts - 1, 60), self.config.retry_max_interval_s)
            next_at = now + timedelta(seconds=delay)
            result["retry"] = {"attempts": attempts, "since": _iso(since)}
            if next_at <= since + timedelta(hours=self.config.retry_max_hours):
                result["retry"]["next_at"] = _iso(next_at)
            else:
                result["retry"]["gave_up_at"] = _iso(now)
                result["retry"]["reason"] = f"still failing after {self.config.retry_max_hours:g} h: drop it again"
        elif attempts > 1:
            result["attempts"] = attempts
        result["at"] = _iso(now)
        retry = result.get("retry", {})
        log.info("drop folder: %s/%s %s%s (attempt %d%s)", gallery, name, result["status"],
                 f": {result['error']['reason']}" if "error" in result else "", attempts,
                 f", next at {retry['next_at']}" if "next_at" in retry else ", giving up" if retry else "")
        if "next_at" in retry:
            self._schedule(gallery, name, next_at.timestamp())
        try:
            write_atomic(result_path(photo), json.dumps(result, indent=2).encode() + b"\n", self.state / "tmp")
        except OSError as exc:
            # Taken up again later (the retry finds the faces enrolled now, if any, rather than enrolling twice).
            log.error("drop folder: result of %s/%s not written: %s", gallery, name, exc)
            self._schedule(gallery, name, time.time() + self.config.retry_max_interval_s)
        return result

    def _call(self, method, request):
        return method(request, metadata=self.metadata, timeout=self.config.call_timeout_s)

    def _still_enrolled(self, ids: list[int]) -> list[int]:
        alive = []
        for face_id in ids:
            try:
                self._call(self.stub.GetFace, gateway_pb2.GetFaceRequest(id=face_id))
                alive.append(face_id)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        return alive

    def _enrolled_since(self, gallery: str, stem: str, sha256: str, since: datetime) -> list:
        """Faces of this gallery with this meta and photo enrolled since `since`: an earlier attempt's, whose
        reply never came back."""
        request = gateway_pb2.ListFacesRequest(gallery=gallery, meta=stem, limit=1000)
        try:
            reply = self._call(self.stub.ListFaces, request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # no such gallery (yet)
                return []
            raise
        return sorted((f for f in reply.faces if f.photo_hash == sha256
                       and f.created_at.ToDatetime(tzinfo=timezone.utc) >= since), key=lambda f: f.id)

    def _create_face(self, image: bytes, gallery: str, meta: str):
        request = gateway_pb2.CreateFaceRequest(
            image=common_pb2.ImageSource(content=image), galleries=[gallery], meta=meta,
            mf_selector=SELECTORS[self.config.multi_face],
        )
        try:
            return self._call(self.stub.CreateFace, request)
        except grpc.RpcError as exc:
            missing = exc.code() == grpc.StatusCode.NOT_FOUND and "gallery" in (exc.details() or "")
            if not (missing and self.config.create_galleries):
                raise
        try:
            self._call(self.stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name=gallery))
            log.info("drop folder: created gallery %r", gallery)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return self._call(self.stub.CreateFace, request)

    def _enroll(self, gallery: str, stem: str, photo: Path, sha256: str, data: bytes,
                recover_since: datetime | None) -> dict:
        record_path = self.state / "dropbox" / gallery / f"{sha256}.json"
        found = self._enrolled_since(gallery, stem, sha256, recover_since) if recover_since is not None else []
        duplicate_of = None
        if not found and record_path.exists():
            record = json.loads(record_path.read_text())
            alive = self._still_enrolled(record["face_ids"])
            if alive:
                duplicate_of = record
                if self.config.duplicates == SKIP:
                    return {"status": "skipped", "reason": "duplicate: this photo is already enrolled in this gallery",
                            "duplicate_of": record["file"], "face_ids": alive, "faces": []}
        if found:
            records, skipped = found, []
        else:
            reply = self._create_face(data, gallery, stem)
            records, skipped = reply.faces, reply.skipped
        faces = [
            {"id": f.id, "bbox": [f.bbox.x1, f.bbox.y1, f.bbox.x2, f.bbox.y2], "quality": quality(f.quality),
             "orientation": f.orientation, "photo": f.photo, "thumbnail": f.thumbnail, "normalized": f.normalized}
            for f in records
        ]
        ids = [f["id"] for f in faces]
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record_path, json.dumps({"file": photo.name, "face_ids": ids}).encode(), self.state / "tmp")
        out = {"status": "enrolled", "face_ids": ids, "faces": faces, "skipped": skipped_json(skipped)}
        if found:
            # The faces that attempt left out went with its reply; the enrolled ones are all the gateway keeps.
            out["reason"] = "enrolled by an earlier attempt whose reply was lost (the faces it left out are not known)"
        elif duplicate_of is not None:
            out["reason"] = "duplicate enrolled again (duplicates = \"enroll\")"
            out["duplicate_of"] = duplicate_of["file"]
        return out

    # ---- retries and the start-up scan ----

    def _schedule(self, gallery: str, name: str, when: float) -> None:
        key = (gallery, name)
        with self._wake:
            if self._stopping.is_set():
                return  # the result file says when; the next start's scan takes it from there
            current = self._due.get(key)
            if current is not None and current <= when:
                return  # that earlier turn reads the result file and comes back at its next_at
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._wake.notify()

    def _next_due(self) -> tuple[str, str] | None:
        """The next (gallery, name) whose time has come, waiting for it; None once stopping."""
        with self._wake:
            while not self._stopping.is_set():
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # rescheduled or taken since
                now = time.time()
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._wake.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (key := self._next_due()) is not None:
            try:
                self._retry(*key)
            except Exception:  # noqa: BLE001 - one photo's trouble must not end the worker
                log.exception("drop folder: retry of %s/%s", *key)

    def _retry(self, gallery: str, name: str) -> None:
        """A turn of dropbox/<gallery>/<name>: enroll it unless its result file says it is done (or not yet due).
        The result file is the truth: it may have changed since this turn was scheduled (a PUT again)."""
        photo = self.root / "dropbox" / gallery / name
        with self._slots, self._locks.hold(("file", gallery, name)):
            if self._stopping.is_set():
                return
            previous = read_result(result_path(photo))
            try:
                info = photo.lstat()
                if not stat.S_ISREG(info.st_mode):
                    return
                data = photo.read_bytes()
            except FileNotFoundError:
                self._photo_gone(photo, previous)
                return
            except OSError as exc:
                log.warning("drop folder: %s/%s unreadable: %s", gallery, name, exc)
                if previous is not None and previous.get("file") == name and previous.get("status") == "failed":
                    self._attempt(gallery, name, photo, previous.get("sha256", ""), None, previous, None)
                else:
                    self._attempt(gallery, name, photo, "", None, None, None)
                return
            sha256 = hashlib.sha256(data).hexdigest()
            placed = datetime.fromtimestamp(info.st_ctime, timezone.utc)
            ours = previous is not None and previous.get("file") == name and previous.get("sha256") == sha256
            if not ours:  # no result, or one of another file or content: this photo was never enrolled
                self._attempt(gallery, name, photo, sha256, data, None, placed)
                return
            if previous.get("status") != "failed" or "gave_up_at" in (previous.get("retry") or {}):
                return
            due = _parse_time((previous.get("retry") or {}).get("next_at"))
            if due is not None and due.timestamp() > time.time() + 0.05:
                self._schedule(gallery, name, due.timestamp())
                return
            since = _parse_time((previous.get("retry") or {}).get("since")) or _parse_time(previous.get("at"))
            if since is not None and datetime.now(timezone.utc) > since + timedelta(hours=self.config.retry_max_hours):
                log.info("drop folder: %s/%s failing since %s: giving up", gallery, name, _iso(since))
                self._stop_retries(photo, previous, f"still failing after {self.config.retry_max_hours:g} h: "
                                                    "drop it again")
                return
            self._attempt(gallery, name, photo, sha256, data, previous, placed)

    def _photo_gone(self, photo: Path, previous: dict | None) -> None:
        """Deleted (or moved away) while a retry was pending: say the retries stopped."""
        retry = (previous or {}).get("retry") or {}
        if previous is None or previous.get("file") != photo.name or "next_at" not in retry:
            return
        log.info("drop folder: %s/%s gone before its retry", photo.parent.name, photo.name)
        self._stop_retries(photo, previous, "the photo is gone (deleted or moved away)")

    def _stop_retries(self, photo: Path, previous: dict, reason: str) -> None:
        """Rewrite a "failed" result whose retries end now without another attempt."""
        retry = {k: v for k, v in (previous.get("retry") or {}).items() if k != "next_at"}
        retry.setdefault("attempts", 1)
        previous.update(retry={**retry, "gave_up_at": _now(), "reason": reason}, at=_now())
        try:
            write_atomic(result_path(photo), json.dumps(previous, indent=2).encode() + b"\n", self.state / "tmp")
        except OSError as exc:
            log.error("drop folder: result of %s/%s not updated: %s", photo.parent.name, photo.name, exc)

    def _scan(self) -> None:
        """Schedule every photo the folder holds without a result of its own, or with a "failed" one whose
        retries go on: what an acknowledged upload left when the server stopped before (or while) enrolling it."""
        started = time.monotonic()
        count = 0
        try:
            for gallery in sorted(os.scandir(self.root / "dropbox"), key=lambda e: e.name):
                if self._stopping.is_set():
                    return
                if not (GALLERY_NAME.fullmatch(gallery.name) and gallery.is_dir(follow_symlinks=False)):
                    continue
                for entry in sorted(os.scandir(gallery.path), key=lambda e: e.name):
                    if DROP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        when = self._scan_one(Path(entry.path), entry.stat(follow_symlinks=False))
                        if when is not None:
                            self._schedule(gallery.name, entry.name, when)
                            count += 1
        except OSError as exc:
            log.error("drop folder: scan of %s failed: %s", self.root / "dropbox", exc)
        log.info("drop folder: %d photo(s) to enroll or retry found at start (%.1fs)", count,
                 time.monotonic() - started)

    def _scan_one(self, photo: Path, info: os.stat_result) -> float | None:
        """When to take `photo` up (epoch s), or None to leave it."""
        if info.st_size == 0:
            return None  # a LOCK's placeholder, or an empty PUT that got its "rejected" result at once
        path = result_path(photo)
        try:
            written = path.stat().st_mtime_ns
        except FileNotFoundError:
            return time.time()
        except OSError:
            return None
        if info.st_ctime_ns > written:
            return time.time()  # put in place after its result was written: _retry compares the contents
        previous = read_result(path)
        if previous is None:
            return time.time()
        retry = previous.get("retry") or {}
        if previous.get("file") != photo.name or previous.get("status") != "failed" or "gave_up_at" in retry:
            return None
        due = _parse_time(retry.get("next_at"))
        return due.timestamp() if due is not None else time.time()
