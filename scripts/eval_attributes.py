"""Gender, age and emotions on the labelled photos: the figures of docs/accuracy.md ("Gender, age and emotions").

Usage: python scripts/eval_attributes.py [--packs scrfd-mbf,yunet-sface] [--faces DIR]

For each model pack (its detector gives the landmarks the chips are cut with), the biggest face of each of the 61
single-person photos, through the extractor's own service:
- gender against each identity's gender (tests/data/identities.csv);
- the top emotion against the expressions of tests/data/expressions.csv (happy or neutral where plain at a glance);
- the estimated age next to the age at the photo's EXIF date where the photo has one, and per identity the median
  estimate.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
from datetime import date, datetime
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc.extractor.config import ExtractorConfig  # noqa: E402
from findface_grpc.extractor.server import build_service  # noqa: E402
from tests.helpers import faces_dir, labelled_photos  # noqa: E402

DATA = ROOT / "tests" / "data"
EVERYTHING = frozenset({"gender", "age", "emotions"})


def read_csv(name: str) -> list[dict]:
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


def exif_date(path: Path) -> date | None:
    exif = Image.open(path).getexif()
    stamp = exif.get_ifd(0x8769).get(36867) or exif.get(306)  # DateTimeOriginal, else DateTime
    return datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").date() if stamp else None


def years_between(born: date, then: date) -> int:
    return then.year - born.year - ((then.month, then.day) < (born.month, born.day))


async def estimates(pack: str, folder: Path) -> list[tuple[str, str, object]]:
    service, _ = build_service(ExtractorConfig(model_pack=pack, workers=1))
    await service.start()
    try:
        out = []
        for name, identity in labelled_photos(folder):
            extraction = await service.extract((folder / name).read_bytes(), attributes=EVERYTHING)
            out.append((name, identity, extraction.faces[0].attributes))
        return out
    finally:
        await service.stop()


def report(pack: str, folder: Path) -> None:
    identities = {row["identity"]: row for row in read_csv("identities.csv")}
    expressions = {row["file"]: row["expression"] for row in read_csv("expressions.csv")}
    results = asyncio.run(estimates(pack, folder))
    right = sum(a.gender == identities[i]["gender"] for _, i, a in results)
    print(f"## {pack}\n\ngender: {right} of {len(results)} right")
    for name, identity, a in results:
        if a.gender != identities[identity]["gender"]:
            print(f"  wrong: {name} ({identity}) {a.gender} {a.gender_score:.2f}")
    judged = [(name, a) for name, _, a in results if name in expressions]
    agree = sum(a.emotions[0][0] == expressions[name] for name, a in judged)
    print(f"emotions: the top emotion agrees on {agree} of {len(judged)} judged photos")
    for name, a in judged:
        if a.emotions[0][0] != expressions[name]:
            print(f"  differs: {name} judged {expressions[name]}, model {a.emotions[0][0]} {a.emotions[0][1]:.2f}")
    print("\n| photo | identity | EXIF date | age then | estimate |\n|---|---|---|---|---|")
    errors = []
    for name, identity, a in results:
        taken = exif_date(folder / name)
        if taken is not None:
            age = years_between(date.fromisoformat(identities[identity]["birth_date"]), taken)
            errors.append(abs(a.age - age))
            print(f"| {name} | {identity} | {taken} | {age} | {a.age:.1f} |")
    print(f"\nmean absolute error over these {len(errors)}: {statistics.mean(errors):.1f} years")
    print("\n| identity | born | photos | median estimate | range |\n|---|---|---|---|---|")
    by_identity: dict[str, list[float]] = {}
    for _, identity, a in results:
        by_identity.setdefault(identity, []).append(a.age)
    for identity in sorted(by_identity):
        ages = by_identity[identity]
        print(f"| {identity} | {identities[identity]['birth_date'][:4]} | {len(ages)} | {statistics.median(ages):.0f} "
              f"| {min(ages):.0f}-{max(ages):.0f} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="scrfd-mbf,yunet-sface")
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.exit("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES")
    for pack in args.packs.split(","):
        report(pack, folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
