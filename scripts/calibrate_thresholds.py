"""Measure genuine and impostor similarity on the labelled photos, per model pack, to check threshold presets.

Usage: python scripts/calibrate_thresholds.py [--packs scrfd-mbf,yunet-sface] [--faces DIR] [--json OUT]
       [--at 0.363 ...]

For each pack: embeds the biggest face of every labelled single-person photo in-process (the extractor's own
pipeline and models), then scores every pair of photos by cosine similarity, which is what the cluster's
`confidence` is (clipped to [0, 1]). Prints, per pack:
- how many genuine and impostor pairs there are, over all photo pairs (labels.csv) and over the labelled pairs
  of pairs.csv alone;
- the impostor score distribution (max and upper quantiles), and the genuine one (min and lower quantiles);
- for the presets in findface_grpc.gateway.scoring, and any thresholds given with --at (for example OpenCV's
  published 0.363 for SFace): the measured false accept rate (with how small a rate the sample can show at all)
  and the true accept rate;
- two fits to the impostor scores and the thresholds they put at FAR 1e-1, 1e-3 and 1e-5: a normal distribution,
  and an exponential tail over the top 5% of scores (peaks over threshold), which follows a tail heavier than the
  normal one. Below about 1e-3 both are extrapolations past what the sample measures: docs/thresholds.md says how
  much weight they get.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc.extractor.models import packs  # noqa: E402
from findface_grpc.extractor.pipeline import Limits, MultiFace, Pipeline  # noqa: E402
from findface_grpc.gateway import scoring  # noqa: E402
from tests.helpers import faces_dir, labelled_pairs, labelled_photos  # noqa: E402

FARS = (1e-1, 1e-3, 1e-5)
TAIL_FRACTION = 0.05


def embed_all(pack: str, folder: Path, names: list[str]) -> tuple[str, dict[str, np.ndarray]]:
    detector, embedder, info = packs.load_pack(pack, packs.default_models_dir(), providers=["CPUExecutionProvider"])
    pipeline = Pipeline(detector, Limits(10 << 20, 100_000_000, 50))
    out = {}
    for name in names:
        prepared = pipeline.prepare((folder / name).read_bytes(), selector=MultiFace.BIGGEST)
        if not prepared.faces:
            print(f"  {pack}: no face in {name}; left out", file=sys.stderr)
            continue
        vector = embedder.embed(np.stack([prepared.faces[0].crop]))[0]
        out[name] = vector / np.linalg.norm(vector)
    return info.embedder_id, out


def normal_quantile(p: float) -> float:
    """z with P(Z > z) = p for a standard normal."""
    return statistics.NormalDist().inv_cdf(1.0 - p)


def exponential_tail_threshold(scores: np.ndarray, far: float) -> float:
    """Threshold at `far` from an exponential fit to the scores above their (1 - TAIL_FRACTION) quantile."""
    u = float(np.quantile(scores, 1.0 - TAIL_FRACTION))
    if far >= TAIL_FRACTION:
        return float(np.quantile(scores, 1.0 - far))
    excess = scores[scores > u] - u
    scale = float(excess.mean())
    return u + scale * float(np.log(TAIL_FRACTION / far))


def summarise(model_id: str, vectors: dict[str, np.ndarray], identity: dict[str, str],
              labelled: list[tuple[str, str, bool]], extra: tuple[float, ...] = ()) -> dict:
    genuine, impostor = [], []
    for a, b in itertools.combinations(sorted(vectors), 2):
        score = float(np.dot(vectors[a], vectors[b]))
        (genuine if identity[a] == identity[b] else impostor).append(score)
    labelled_imp = [float(np.dot(vectors[a], vectors[b])) for a, b, same in labelled
                    if not same and a in vectors and b in vectors]
    g, i = np.array(genuine), np.array(impostor)
    mean, std = float(i.mean()), float(i.std(ddof=1))
    presets = scoring.presets_for(model_id)
    report = {
        "model_id": model_id,
        "photos": len(vectors),
        "genuine_pairs": len(g),
        "impostor_pairs": len(i),
        "labelled_impostor_pairs": len(labelled_imp),
        "smallest_measurable_far": 1.0 / len(i),
        "impostor": {"max": float(i.max()), "p99": float(np.quantile(i, 0.99)), "p90": float(np.quantile(i, 0.90)),
                     "mean": mean, "std": std},
        "labelled_impostor_max": max(labelled_imp) if labelled_imp else None,
        "genuine": {"min": float(g.min()), "p01": float(np.quantile(g, 0.01)), "p10": float(np.quantile(g, 0.10)),
                    "median": float(np.median(g))},
        "presets": {},
        "normal_fit_thresholds": {f"{far:g}": mean + normal_quantile(far) * std for far in FARS},
        "tail_fit_thresholds": {f"{far:g}": exponential_tail_threshold(i, far) for far in FARS},
    }
    for name, t in [(n, getattr(presets, n)) for n in ("strict", "medium", "low")] + [(f"at {t:g}", t) for t in extra]:
        report["presets"][name] = {
            "threshold": t,
            "far_measured": float((i >= t).mean()),
            "impostors_accepted": int((i >= t).sum()),
            "tar_measured": float((g >= t).mean()),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", default="scrfd-mbf,yunet-sface")
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--at", type=float, nargs="*", default=[], help="more thresholds to measure FAR and TAR at")
    args = parser.parse_args(argv)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    photos = labelled_photos(folder)
    identity = dict(photos)
    labelled = labelled_pairs(folder)
    reports = []
    for pack in args.packs.split(","):
        model_id, vectors = embed_all(pack, folder, [name for name, _ in photos])
        r = summarise(model_id, vectors, identity, labelled, tuple(args.at))
        reports.append(r)
        print(f"\n== {pack} ({model_id}): {r['photos']} photos, {r['genuine_pairs']} genuine pairs, "
              f"{r['impostor_pairs']} impostor pairs ({r['labelled_impostor_pairs']} of them in pairs.csv)")
        print(f"   smallest FAR this sample can show: {r['smallest_measurable_far']:.1e} (one impostor pair)")
        imp, gen = r["impostor"], r["genuine"]
        print(f"   impostor cosine: max {imp['max']:.3f} (pairs.csv only: {r['labelled_impostor_max']:.3f}), "
              f"p99 {imp['p99']:.3f}, p90 {imp['p90']:.3f}, mean {imp['mean']:.3f}, std {imp['std']:.3f}")
        print(f"   genuine cosine:  min {gen['min']:.3f}, p01 {gen['p01']:.3f}, p10 {gen['p10']:.3f}, "
              f"median {gen['median']:.3f}")
        for name, p in r["presets"].items():
            print(f"   {'preset ' + name if not name.startswith('at') else name:<13} {p['threshold']:.3f}: FAR {p['far_measured']:.4f} "
                  f"({p['impostors_accepted']}/{r['impostor_pairs']}), TAR {p['tar_measured']:.3f}")
        fit = ", ".join(f"FAR {k}: {v:.3f}" for k, v in r["normal_fit_thresholds"].items())
        print(f"   normal fit to impostors: {fit}")
        fit = ", ".join(f"FAR {k}: {v:.3f}" for k, v in r["tail_fit_thresholds"].items())
        print(f"   exponential tail fit (top {TAIL_FRACTION:.0%}): {fit}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
