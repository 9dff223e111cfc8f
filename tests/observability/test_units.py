"""The log formats, request id acceptance, the settings' checks, and a server that cannot serve its /metrics."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from dataclasses import dataclass

import pytest

from findface_grpc import observability
from findface_grpc.errors import ConfigError
from findface_grpc.observability import logs, requestid
from tests.helpers import ROOT, free_port


def record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("findface_grpc.test", logging.WARNING, __file__, 1, message, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def filtered(rec: logging.LogRecord, rid: str) -> logging.LogRecord:
    token = requestid.current.set(rid)
    try:
        logs.RequestIdFilter().filter(rec)
    finally:
        requestid.current.reset(token)
    return rec


def test_json_lines_carry_time_level_server_request_id_message_and_fields():
    rec = filtered(record("searched %d shards", 2, shard="shard-1"), "abc-1")
    line = json.loads(logs.JsonFormatter("gateway").format(rec))
    assert line["level"] == "WARNING" and line["server"] == "gateway" and line["logger"] == "findface_grpc.test"
    assert line["message"] == "searched 2 shards" and line["request_id"] == "abc-1" and line["shard"] == "shard-1"
    assert line["time"].endswith("+00:00") and "T" in line["time"]
    try:
        raise ValueError("boom")
    except ValueError:
        rec = filtered(record("failed", exc_info=sys.exc_info()), "")
    line = json.loads(logs.JsonFormatter("shard").format(rec))
    assert "request_id" not in line and "ValueError: boom" in line["exception"]


def test_human_lines_name_the_request_only_when_there_is_one():
    text = logs.TextFormatter()
    assert text.format(filtered(record("hello"), "r-7")).endswith("findface_grpc.test: hello [request r-7]")
    assert text.format(filtered(record("hello"), "")).endswith("findface_grpc.test: hello")


@pytest.mark.parametrize("given, kept", [
    ("abc-DEF_1.2:3/4+5=", True), (b"from-bytes", True), ("", False), (None, False), ("has space", False),
    ("x" * 65, False), ("new\nline", False), ("é", False),
])
def test_a_callers_request_id_is_kept_only_when_short_and_plain(given, kept):
    got = requestid.accept(given)
    expected = given.decode() if isinstance(given, bytes) else given
    assert (got == expected) is kept
    if not kept:
        assert len(got) == 16 and int(got, 16) >= 0


@dataclass(frozen=True)
class Settings:
    log_format: str = "text"
    metrics_listen: str = ""
    log_level: str = "INFO"


@pytest.mark.parametrize("settings, message", [
    (Settings(log_format="xml"), "[gateway].log_format must be 'text' or 'json'"),
    (Settings(metrics_listen="9150"), "[gateway].metrics_listen must be host:port"),
    (Settings(metrics_listen="127.0.0.1:99999"), "[gateway].metrics_listen must be host:port"),
])
def test_bad_settings_stop_the_start(settings, message):
    with pytest.raises(ConfigError) as refused:
        observability.start(settings, "gateway")
    assert message in refused.value.message


def run_license_server(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "findface_grpc.license.server", "--listen", f"127.0.0.1:{free_port()}",
         "--state-file", str(tmp_path / "state.json")],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_server_whose_metrics_port_is_taken_does_not_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_license_server(tmp_path, FINDFACE_LICENSE_METRICS_LISTEN=f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in done.stderr


def test_a_bad_log_format_is_a_config_error(tmp_path):
    done = run_license_server(tmp_path, FINDFACE_LICENSE_LOG_FORMAT="xml")
    assert done.returncode == 2 and "[license].log_format must be 'text' or 'json'" in done.stderr
