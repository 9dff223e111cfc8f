"""License files: signing, verifying, and refusing anything altered, foreign or expired."""
from __future__ import annotations

import base64
import json
import os
import stat
from datetime import timedelta

import pytest

from findface_grpc.license import licensing
from findface_grpc.license.licensing import InvalidLicense
from tests.license.conftest import forge, write_license


def test_signed_license_verifies_with_its_terms(tmp_path, keys):
    path = write_license(tmp_path / "a.lic", keys[0], faces=10, shards=2, extractors=3, features=("age", "gender"))
    lic = licensing.verify(path.read_bytes(), licensing.load_public_key(keys[1]))
    assert (lic.licensee, lic.limits.faces, lic.limits.shards, lic.limits.extractors) == ("Tests Ltd", 10, 2, 3)
    assert lic.features == ("age", "gender")
    assert len(lic.license_id) == 32
    assert not lic.expired(licensing.utcnow())


def test_every_changed_byte_is_refused(tmp_path, keys):
    data = write_license(tmp_path / "a.lic", keys[0], faces=10).read_bytes()
    public = licensing.load_public_key(keys[1])
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(InvalidLicense):
            licensing.verify(bytes(tampered), public)


def test_raised_limit_with_the_old_signature_is_refused(tmp_path, keys):
    path = forge(write_license(tmp_path / "a.lic", keys[0], faces=10), limits={"faces": 10**9})
    with pytest.raises(InvalidLicense, match="bad signature"):
        licensing.verify(path.read_bytes(), licensing.load_public_key(keys[1]))


def test_license_of_another_key_is_refused(tmp_path, keys, other_keys):
    path = write_license(tmp_path / "a.lic", other_keys[0])
    with pytest.raises(InvalidLicense, match="bad signature"):
        licensing.verify(path.read_bytes(), licensing.load_public_key(keys[1]))


@pytest.mark.parametrize("data, reason", [
    (b"", "not a license file"),
    (b"[1]", "not a JSON object"),
    (b'{"format": "other/1", "payload": "", "signature": ""}', "format"),
    (b'{"format": "findface-license/1", "payload": "***", "signature": ""}', "not base64"),
])
def test_what_is_not_a_license_says_so(data, reason, keys):
    with pytest.raises(InvalidLicense, match=reason):
        licensing.verify(data, licensing.load_public_key(keys[1]))


def test_payload_without_a_field_is_refused_after_the_signature(tmp_path, keys):
    private = licensing.load_private_key(keys[0])
    payload = licensing.canonical_json({"licensee": "x", "issued_at": "2026-01-01"})
    document = {"format": licensing.FORMAT, "payload": base64.b64encode(payload).decode(),
                "signature": base64.b64encode(private.sign(payload)).decode()}
    with pytest.raises(InvalidLicense, match="expires_at"):
        licensing.verify(json.dumps(document).encode(), licensing.load_public_key(keys[1]))


def test_license_signed_before_the_camera_limit_leaves_cameras_unlimited(tmp_path, keys):
    private = licensing.load_private_key(keys[0])
    payload = licensing.canonical_json({"license_id": "old", "licensee": "x", "issued_at": "2026-01-01",
                                        "expires_at": "2099-01-01", "limits": {"faces": 5, "shards": 1,
                                                                               "extractors": 1}})
    document = {"format": licensing.FORMAT, "payload": base64.b64encode(payload).decode(),
                "signature": base64.b64encode(private.sign(payload)).decode()}
    lic = licensing.verify(json.dumps(document).encode(), licensing.load_public_key(keys[1]))
    assert (lic.limits.faces, lic.limits.cameras) == (5, 0)
    new = licensing.verify(write_license(tmp_path / "a.lic", keys[0], cameras=4).read_bytes(),
                           licensing.load_public_key(keys[1]))
    assert new.limits.cameras == 4


def test_expiry(tmp_path, keys):
    lic = licensing.verify(write_license(tmp_path / "a.lic", keys[0], expires_in_s=60).read_bytes(),
                           licensing.load_public_key(keys[1]))
    assert not lic.expired(licensing.utcnow())
    assert lic.expired(licensing.utcnow() + timedelta(seconds=61))
    assert "expired at" in licensing.expiry_reason(lic)


def test_keygen_refuses_to_overwrite_and_keeps_the_private_key_private(tmp_path):
    private, public = licensing.generate_keys(tmp_path)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(FileExistsError):
        licensing.generate_keys(tmp_path)


def test_times_without_a_zone_are_utc():
    assert licensing.iso(licensing.parse_time("2027-01-01")) == "2027-01-01T00:00:00Z"
    assert licensing.iso(licensing.parse_time("2027-01-01T03:00:00+03:00")) == "2027-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        licensing.parse_time("next year")
