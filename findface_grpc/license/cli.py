"""`findface-license`: the vendor's tool for signing keys and license files, and anyone's for reading one.

    findface-license keygen --out DIR
    findface-license sign --key DIR/license-signing.key --licensee "ACME" --expires 2027-01-01 \\
        --faces 1000000 --shards 4 --extractors 2 --cameras 16 [--feature NAME ...] --out acme.lic
    findface-license inspect acme.lic [--public-key DIR/license-signing.pub]

Limits of 0 mean unlimited. `inspect` prints the terms; with the public key it also checks the signature and the
expiry and exits 1 when the license is not valid.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from findface_grpc.errors import ConfigError
from findface_grpc.license import licensing
from findface_grpc.license.licensing import InvalidLicense, License, LicenseLimits


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")


def _fail(text: str, code: int = 1) -> int:
    sys.stderr.write(f"findface-license: {text}\n")
    return code


def keygen(args: argparse.Namespace) -> int:
    try:
        private_path, public_path = licensing.generate_keys(Path(args.out))
    except FileExistsError as exc:
        return _fail(str(exc))
    _write(f"private key (keep it secret; it signs licenses): {private_path}")
    _write(f"public key (give it to license servers):          {public_path}")
    return 0


def sign(args: argparse.Namespace) -> int:
    try:
        key = licensing.load_private_key(Path(args.key))
        expires = licensing.parse_time(args.expires)
        issued = licensing.parse_time(args.issued) if args.issued else licensing.utcnow()
    except (ConfigError, ValueError) as exc:
        return _fail(getattr(exc, "message", str(exc)), 2)
    if expires <= issued:
        return _fail("--expires must be after the issue time", 2)
    for name in ("faces", "shards", "extractors", "cameras"):
        if getattr(args, name) < 0:
            return _fail(f"--{name} must be >= 0 (0 = unlimited)", 2)
    lic = License(
        licensee=args.licensee,
        issued_at=issued,
        expires_at=expires,
        limits=LicenseLimits(args.faces, args.shards, args.extractors, args.cameras),
        features=tuple(dict.fromkeys(args.feature)),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(licensing.sign(lic, key))
    _write(f"license {lic.license_id} for {lic.licensee!r} until {licensing.iso(expires)} written to {out}")
    return 0


def inspect(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    try:
        payload, _, _ = licensing.read_payload(data)
    except InvalidLicense as exc:
        return _fail(exc.message)
    _write(json.dumps(payload, indent=2, ensure_ascii=False))
    if not args.public_key:
        _write("signature: not checked (give --public-key to check it)")
        return 0
    try:
        key = licensing.load_public_key(Path(args.public_key))
    except ConfigError as exc:
        return _fail(exc.message, 2)
    try:
        lic = licensing.verify(data, key)
    except InvalidLicense as exc:
        _write(f"INVALID: {exc.message}")
        return 1
    _write("signature: good")
    if lic.expired(licensing.utcnow()):
        _write(f"INVALID: {licensing.expiry_reason(lic)}")
        return 1
    _write(f"valid until {licensing.iso(lic.expires_at)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="findface-license", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("keygen", help="make a new Ed25519 signing key pair")
    p.add_argument("--out", required=True, help="folder for license-signing.key and license-signing.pub")
    p.set_defaults(run=keygen)

    p = commands.add_parser("sign", help="write a signed license file")
    p.add_argument("--key", required=True, help="the private signing key (PEM)")
    p.add_argument("--licensee", required=True)
    p.add_argument("--expires", required=True, help="ISO 8601 date or date-time (UTC unless a zone is given)")
    p.add_argument("--issued", help="ISO 8601 issue time (default: now)")
    p.add_argument("--faces", type=int, default=0, help="most faces stored (0 = unlimited)")
    p.add_argument("--shards", type=int, default=0, help="most shard servers (0 = unlimited)")
    p.add_argument("--extractors", type=int, default=0, help="most extractor servers (0 = unlimited)")
    p.add_argument("--cameras", type=int, default=0,
                   help="most cameras run by all video detectors together (0 = unlimited)")
    p.add_argument("--feature", action="append", default=[], help="a licensed feature (repeatable)")
    p.add_argument("--out", required=True, help="the license file to write")
    p.set_defaults(run=sign)

    p = commands.add_parser("inspect", help="show a license file's terms, and check it with --public-key")
    p.add_argument("file")
    p.add_argument("--public-key", help="the vendor's public key (PEM)")
    p.set_defaults(run=inspect)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
