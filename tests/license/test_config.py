"""[license] settings, and a license server that cannot start says why."""
from __future__ import annotations

import subprocess
import sys

import pytest

from findface_grpc import config
from findface_grpc.errors import ConfigError
from findface_grpc.license.config import LicenseConfig
from tests.helpers import ROOT


def load(text: str = "", **env) -> LicenseConfig:
    return config.load(LicenseConfig, "license", None, environ=env, overrides=dict(config.tomllib.loads(text)))


def test_defaults_are_unlicensed_with_30s_leases():
    cfg = load()
    assert cfg.unlicensed and cfg.lease_ttl_s == 30 and cfg.renew_interval_s == 10 and cfg.grace_period_s == 300


@pytest.mark.parametrize("text, message", [
    ('license_file = "a.lic"', "set together"),
    ('public_key = "a.pub"', "set together"),
    ("lease_ttl_s = 1", "lease_ttl_s must be >= 3"),
    ("grace_period_s = -1", "grace_period_s must be >= 0"),
    ('listen = "nowhere"', "host:port"),
])
def test_bad_settings_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        load(text)


def test_unreadable_public_key_stops_the_server(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "findface_grpc.license.server", "--listen", "127.0.0.1:0", "--license",
         str(tmp_path / "a.lic"), "--public-key", str(tmp_path / "missing.pub"), "--state-file",
         str(tmp_path / "state.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "cannot load the public key" in result.stderr
