"""`findface-license`: the vendor's keygen and sign, and inspect, as a user runs them."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findface_grpc.license.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_keygen_sign_inspect(tmp_path):
    keys = tmp_path / "keys"
    assert cli("keygen", "--out", str(keys)).returncode == 0
    assert cli("keygen", "--out", str(keys)).returncode == 1  # never overwrites a key
    lic = tmp_path / "acme.lic"
    signed = cli("sign", "--key", str(keys / "license-signing.key"), "--licensee", "ACME", "--expires", "2099-01-01",
                 "--faces", "1000", "--shards", "4", "--extractors", "2", "--cameras", "6", "--feature", "age",
                 "--out", str(lic))
    assert signed.returncode == 0, signed.stderr
    shown = cli("inspect", str(lic), "--public-key", str(keys / "license-signing.pub"))
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout[: shown.stdout.rindex("}") + 1])
    assert payload["limits"] == {"faces": 1000, "shards": 4, "extractors": 2, "cameras": 6}
    assert payload["features"] == ["age"] and payload["expires_at"] == "2099-01-01T00:00:00Z"
    assert "signature: good" in shown.stdout

    unchecked = cli("inspect", str(lic))
    assert unchecked.returncode == 0 and "not checked" in unchecked.stdout

    other = tmp_path / "other"
    cli("keygen", "--out", str(other))
    foreign = cli("inspect", str(lic), "--public-key", str(other / "license-signing.pub"))
    assert foreign.returncode == 1 and "INVALID: bad signature" in foreign.stdout


def test_expired_license_inspects_as_invalid(tmp_path):
    cli("keygen", "--out", str(tmp_path))
    lic = tmp_path / "old.lic"
    signed = cli("sign", "--key", str(tmp_path / "license-signing.key"), "--licensee", "Old", "--issued", "2020-01-01",
                 "--expires", "2021-01-01", "--out", str(lic))
    assert signed.returncode == 0, signed.stderr
    shown = cli("inspect", str(lic), "--public-key", str(tmp_path / "license-signing.pub"))
    assert shown.returncode == 1 and "expired at 2021-01-01T00:00:00Z" in shown.stdout


def test_sign_refuses_bad_input(tmp_path):
    cli("keygen", "--out", str(tmp_path))
    key = str(tmp_path / "license-signing.key")
    assert cli("sign", "--key", key, "--licensee", "x", "--expires", "soon",
               "--out", str(tmp_path / "x")).returncode == 2
    assert cli("sign", "--key", key, "--licensee", "x", "--expires", "2099-01-01", "--faces", "-1",
               "--out", str(tmp_path / "x")).returncode == 2
    assert not (tmp_path / "x").exists()
