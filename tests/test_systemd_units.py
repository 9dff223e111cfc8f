"""deploy/systemd/: every server has a unit that starts it from the one config file, restarts it on failure and
names only units, programs, config keys and environment settings that exist."""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from findface_grpc import config as config_mod
from findface_grpc.extractor.config import ExtractorConfig
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.license.config import LicenseConfig
from findface_grpc.shard.config import ShardConfig
from findface_grpc.video.config import VideoConfig
from gateway_http.config import HttpConfig, UploadConfig
from tests.helpers import ROOT

UNITS = ROOT / "deploy" / "systemd"
INSTALL = "/opt/findface-grpc"
TABLES = {"license": LicenseConfig, "extractor": ExtractorConfig, "shard": ShardConfig, "gateway": GatewayConfig,
          "http": HttpConfig, "upload": UploadConfig, "video": VideoConfig}
# Every server, by its console script: the unit that runs it, and the config table it reads.
SERVERS = {"findface-license-server": ("findface-license.service", "license"),
           "findface-extractor": ("findface-extractor.service", "extractor"),
           "findface-shard": ("findface-shard@.service", "shard"),
           "findface-gateway": ("findface-gateway.service", "gateway"),
           "findface-http": ("findface-http.service", "http"),
           "findface-upload": ("findface-upload.service", "upload"),
           "findface-video": ("findface-video.service", "video")}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of (key, value) lines; systemd allows a key more than once, so no dict per section."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: keep each setting on one line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a setting: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {name.strip(): target.strip() for name, _, target in (line.partition("=") for line in lines)}


def env_files(unit: dict) -> list[Path]:
    """The example of each EnvironmentFile that this folder ships (/etc/findface/shard-%i.env -> shard-0.env)."""
    out = []
    for value in values(unit, "Service", "EnvironmentFile"):
        out.append(UNITS / Path(value.lstrip("-")).name.replace("%i", "0"))
    return out


def environment(unit: dict) -> dict[str, str]:
    env = {}
    for value in values(unit, "Service", "Environment"):
        key, _, val = value.partition("=")
        env[key] = val
    for path in env_files(unit):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, val = line.partition("=")
                env[key] = val
    return env


def test_every_server_has_a_unit_that_runs_it_from_the_shared_config():
    scripts = console_scripts()
    for script, (unit_name, table) in SERVERS.items():
        unit = parse_unit(UNITS / unit_name)
        [exec_start] = values(unit, "Service", "ExecStart")
        program, *args = exec_start.split()
        assert program == f"{INSTALL}/.venv/bin/{script}" and script in scripts, unit_name
        assert args == ["--config", "${FINDFACE_CONFIG}"], unit_name
        assert environment(unit)["FINDFACE_CONFIG"] == "/etc/findface/findface.toml", unit_name
        module = scripts[script].partition(":")[0]
        assert "--config" in (ROOT / (module.replace(".", "/") + ".py")).read_text(), f"{module} takes no --config"
        # The shared config and the unit's own settings, loaded as the server loads them.
        env = {k: v for k, v in environment(unit).items() if k.startswith(f"FINDFACE_{table.upper()}_")}
        config_mod.load(TABLES[table], table, UNITS / "findface.toml", environ=env)


def test_every_unit_restarts_on_failure_and_depends_on_units_that_exist():
    units = sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".target"))
    assert {p.name for p in units} >= {name for name, _ in SERVERS.values()} | {"findface-tarantool@.service"}
    for path in units:
        unit = parse_unit(path)
        for key in ("Wants", "After", "Requires", "BindsTo", "PartOf"):
            for name in " ".join(values(unit, "Unit", key)).split():
                if name.startswith("findface"):
                    assert (UNITS / re.sub(r"@[^.]*\.", "@.", name)).exists(), f"{path.name}: {key}={name}"
        if path.suffix == ".service":
            assert values(unit, "Service", "Restart") == ["on-failure"], path.name
            assert values(unit, "Service", "LimitNOFILE"), path.name
            assert values(unit, "Install", "WantedBy") == ["findface.target"], path.name
            for env_file in env_files(unit):
                assert env_file.exists(), f"{path.name}: no example {env_file.name}"


def test_the_tarantool_unit_runs_the_shards_storage_with_settings_it_reads():
    unit = parse_unit(UNITS / "findface-tarantool@.service")
    [exec_start] = values(unit, "Service", "ExecStart")
    assert exec_start == f"/usr/bin/tarantool {INSTALL}/findface_grpc/shard/storage.lua"
    read = set(re.findall(r"os\.getenv\('(FINDFACE_TT_\w+)'\)", (ROOT / "findface_grpc/shard/storage.lua").read_text()))
    env = environment(unit)
    assert set(env) <= read and {"FINDFACE_TT_LISTEN", "FINDFACE_TT_WORK_DIR"} <= set(env)
    # The WAL lives in the unit's state directory, kept across restarts.
    assert env["FINDFACE_TT_WORK_DIR"] == "/var/lib/" + values(unit, "Service", "StateDirectory")[0]


def test_secrets_are_settings_of_their_servers():
    for line in (UNITS / "secrets.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key = line.partition("=")[0]
            table = next(t for t in TABLES if key.startswith(f"FINDFACE_{t.upper()}_"))
            config_mod.load(TABLES[table], table, UNITS / "findface.toml", environ={key: "x"})


def test_systemd_accepts_the_units(tmp_path):
    analyze, tarantool = shutil.which("systemd-analyze"), shutil.which("tarantool")
    if analyze is None or tarantool is None:
        pytest.skip("systemd-analyze or tarantool not installed")
    # As installed, with the programs where this checkout has them (verify checks that they are executable).
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".target"):
            text = path.read_text().replace(INSTALL, str(ROOT)).replace("/usr/bin/tarantool", tarantool)
            (tmp_path / path.name.replace("@.", "@0.")).write_text(text)
    result = subprocess.run([analyze, "verify", "--man=no", *sorted(map(str, tmp_path.iterdir()))],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    problems = [line for line in result.stderr.splitlines() if "findface" in line]
    assert not problems, result.stderr
