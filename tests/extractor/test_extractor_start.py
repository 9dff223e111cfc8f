"""The extractor refuses to start, with a message naming the file, when a model file is missing or altered."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from findface_grpc.extractor.models import packs
from tests.helpers import ROOT


def start(models_dir, pack="scrfd-mbf"):
    return subprocess.run(
        [sys.executable, "-m", "findface_grpc.extractor.server", "--listen", "127.0.0.1:0", "--model-pack", pack],
        env={"FINDFACE_EXTRACTOR_MODELS_DIR": str(models_dir), "PATH": "/usr/bin:/bin"},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_missing_model_file_stops_the_server(tmp_path):
    result = start(tmp_path)
    assert result.returncode == 1
    assert "missing" in result.stderr and "findface_grpc.extractor.models.fetch" in result.stderr


def test_altered_model_file_stops_the_server(tmp_path):
    try:
        paths = packs.verify_pack("scrfd-mbf", packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"models not fetched: {exc}")
    for path in paths.values():
        shutil.copy(path, tmp_path / path.name)
    victim = tmp_path / paths["detector"].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = start(tmp_path)
    assert result.returncode == 1
    assert victim.name in result.stderr and "sha256" in result.stderr
