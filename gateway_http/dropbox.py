"""The drop folder's enrollment: a photo complete on disk under dropbox/<gallery>/ -> the gateway's CreateFace.

No WebDAV here (gateway_http.upload calls `DropFolder.enroll` once a PUT or MOVE has put a whole photo in place).
The outcome is written beside the photo as `<name>.result.json`, which the uploader reads over WebDAV:
`status` is "enrolled" (with the faces), "skipped" (the same photo is already enrolled in this gallery, its faces
named), "rejected" (the photo or request is at fault: `error.reason` says why; dropping it again will not help) or
"failed" (the cluster could not take it now: retry by dropping it again).

Duplicates are recognised by the photo's sha256 per gallery, recorded under `.upload-state/dropbox/<gallery>/`
once enrolled; a record whose faces have all been deleted since no longer counts.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import grpc

from findface_grpc.auth import token_metadata
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from gateway_http.config import SKIP, UploadConfig

log = logging.getLogger(__name__)

STATE_DIR = ".upload-state"
RESULT_SUFFIX = ".result.json"
# The caller's fault: the same photo will fail the same way. Anything else is the cluster's and worth a retry.
REJECTED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OUT_OF_RANGE,
}
SELECTORS = {"all": common_pb2.MULTI_FACE_SELECTOR_ALL, "biggest": common_pb2.MULTI_FACE_SELECTOR_BIGGEST}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


class DropFolder:
    def __init__(self, config: UploadConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.state = root / STATE_DIR
        self.channel = grpc.insecure_channel(config.gateway, options=CHANNEL_OPTIONS)
        self.stub = gateway_pb2_grpc.FaceServiceStub(self.channel)
        self.metadata = token_metadata(config.gateway_token) if config.gateway_token else ()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Each enrollment makes the gateway PUT crops back into this server: leave threads free to serve them.
        self._slots = threading.BoundedSemaphore(max(1, config.threads // 2))

    def close(self) -> None:
        self.channel.close()

    def _lock(self, gallery: str, sha256: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault((gallery, sha256), threading.Lock())

    def _record_path(self, gallery: str, sha256: str) -> Path:
        return self.state / "dropbox" / gallery / f"{sha256}.json"

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

    def enroll(self, gallery: str, name: str, photo: Path, sha256: str) -> dict:
        """Enroll the faces of `photo` (dropbox/<gallery>/<name>) and write its result file; returns the result."""
        stem = name.rsplit(".", 1)[0]
        result: dict = {"file": name, "gallery": gallery, "sha256": sha256, "meta": stem}
        with self._slots, self._lock(gallery, sha256):
            try:
                result.update(self._enroll(gallery, stem, photo, sha256))
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
        result["at"] = _now()
        log.info("drop folder: %s/%s %s%s", gallery, name, result["status"],
                 f" ({result['error']['reason']})" if "error" in result else "")
        write_atomic(photo.with_name(stem + RESULT_SUFFIX), json.dumps(result, indent=2).encode() + b"\n",
                     self.state / "tmp")
        return result

    def _enroll(self, gallery: str, stem: str, photo: Path, sha256: str) -> dict:
        record_path = self._record_path(gallery, sha256)
        duplicate_of = None
        if record_path.exists():
            record = json.loads(record_path.read_text())
            alive = self._still_enrolled(record["face_ids"])
            if alive:
                duplicate_of = record
                if self.config.duplicates == SKIP:
                    return {"status": "skipped", "reason": "duplicate: this photo is already enrolled in this gallery",
                            "duplicate_of": record["file"], "face_ids": alive, "faces": []}
        reply = self._create_face(photo.read_bytes(), gallery, stem)
        faces = [
            {"id": f.id, "bbox": [f.bbox.x1, f.bbox.y1, f.bbox.x2, f.bbox.y2], "photo": f.photo,
             "thumbnail": f.thumbnail, "normalized": f.normalized}
            for f in reply.faces
        ]
        ids = [f["id"] for f in faces]
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record_path, json.dumps({"file": photo.name, "face_ids": ids}).encode(), self.state / "tmp")
        out = {"status": "enrolled", "face_ids": ids, "faces": faces}
        if duplicate_of is not None:
            out["reason"] = "duplicate enrolled again (duplicates = \"enroll\")"
            out["duplicate_of"] = duplicate_of["file"]
        return out
