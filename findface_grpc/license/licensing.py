"""License files: the signed document, how the vendor makes one and how the license server checks it.

A license file is a small JSON document:

    {"format": "findface-license/1", "payload": "<base64 of the payload JSON>", "signature": "<base64>"}

The signature is Ed25519 over the payload bytes exactly as they were encoded, so verifying needs no canonical
re-encoding: any changed byte of the payload (or of the signature) fails. The payload is written canonically
anyway (sorted keys, no spaces) so that the same license always gives the same file. Its fields:
`license_id`, `licensee`, `issued_at` and `expires_at` (ISO 8601, UTC), `limits` {faces, shards, extractors,
cameras} (0 = unlimited) and `features` (names of optional features). A limit the payload lacks is 0, unlimited:
licenses signed before `cameras` existed (it came with the video detector) left the cameras unrestricted, as the
terms sold then did, and their signed bytes cannot gain the key; a vendor restricts cameras by issuing a new one.

Keys are PEM files: the private key (PKCS#8) stays with the vendor, the public key (SubjectPublicKeyInfo) is
given to the license server. No grpc here.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from findface_grpc.errors import ConfigError, FailedPrecondition

FORMAT = "findface-license/1"
PRIVATE_KEY_NAME = "license-signing.key"
PUBLIC_KEY_NAME = "license-signing.pub"
MAX_LICENSE_BYTES = 64 * 1024


class InvalidLicense(FailedPrecondition):
    """The license file cannot be read, is not a license, is not signed by the vendor's key, or has expired."""


@dataclass(frozen=True)
class LicenseLimits:
    faces: int = 0  # 0 = unlimited
    shards: int = 0
    extractors: int = 0
    cameras: int = 0  # run by all video detectors together


@dataclass(frozen=True)
class License:
    licensee: str
    issued_at: datetime
    expires_at: datetime
    limits: LicenseLimits
    features: tuple[str, ...] = ()
    license_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def payload(self) -> dict:
        return {
            "license_id": self.license_id,
            "licensee": self.licensee,
            "issued_at": iso(self.issued_at),
            "expires_at": iso(self.expires_at),
            "limits": {"faces": self.limits.faces, "shards": self.limits.shards, "extractors": self.limits.extractors,
                       "cameras": self.limits.cameras},
            "features": list(self.features),
        }


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def canonical_json(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- keys ----

def generate_keys(out_dir: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in out_dir; refuses to overwrite an existing key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it first or choose another folder")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The private key is created readable by its owner only, never briefly world-readable.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the private key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


# ---- signing and verifying ----

def sign(lic: License, key: Ed25519PrivateKey) -> bytes:
    """The license file's bytes."""
    payload = canonical_json(lic.payload())
    document = {
        "format": FORMAT,
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(key.sign(payload)).decode(),
    }
    return json.dumps(document, indent=2).encode() + b"\n"


def _b64(document: dict, name: str) -> bytes:
    value = document.get(name)
    if not isinstance(value, str):
        raise InvalidLicense(f"not a license file: no {name}")
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidLicense(f"not a license file: {name} is not base64") from None
    # Base64 can spell the same bytes more than one way (the unused bits of its last character): only the one
    # spelling is accepted, so that every changed byte of the file is refused, not just most.
    if base64.b64encode(decoded).decode() != value:
        raise InvalidLicense(f"not a license file: {name} is not canonical base64")
    return decoded


def read_payload(data: bytes) -> tuple[dict, bytes, bytes]:
    """(payload as parsed JSON, payload bytes, signature) of a license file, signature not checked."""
    if len(data) > MAX_LICENSE_BYTES:
        raise InvalidLicense(f"not a license file: {len(data)} bytes")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidLicense(f"not a license file: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidLicense("not a license file: not a JSON object")
    if document.get("format") != FORMAT:
        raise InvalidLicense(f"not a license file: format {document.get('format')!r}, expected {FORMAT!r}")
    payload, signature = _b64(document, "payload"), _b64(document, "signature")
    try:
        parsed = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidLicense(f"license payload is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidLicense("license payload is not a JSON object")
    return parsed, payload, signature


def _limit(limits: dict, name: str) -> int:
    value = limits.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidLicense(f"license limit {name} must be a whole number >= 0, not {value!r}")
    return value


def from_payload(payload: dict) -> License:
    try:
        limits = payload.get("limits") or {}
        features = payload.get("features") or []
        if not isinstance(limits, dict) or not isinstance(features, list):
            raise InvalidLicense("license payload: limits must be an object and features a list")
        return License(
            licensee=str(payload["licensee"]),
            issued_at=parse_time(payload["issued_at"]),
            expires_at=parse_time(payload["expires_at"]),
            limits=LicenseLimits(_limit(limits, "faces"), _limit(limits, "shards"), _limit(limits, "extractors"),
                                 _limit(limits, "cameras")),
            features=tuple(str(f) for f in features),
            license_id=str(payload.get("license_id", "")),
        )
    except KeyError as exc:
        raise InvalidLicense(f"license payload lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidLicense(f"license payload: {exc}") from None


def verify(data: bytes, key: Ed25519PublicKey) -> License:
    """The license in a file's bytes, checked against the vendor's public key (not against the clock: an expired
    license is still reported, with its limits, and `License.expired` says so).

    Raises InvalidLicense saying why: not a license file, or a bad signature (altered, or signed by another key).
    The signature is checked before anything in the payload is believed.
    """
    payload, raw, signature = read_payload(data)
    try:
        key.verify(signature, raw)
    except InvalidSignature:
        raise InvalidLicense(
            "bad signature: the license file was altered or was not signed with the key this server trusts"
        ) from None
    return from_payload(payload)


def expiry_reason(lic: License) -> str:
    return f"license {lic.license_id} of {lic.licensee!r} expired at {iso(lic.expires_at)}"
