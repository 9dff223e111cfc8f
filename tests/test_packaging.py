"""A wheel built from the tree carries what the servers read from their package folders, declared as package data
(setuptools warns about, and means to drop, data folders that are not declared packages): the console's files and
the shard's Lua; and the console served from the installed wheel finds its files."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_declares_and_carries_the_package_data(tmp_path):
    # Built from a copy of what the build reads, so that the tree gets no build/ and the wheel nothing stale.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("findface_grpc", "gateway_http"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(tmp_path), "."],
        cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "absent from the `packages` configuration" not in output, output[output.find("absent") - 300:][:1500]
    (wheel,) = tmp_path.glob("findface_grpc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    ui = {p.name for p in (ROOT / "gateway_http" / "ui").iterdir() if p.suffix in (".html", ".js", ".css")}
    assert {f"gateway_http/ui/{name}" for name in ui} <= names
    assert "findface_grpc/shard/storage.lua" in names

    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    served = subprocess.run(
        [sys.executable, "-c", "import gateway_http.console as c; body, kind = c.lookup(['index.html']); "
                               "print(c.__file__, kind, len(body), sep='|')"],
        cwd=tmp_path, env={"PYTHONPATH": str(installed)}, capture_output=True, text=True, timeout=60)
    assert served.returncode == 0, served.stderr
    where, kind, size = served.stdout.strip().split("|")
    assert where.startswith(str(installed)) and kind.startswith("text/html")
    assert int(size) == (ROOT / "gateway_http" / "ui" / "index.html").stat().st_size
