"""findface-upload: the photo store and the WebDAV drop folder (`python -m gateway_http.upload --root DIR`).

One folder served over WebDAV (wsgidav on waitress, gateway_http.serving), in three areas:
- `photos/<aa>/<sha256>.<jpg|png|webp>`: original photos, each stored once (named by its hash);
- `faces/<id>/<key>-thumbnail.jpg`, `faces/<id>/<key>-normalized.png`: each face's thumbnail and aligned crop,
  <key> being 16-64 of [A-Za-z0-9_-], random per face (findface_grpc.gateway.store.new_face_key).
  The gateway (with `[gateway] upload_url`) writes these two areas on enroll and deletes a face's folder with
  the face; the face objects carry their URLs. GET/HEAD there need no credentials unless `public_reads = false`:
  photos are named by the sha256 of their content and crops by their random key, so knowing a URL means having
  been given it (face ids are sequential: without the key, anyone could fetch every face by counting). Unkeyed
  `faces/<id>/thumbnail.jpg` and `normalized.png`, as written before the keys, are still served, but only with
  credentials, and never written again.
  Only the store's service identity (the gateway) writes, deletes or lists these two areas and the root: the users
  of `[upload] users` named in `service_users`, and whoever presents the store's own `gateway_token` (the
  launcher gives the gateway that token). Anyone else gets 403: a listing would show every face's secret key, and
  a write could replace a face's thumbnail or any photo. A photo's name must be the sha256 of the bytes put
  there, checked on the bytes as they are written: a mismatch is refused and nothing is kept.
- `dropbox/<gallery>/<name>.<ext>`, ext one of findface_grpc.photo_formats.EXTENSIONS in any case (jpg, heic,
  JPG, ...): a photo put here is enrolled into <gallery> (meta = <name>)
  once it is whole on disk, and `<name>.result.json` appears beside it (gateway_http.dropbox: a "failed" drop is
  retried in the background, and at start the folder is scanned for photos left without a result).

Everything but those public reads needs HTTP basic auth: any user name with an API token as the password
(findface-token), or a user of `[upload] users`; ordinary credentials reach the drop folder only. Paths are
checked before wsgidav sees them: only the layout above, names of [a-zA-Z0-9_-]{1,48} (the gallery-name rules)
plus an image extension in the drop folder, nothing hidden, no `..`, no symlinks (wsgidav refuses them too); a
PUT needs a Content-Length (or a chunked body) within `max_file_mb`, and any other body is held to that limit too.

The server hands a request over only once its body arrived whole (gateway_http.serving: a client that is slow
to send holds no worker thread); a PUT cut off before, by the client or by `request_timeout_s`, never reaches
wsgidav and is logged as an incomplete upload discarded. An upload is then written to a hidden temporary file
and moved into place only when exactly Content-Length bytes were written, so no PUT leaves a truncated file
behind (wsgidav itself would keep one: it takes an early end of the body for its end) or is enrolled.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pymongo
from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, DAVError
from wsgidav.error_printer import ErrorPrinter
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from findface_grpc import photo_formats
from findface_grpc.auth import TokenStore
from findface_grpc.errors import FindFaceError
from findface_grpc.observability.wsgi import Observed, top_folder
from findface_grpc.rpc import server_main
from gateway_http.config import UploadConfig
from gateway_http.dropbox import STATE_DIR, DropFolder
from gateway_http.serving import Limits, Server, make_server as make_waitress, serve_until_signalled

log = logging.getLogger(__name__)

NAME = r"[a-zA-Z0-9_-]{1,48}"
# A drop folder's photos in any case (phones name theirs IMG_0001.HEIC); stored originals as the store names them.
DROP_EXTS = "|".join(photo_formats.EXTENSIONS)
STORED_EXTS = "|".join(photo_formats.STORED_EXTENSIONS)
PARTIAL_DIR = f"{STATE_DIR}/partial"
REALM = "findface-upload"
READS = {"GET", "HEAD", "OPTIONS", "PROPFIND"}
# Paths of the layout, and which of them take writes (PUT) as a file and which may be created as folders.
FILE_PATTERNS = {
    "drop": re.compile(rf"dropbox/(?P<gallery>{NAME})/(?P<name>{NAME}\.(?i:{DROP_EXTS}))"),
    "result": re.compile(rf"dropbox/(?P<gallery>{NAME})/{NAME}\.result\.json"),
    "photo": re.compile(rf"photos/(?P<prefix>[0-9a-f]{{2}})/(?P<sha256>[0-9a-f]{{64}})\.(?:{STORED_EXTS})"),
    "face": re.compile(r"faces/[0-9]{1,20}/[A-Za-z0-9_-]{16,64}-(?:thumbnail\.jpg|normalized\.png)"),
    # Written before the keys: read with credentials only, deleted by the service identity, never written again.
    "face_unkeyed": re.compile(r"faces/[0-9]{1,20}/(?:thumbnail\.jpg|normalized\.png)"),
}
FOLDER_PATTERN = re.compile(rf"(?:dropbox(?:/{NAME})?|photos(?:/[0-9a-f]{{2}})?|faces(?:/[0-9]{{1,20}})?)")
PUBLIC_KINDS = ("photo", "face")
# What only the service identity may write, delete or list ("" is the root, whose listing leads into both).
SERVICE_AREAS = ("", "photos", "faces")


class Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Target:
    path: str  # relative, no leading slash; "" for the root
    kind: str  # "root", "folder", or one of FILE_PATTERNS


def classify(raw: str) -> Target:
    """The layout's meaning of a request path, or Refused (403) for anything outside it."""
    if "\\" in raw or "\0" in raw:
        raise Refused("403 Forbidden", "backslashes and NUL are not allowed in paths")
    parts = raw.split("/")
    if parts[0] != "":
        raise Refused("403 Forbidden", "paths must be absolute URL paths")
    parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]  # a folder's trailing slash
    for part in parts:
        if part in ("", ".", "..") or part.startswith("."):
            raise Refused("403 Forbidden", f"path segment {part!r} is not allowed")
    path = "/".join(parts)
    if not path:
        return Target("", "root")
    if FOLDER_PATTERN.fullmatch(path):
        return Target(path, "folder")
    for kind, pattern in FILE_PATTERNS.items():
        match = pattern.fullmatch(path)
        if match and (kind != "photo" or match["sha256"].startswith(match["prefix"])):
            return Target(path, kind)
    if path.startswith("dropbox/"):
        raise Refused("403 Forbidden", f"drop folder: only dropbox/<gallery>/<name>.({DROP_EXTS}), with "
                      "gallery and name of 1-48 of [a-zA-Z0-9_-]")
    raise Refused("403 Forbidden", f"{path!r} is outside the store's layout (photos/<aa>/<sha256>.<ext>, "
                  "faces/, dropbox/)")


def area(target: Target) -> str:
    """The top folder a path is in: "photos", "faces", "dropbox", or "" for the root."""
    return target.path.partition("/")[0]


def request_path(environ: dict) -> str:
    # The server hands PATH_INFO over unquoted, as latin-1 decoded bytes (PEP 3333); the client meant UTF-8.
    try:
        return environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise Refused("400 Bad Request", "the path is not UTF-8") from None


def destination_path(environ: dict) -> str:
    dest = environ.get("HTTP_DESTINATION", "")
    if not dest:
        raise Refused("400 Bad Request", "MOVE and COPY need a Destination header")
    return unquote(urlsplit(dest).path)


@dataclass(frozen=True)
class Caller:
    name: str
    # The store's service identity (the gateway): the only one that writes, deletes and lists photos/ and faces/.
    service: bool = False


class Credentials:
    """HTTP basic auth: a user of the config, or any user name with a live API token as the password.

    The service identity is a config user named in `service_users`, or the live token `service_token` (the
    store's own gateway_token, which the launcher gives the gateway too). Never a basic-auth user name alone:
    with a token, that name is whatever the client typed."""

    def __init__(self, users: tuple[str, ...], tokens: TokenStore | None, service_users: tuple[str, ...] = (),
                 service_token: str = "") -> None:
        self.users = {name: password for name, _, password in (u.partition(":") for u in users)}
        self.tokens = tokens
        self.service_users = frozenset(service_users)
        self.service_token = service_token

    def check(self, header: str) -> Caller | None:
        """Who the caller is, or None. Refused (503) when a token cannot be checked because the token store is
        down: that is not the caller's fault, and a 401 would make clients drop credentials that are fine."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeError):
            return None
        if not sep:
            return None
        expected = self.users.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return Caller(user, user in self.service_users)
        if self.tokens is not None:
            try:
                info = self.tokens.verify(password)
            except FindFaceError as exc:
                log.warning("token check failed: %s", exc.message)
                raise Refused("503 Service Unavailable",
                              f"cannot check the API token now ({exc.message}); retry shortly") from None
            if info is not None:
                service = bool(self.service_token) and hmac.compare_digest(self.service_token.encode(),
                                                                           password.encode())
                return Caller(f"token:{info.name}", service)
        return None


# ---- wsgidav resources: whole uploads only, drops enrolled once whole ----


class _CountingFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)
        self.sha256.update(data)

    def close(self) -> None:
        self.file.close()


class StoreFile(FileResource):
    """A file that may not exist yet: a PUT writes a hidden temporary file, moved into place when whole."""

    def __init__(self, path: str, environ: dict, file_path: str) -> None:
        if os.path.exists(file_path):
            super().__init__(path, environ, file_path)
        else:
            super(FileResource, self).__init__(path, environ)
            self._file_path = file_path
            self.file_stat = None
            self.name = os.path.basename(file_path)
        self._upload: _CountingFile | None = None

    def begin_write(self, *, content_type=None):
        partial = Path(self.provider.root_folder_path) / PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        self._upload = _CountingFile(partial / f"{uuid.uuid4().hex}.part")
        return self._upload

    def end_write(self, *, with_errors):
        upload, self._upload = self._upload, None
        if upload is None:
            return
        upload.close()
        expected = int(self.environ.get("CONTENT_LENGTH") or -1)
        if with_errors or upload.size != expected:
            upload.path.unlink(missing_ok=True)
            log.warning("incomplete upload of /%s discarded (%d of %d bytes)", self.path.strip("/"), upload.size,
                        expected)
            raise DAVError(HTTP_BAD_REQUEST, "incomplete upload discarded")
        sha256 = upload.sha256.hexdigest()
        photo = FILE_PATTERNS["photo"].fullmatch(self.path.strip("/"))
        if photo and photo["sha256"] != sha256:
            # A photo's URL promises its content: a wrong name would let the URL of one photo show another.
            upload.path.unlink(missing_ok=True)
            log.warning("PUT of /%s refused: its content's sha256 is %s", self.path.strip("/"), sha256)
            raise DAVError(HTTP_BAD_REQUEST, f"a photo's name must be the sha256 of its content ({sha256})")
        os.replace(upload.path, self._file_path)
        self.file_stat = os.stat(self._file_path)
        self.provider.on_complete(self.path, Path(self._file_path), sha256)


class StoreFolder(FolderResource):
    def get_member_names(self):
        # The bookkeeping folder is not part of what clients see.
        return [n for n in super().get_member_names() if not n.startswith(".")]

    def create_empty_resource(self, name):
        # For a PUT, wsgidav would create an empty file before the body arrives: visible, and left behind by an
        # aborted PUT. A LOCK of a new name (Finder and Windows do that before a PUT) needs the empty file: it is
        # never enrolled (only a whole PUT or a MOVE/COPY is), and the PUT that follows replaces it.
        if self.environ.get("REQUEST_METHOD") != "PUT":
            if FILE_PATTERNS["photo"].fullmatch(util.join_uri(self.path, name).strip("/")):
                raise DAVError(HTTP_FORBIDDEN, "photos are made by PUT only: an empty one would not match its name")
            return super().create_empty_resource(name)
        if self.provider.readonly:
            raise DAVError(HTTP_FORBIDDEN)
        path = util.join_uri(self.path, name)
        return StoreFile(path, self.environ, self.provider._loc_to_file_path(path, self.environ))


class StoreProvider(FilesystemProvider):
    def __init__(self, root: Path, drops: DropFolder | None) -> None:
        super().__init__(str(root), fs_opts={"follow_symlinks": False})
        self.drops = drops

    def get_resource_inst(self, path: str, environ: dict):
        fp = self._loc_to_file_path(path, environ)
        if not os.path.exists(fp):
            return None
        if os.path.islink(fp):
            raise DAVError(HTTP_FORBIDDEN, "symlinks are not served")
        if os.path.isdir(fp):
            return StoreFolder(path, environ, fp)
        return StoreFile(path, environ, fp)

    def on_complete(self, path: str, file_path: Path, sha256: str) -> None:
        """A whole file is in place (PUT); a photo in the drop folder gets enrolled."""
        match = FILE_PATTERNS["drop"].fullmatch(path.strip("/"))
        if match and self.drops is not None:
            self.drops.enroll(match["gallery"], match["name"], file_path, sha256)


# ---- the guard in front of wsgidav: credentials, layout, sizes ----


def _plain(start_response, status: str, text: str, headers: list | None = None) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


class UploadApp:
    def __init__(self, config: UploadConfig, root: Path, credentials: Credentials, drops: DropFolder | None) -> None:
        self.config = config
        self.root = root
        self.credentials = credentials
        self.drops = drops
        self.provider = StoreProvider(root, drops)
        self.dav = WsgiDAVApp({
            "provider_mapping": {"/": self.provider},
            # Credentials are checked here (UploadApp), before wsgidav sees the request.
            "middleware_stack": [ErrorPrinter, RequestResolver],
            "http_authenticator": {"domain_controller": None},
            "simple_dc": {"user_mapping": {"*": True}},
            "dir_browser": {"enable": False},
            "property_manager": True,
            "lock_storage": True,
            "verbose": 1,
            "logging": {"enable": False},
        })

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"].upper()
        try:
            target = classify(request_path(environ))
            public = (self.config.public_reads and method in ("GET", "HEAD") and target.kind in PUBLIC_KINDS)
            auth = environ.get("HTTP_AUTHORIZATION", "")
            try:
                caller = self.credentials.check(auth) if auth else None
            except Refused:
                if not public:
                    raise
                caller = None  # a public read needs no credentials, checked or not
            if caller is None and not public:
                return _plain(start_response, "401 Unauthorized",
                              "credentials required (basic auth: an API token as the password)",
                              [("WWW-Authenticate", f'Basic realm="{REALM}"')])
            if caller is None or not caller.service:
                self._check_ordinary(method, target, environ)
            environ["wsgidav.auth.user_name"] = caller.name if caller else "anonymous"
            environ["wsgidav.auth.realm"] = REALM
            moved_to = self._check_method(method, target, environ)
        except Refused as exc:
            return _plain(start_response, exc.status, exc.reason)
        if moved_to is None:
            return self.dav(environ, start_response)
        return self._move_into_drop(environ, start_response, moved_to)

    @staticmethod
    def _check_ordinary(method: str, target: Target, environ: dict) -> None:
        """Anyone but the service identity: the files of photos/ and faces/ may be read (as public_reads and
        credentials allow), nothing there may be written, deleted or listed; the drop folder is theirs."""
        if method == "OPTIONS":
            return
        if area(target) in SERVICE_AREAS:
            if method in ("GET", "HEAD") and target.kind not in ("root", "folder"):
                return
            raise Refused("403 Forbidden", "photos/ and faces/ are written, deleted and listed by the store's "
                          "service identity (the gateway) only; the drop folder is dropbox/")
        if method in ("MOVE", "COPY") and area(classify(destination_path(environ))) in SERVICE_AREAS:
            raise Refused("403 Forbidden", "only the store's service identity (the gateway) writes photos/ and faces/")

    def _check_method(self, method: str, target: Target, environ: dict) -> Target | None:
        """Refuses what the layout does not allow; returns the destination of a MOVE/COPY into the drop folder."""
        length = environ.get("CONTENT_LENGTH", "")
        if method != "PUT" and length.isdigit() and int(length) > self.config.max_file_bytes:
            # The server hands such a body over empty (gateway_http.serving): it was never read.
            raise Refused("413 Payload Too Large", f"request bodies are limited to {self.config.max_file_mb:g} MB")
        if method in READS or method in ("LOCK", "UNLOCK", "PROPPATCH"):
            return None
        if method == "PUT":
            if target.kind not in ("drop", "photo", "face"):
                raise Refused("403 Forbidden", {
                    "result": "PUT takes photos in dropbox/<gallery>/ only",
                    "face_unkeyed": "faces/<id>/ takes <key>-thumbnail.jpg and <key>-normalized.png only (a "
                                    "random key of 16-64 of [A-Za-z0-9_-])",
                }.get(target.kind, "PUT takes files of the layout only"))
            if environ.get("HTTP_TRANSFER_ENCODING") or not environ.get("CONTENT_LENGTH", "").isdigit():
                raise Refused("411 Length Required", "PUT needs a Content-Length (or a chunked body)")
            if int(environ["CONTENT_LENGTH"]) > self.config.max_file_bytes:
                raise Refused("413 Payload Too Large", f"files are limited to {self.config.max_file_mb:g} MB")
            self._make_parent(target)
            return None
        if method == "MKCOL":
            if target.kind != "folder":
                raise Refused("403 Forbidden", "folders: dropbox/<gallery> (1-48 of [a-zA-Z0-9_-]) only")
            return None
        if method == "DELETE":
            if target.kind in ("root",) or target.path in ("dropbox", "photos", "faces"):
                raise Refused("403 Forbidden", "the store's top folders cannot be deleted")
            return None
        if method in ("MOVE", "COPY"):
            if target.kind in ("root",) or target.path in ("dropbox", "photos", "faces"):
                raise Refused("403 Forbidden", "the store's top folders cannot be moved")
            dest = classify(destination_path(environ))
            if dest.kind == "face_unkeyed":
                raise Refused("403 Forbidden", "unkeyed face files are not written any more")
            if area(dest) == "photos" and dest.path != "photos":
                raise Refused("403 Forbidden", "photos are stored by PUT only (a photo's name is its content's sha256)")
            if dest.kind != target.kind or dest.path in ("", "dropbox", "photos", "faces"):
                raise Refused("403 Forbidden", f"cannot {method} a {target.kind} to /{dest.path}")
            if dest.kind == "drop":
                self._make_parent(dest)
                return dest
            return None
        raise Refused("405 Method Not Allowed", f"{method} is not supported")

    def _make_parent(self, target: Target) -> None:
        """Parent folders of the layout are made as needed: `curl -T` needs no MKCOL first."""
        parent = (self.root / target.path).parent
        if not parent.resolve().is_relative_to(self.root):
            raise Refused("403 Forbidden", "symlinks are not served")
        parent.mkdir(parents=True, exist_ok=True)

    def _move_into_drop(self, environ, start_response, dest: Target):
        """A photo moved or copied into the drop folder is whole already: enroll it once wsgidav has placed it."""
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.dav(environ, capture))
        if captured.get("status", "").startswith(("201", "204")) and self.drops is not None:
            file_path = self.root / dest.path
            match = FILE_PATTERNS["drop"].fullmatch(dest.path)
            sha256 = hashlib.sha256(file_path.read_bytes()).hexdigest()
            self.drops.enroll(match["gallery"], match["name"], file_path, sha256)
        start_response(captured["status"], captured["headers"])
        return [body]


def build_app(config: UploadConfig) -> tuple[UploadApp, pymongo.MongoClient | None]:
    root = Path(config.root).resolve()
    for area in ("photos", "faces", "dropbox", STATE_DIR):
        (root / area).mkdir(parents=True, exist_ok=True)
    # Uploads cut off when the server last stopped (never acknowledged, never enrolled), and half-written
    # bookkeeping: nothing of this process is there yet, as it does not serve yet.
    for leftover in (*(root / PARTIAL_DIR).glob("*.part"), *(root / STATE_DIR / "tmp").glob("*.tmp")):
        log.info("deleting %s, left by an upload or write cut off when the server stopped", leftover.name)
        leftover.unlink(missing_ok=True)
    client = None
    tokens = None
    if config.mongo_uri:
        client = pymongo.MongoClient(config.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        tokens = TokenStore(client[config.mongo_db])
    drops = DropFolder(config, root) if config.gateway_token else None
    if drops is None:
        log.warning("no [upload].gateway_token: photos dropped into dropbox/ are kept but not enrolled")
    credentials = Credentials(config.users, tokens, config.service_users, config.gateway_token)
    return UploadApp(config, root, credentials, drops), client


def report_incomplete(method: str, path: str, received: int, expected: int | None) -> None:
    """A request whose body never arrived whole (the client broke off, or was too slow): for a PUT, the
    upload discarded; it never reached wsgidav."""
    if method.upper() != "PUT":
        return
    try:
        path = path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    log.warning("incomplete upload of /%s discarded (%d of %s bytes)", path.strip("/"), received,
                "?" if expected is None else expected)


def make_server(config: UploadConfig, app: UploadApp) -> Server:
    limits = Limits(threads=config.threads, max_connections=config.max_connections,
                    idle_timeout_s=config.socket_timeout_s, header_timeout_s=config.header_timeout_s,
                    request_timeout_s=config.request_timeout_s, max_body_bytes=config.max_file_bytes)
    # Bodies over max_file_bytes reach UploadApp empty, from their headers: it answers them, with the reason.
    return make_waitress(Observed(app, top_folder("photos", "faces", "dropbox")), config.listen,
                         REALM, limits, on_incomplete=report_incomplete)


def serve(config: UploadConfig) -> None:
    app, client = build_app(config)
    server = make_server(config, app)
    try:
        # Drops are taken up once this server listens: their enrollment makes the gateway store crops here.
        serve_until_signalled(server, "upload", config.listen,
                              f"photo store serving {app.root} on %s:%d, gateway {config.gateway}",
                              ready=app.drops.start if app.drops is not None else None)
    finally:
        if app.drops is not None:
            app.drops.close()
        if client is not None:
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-upload: the photo store and the WebDAV drop folder")
    parser.add_argument("--config", help="TOML config file (its [upload] table)")
    parser.add_argument("--listen", help="host:port to listen on (default 127.0.0.1:3333)")
    parser.add_argument("--root", help="the folder to serve (default var/upload)")
    parser.add_argument("--gateway", help="the gateway's gRPC address, host:port (default 127.0.0.1:50051)")
    parser.add_argument("--mongo-uri", help="the gateway's MongoDB, where API tokens are checked")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"listen": args.listen, "root": args.root, "gateway": args.gateway,
                                   "mongo_uri": args.mongo_uri}.items() if v}
    return server_main(UploadConfig, "upload", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
