"""The upload server's pure parts: the layout's path rules, credentials and the config's checks."""
from __future__ import annotations

import base64
import re

import pytest

from findface_grpc import config as config_mod
from findface_grpc.bulk import find_photos
from findface_grpc.errors import ConfigError
from findface_grpc.gateway.store import face_paths, new_face_key, photo_path
from findface_grpc.photo_formats import extension_for
from gateway_http.config import UploadConfig
from gateway_http.upload import Caller, Credentials, Refused, classify

SHA = "ab" * 32


@pytest.mark.parametrize("path, kind", [
    ("/", "root"),
    ("/dropbox", "folder"),
    ("/dropbox/", "folder"),
    ("/dropbox/Friends_2-b", "folder"),
    ("/dropbox/g/alice.jpg", "drop"),
    ("/dropbox/g/alice.JPEG".lower(), "drop"),
    ("/dropbox/g/a-b_c.webp", "drop"),
    ("/dropbox/g/alice.result.json", "result"),
    (f"/photos/ab/{SHA}.png", "photo"),
    ("/photos/ab", "folder"),
    ("/faces/17/Ab-_0123456789xyzQ-thumbnail.jpg", "face"),
    ("/faces/17/" + "k" * 64 + "-normalized.png", "face"),
    ("/faces/17/-AAAAAAAAAAAAAAAAAAAAA-thumbnail.jpg", "face"),
    ("/faces/17/thumbnail.jpg", "face_unkeyed"),
    ("/faces/17/normalized.png", "face_unkeyed"),
    ("/faces/17/", "folder"),
])
def test_the_layout(path, kind):
    assert classify(path).kind == kind


@pytest.mark.parametrize("path", [
    "dropbox/g/a.jpg", "/dropbox/../a.jpg", "/dropbox/./g/a.jpg", "/dropbox//g/a.jpg", "/dropbox/g/.a.jpg",
    "/.upload-state", "/dropbox/g/a.tiff", "/dropbox/g/a.jpg.exe", "/dropbox/g/a b.jpg", "/dropbox/g\\x/a.jpg",
    "/dropbox/g/a\0.jpg", "/dropbox/" + "g" * 49 + "/a.jpg", "/dropbox/g/" + "a" * 49 + ".jpg", "/dropbox/g/h/a.jpg",
    "/dropbox/g/é.jpg", "/photos/ab/abc.jpg", f"/photos/cd/{SHA}.jpg", f"/photos/ab/{SHA}.tiff",
    "/faces/x/thumbnail.jpg",
    "/faces/1/other.jpg", "/etc/passwd", "/faces/1/short-thumbnail.jpg", "/faces/1/" + "k" * 65 + "-thumbnail.jpg",
    "/faces/1/aaaaaaaaaaaaaaaa.thumbnail.jpg", "/faces/1/aaaaaaaaaaaaaaa%-thumbnail.jpg",
    "/faces/1/aaaaaaaaaaaaaaaa-thumbnail.png", "/faces/1/aaaaaaaaaaaaaaaa-normalized.jpg",
])
def test_paths_outside_the_layout(path):
    with pytest.raises(Refused):
        classify(path)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_config_users():
    creds = Credentials(("ops:s3cret:with-colon",), None)
    assert creds.check(basic("ops", "s3cret:with-colon")) == Caller("ops", service=False)
    assert creds.check(basic("ops", "s3cret")) is None
    assert creds.check(basic("other", "s3cret:with-colon")) is None
    assert creds.check("Token s3cret") is None
    assert creds.check("Basic !!!") is None


def test_service_users_are_config_users_named_in_service_users():
    creds = Credentials(("gateway:gw-secret", "ops:ops-secret"), None, service_users=("gateway",),
                        service_token="the-upload-token")
    assert creds.check(basic("gateway", "gw-secret")) == Caller("gateway", service=True)
    assert creds.check(basic("ops", "ops-secret")) == Caller("ops", service=False)
    # Without a token store no token is checked, the service token included.
    assert creds.check(basic("gateway", "the-upload-token")) is None


@pytest.mark.parametrize("setting", [
    {"duplicates": "maybe"}, {"multi_face": "reject"}, {"users": "nopassword"}, {"max_file_mb": 0},
    {"listen": "nowhere"}, {"threads": 1}, {"retry_initial_s": 0}, {"retry_max_hours": -1},
    {"retry_initial_s": 10, "retry_max_interval_s": 5}, {"service_users": ["gate:way"]}, {"service_users": [""]},
])
def test_bad_settings_stop_the_server(setting):
    with pytest.raises(ConfigError):
        config_mod.load(UploadConfig, "upload", environ={}, overrides=setting)


def test_enroll_and_the_drop_folder_take_phone_photos_named_as_phones_name_them(tmp_path):
    for name in ("a.jpg", "B.HEIC", "c.avif", "d.Webp", "e.gif", "f.tiff", "g.txt", ".hidden/x.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_photos(tmp_path)] == ["B.HEIC", "a.jpg", "c.avif", "d.Webp", "e.gif"]
    assert classify("/dropbox/phone/IMG_0001.HEIC").kind == "drop"
    assert classify(f"/photos/ab/{SHA}.heic").kind == classify(f"/photos/ab/{SHA}.avif").kind == "photo"


def test_store_paths():
    assert photo_path(SHA, "jpg") == f"photos/ab/{SHA}.jpg"
    assert face_paths(5, "k" * 22) == {"thumbnail": f"faces/5/{'k' * 22}-thumbnail.jpg",
                                       "normalized": f"faces/5/{'k' * 22}-normalized.png"}
    assert extension_for(b"\x89PNG\r\n\x1a\n....") == "png"
    assert extension_for(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert extension_for(b"\xff\xd8\xff") == "jpg"
    keys = {new_face_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", key)
        for path in face_paths(5, key).values():
            assert classify("/" + path).kind == "face"
    assert classify("/" + photo_path(SHA, "webp")).kind == "photo"
