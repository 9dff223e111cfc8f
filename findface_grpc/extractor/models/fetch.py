"""Fetch model packs and the attribute models: `python -m findface_grpc.extractor.models.fetch [--models-dir DIR]
[PACK ... | attributes | all]`.

Prints one line per file; files already in place with the right sha256 are left alone, so it is safe to rerun.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from findface_grpc.extractor.models.attribute_packs import FETCH_TARGET, fetch_attributes
from findface_grpc.extractor.models.packs import MODELS_DIR_ENV, PACKS, ModelError, default_models_dir, fetch_pack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m findface_grpc.extractor.models.fetch", description="Download and check model packs and attribute models."
    )
    parser.add_argument(
        "--models-dir", type=Path, help=f"where to put them (default: ${MODELS_DIR_ENV}, else <repo>/models)"
    )
    known = [*PACKS, FETCH_TARGET]
    parser.add_argument(
        "packs", nargs="*", metavar="PACK",
        help=f"{', '.join(PACKS)}, {FETCH_TARGET} (gender, age and emotions) or all (the default)",
    )
    args = parser.parse_args(argv)
    names = known if not args.packs or "all" in args.packs else args.packs
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown pack(s) {', '.join(unknown)}; known: {', '.join(known)}, all")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    models_dir = args.models_dir or default_models_dir()
    for name in names:
        try:
            results = fetch_attributes(models_dir) if name == FETCH_TARGET else fetch_pack(name, models_dir)
        except ModelError as exc:
            print(f"{name}: failed: {exc}", file=sys.stderr)
            return 1
        for r in results:
            state = "fetched" if r.fetched else "present"
            print(f"{name} {r.file.role} {r.path} {state} sha256 {r.file.sha256}; licence: {r.file.licence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
