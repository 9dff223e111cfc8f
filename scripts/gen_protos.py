"""Regenerate the Python code for protos/ into findface_grpc/v1/ (the generated files are committed).

Usage: python scripts/gen_protos.py [--check]
--check regenerates into a temporary folder and exits 1 when the committed files differ (used by the tests).
"""
from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc
import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("findface_grpc") / "v1"


def generate(out_dir: Path) -> list[Path]:
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_dir / PACKAGE_DIR).iterdir() if p.suffix in (".py", ".pyi"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            stale = [
                str(p.relative_to(tmp))
                for p in fresh
                if not (ROOT / p.relative_to(tmp)).exists()
                or not filecmp.cmp(p, ROOT / p.relative_to(tmp), shallow=False)
            ]
        if stale:
            sys.stderr.write("stale generated code, run scripts/gen_protos.py: " + ", ".join(stale) + "\n")
            return 1
        return 0
    generate(ROOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
