"""The photo store client: the gateway's writes to findface-upload (gateway_http.upload) over plain HTTP.

Layout in the store (see gateway_http/upload.py): originals once per content, `photos/<aa>/<sha256>.<ext>`;
per face `faces/<id>/<key>-thumbnail.jpg` and `faces/<id>/<key>-normalized.png`, where <key> is random, chosen
per face when it is enrolled: the store serves these files without credentials, so their names must not be
guessable from the (sequential) face id. Every call is best effort: the store is
an extra, so a failure is logged and the face simply has no stored copy; it never fails an enrollment or a
deletion. Blocking http.client, run in worker threads so that the event loop keeps serving.
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from findface_grpc import photo_formats

log = logging.getLogger(__name__)


def photo_path(sha256: str, ext: str) -> str:
    return f"photos/{sha256[:2]}/{sha256}.{ext}"


def new_face_key() -> str:
    """22 random characters of [A-Za-z0-9_-] (128 bits): a face's artifacts cannot be found by counting ids."""
    return secrets.token_urlsafe(16)


def face_paths(face_id: int, key: str) -> dict[str, str]:
    return {"thumbnail": f"faces/{face_id}/{key}-thumbnail.jpg", "normalized": f"faces/{face_id}/{key}-normalized.png"}


@dataclass(frozen=True)
class FaceArtifacts:
    face_id: int
    thumbnail: bytes
    normalized: bytes


class PhotoStore:
    def __init__(self, base_url: str, user: str, password: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> int:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout_s)
        headers = {"Authorization": self.auth}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, f"{self.prefix}/{path}", body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            return reply.status
        finally:
            conn.close()

    def _put(self, path: str, data: bytes, content_type: str) -> None:
        status = self._call("PUT", path, data, content_type)
        if status not in (200, 201, 204):
            raise OSError(f"PUT {path}: HTTP {status}")

    def _save(self, photo: bytes, sha256: str, faces: list[FaceArtifacts]) -> dict[int, dict[str, str]]:
        ext = photo_formats.extension_for(photo)
        original = photo_path(sha256, ext)
        # Stored once: the same photo enrolled again (or holding several faces) is not sent again.
        if self._call("HEAD", original) != 200:
            self._put(original, photo, photo_formats.MEDIA_TYPES[ext])
        urls: dict[int, dict[str, str]] = {}
        for face in faces:
            paths = face_paths(face.face_id, new_face_key())
            entry = {"photo": self.url(original)}
            if face.thumbnail:
                self._put(paths["thumbnail"], face.thumbnail, "image/jpeg")
                entry["thumbnail"] = self.url(paths["thumbnail"])
            if face.normalized:
                self._put(paths["normalized"], face.normalized, "image/png")
                entry["normalized"] = self.url(paths["normalized"])
            urls[face.face_id] = entry
        return urls

    async def save(self, photo: bytes, sha256: str, faces: list[FaceArtifacts]) -> dict[int, dict[str, str]]:
        """Store the photo and the faces' crops; face id -> the URLs stored. Empty when the store failed."""
        try:
            return await asyncio.to_thread(self._save, photo, sha256, faces)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("photo store %s: could not store photo %s: %s", self.base_url, sha256[:12], exc)
            return {}

    def _delete(self, face_id: int) -> None:
        status = self._call("DELETE", f"faces/{face_id}")
        if status not in (200, 204, 404):
            raise OSError(f"DELETE faces/{face_id}: HTTP {status}")

    async def delete_face(self, face_id: int) -> None:
        """Delete a face's thumbnail and crop. The original photo is kept: other faces may come from it."""
        try:
            await asyncio.to_thread(self._delete, face_id)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("photo store %s: artifacts of face %d not deleted: %s", self.base_url, face_id, exc)
