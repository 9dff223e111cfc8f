"""Confidence from cosine similarity, and thresholds (named presets per embedder model, or raw values).

Confidence is what clients see: a number in [0, 1], higher meaning more alike. It is the cosine similarity
clipped to [0, 1]: a pair of unrelated faces scores around 0 with these embedders, so the clip loses nothing a
client can act on, and a threshold on confidence is a threshold on cosine.

Legacy clients hard-code numbers on the original product's scale (0.75, or its presets 0.7834 / 0.6616 / 0.5690),
so a confidence can also be expressed on that scale: `to_original` maps it per model so that the original's
preset numbers fall exactly on our presets, which keep the same false accept rates (docs/thresholds.md).
"""
from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from enum import Enum

from findface_grpc.errors import InvalidArgument

log = logging.getLogger(__name__)


class Preset(Enum):
    STRICT = "strict"  # false accept rate about 1e-5
    MEDIUM = "medium"  # about 1e-3
    LOW = "low"  # about 1e-1
    NONE = "none"  # 0: pure similarity ranking


@dataclass(frozen=True)
class Presets:
    strict: float
    medium: float
    low: float

    def value(self, preset: Preset) -> float:
        if preset is Preset.NONE:
            return 0.0
        return getattr(self, preset.value)


# Confidence thresholds per embedder model id, each preset keeping the original product's false accept rate.
# How each number was obtained (published figures, our measurement on shared/faces with
# scripts/calibrate_thresholds.py, and where the sample is too small, extrapolation) is in docs/thresholds.md.
# In short: LOW is measured (the impostors' 90th percentile); MEDIUM and STRICT lie between a normal and an
# exponential-tail fit to the impostor scores, since 1690 impostor pairs measure a FAR no smaller than ~6e-4.
PRESETS: dict[str, Presets] = {
    "w600k_mbf": Presets(strict=0.40, medium=0.28, low=0.10),
    "sface_2021dec": Presets(strict=0.55, medium=0.42, low=0.24),
}
# Custom models without an entry get the ArcFace-like values, which is what a custom 112x112 embedder usually is.
FALLBACK = Presets(strict=0.40, medium=0.28, low=0.10)


def presets_for(model_id: str) -> Presets:
    presets = PRESETS.get(model_id)
    if presets is None:
        log.warning("no calibrated thresholds for model %r; using ArcFace-like defaults", model_id)
        return FALLBACK
    return presets


# The original product's presets on its own confidence scale, at the same false accept rates as ours.
ORIGINAL = Presets(strict=0.7834, medium=0.6616, low=0.5690)


def _anchors(presets: Presets) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The points the mapping to the original's scale passes through: (confidences, original values)."""
    return ((0.0, presets.low, presets.medium, presets.strict, 1.0),
            (0.0, ORIGINAL.low, ORIGINAL.medium, ORIGINAL.strict, 1.0))


def _interpolate(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """Piecewise linear through (xs, ys), both increasing from 0 to 1; exact at every anchor."""
    x = min(1.0, max(0.0, x))
    if x >= xs[-1]:
        return ys[-1]
    # The segment whose start is x when x is an anchor, so that an anchor maps without rounding.
    i = bisect.bisect_right(xs, x) - 1
    return ys[i] + (x - xs[i]) * (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])


def to_original(confidence_value: float, presets: Presets) -> float:
    """A confidence in [0, 1] on the original product's scale, for a model with these presets.

    Monotone, 0 -> 0 and 1 -> 1, each preset -> the original's number for it, linear in between.
    """
    xs, ys = _anchors(presets)
    return _interpolate(confidence_value, xs, ys)


def from_original(value: float, presets: Presets) -> float:
    """The inverse of `to_original`: the confidence that a number on the original's scale stands for."""
    xs, ys = _anchors(presets)
    return _interpolate(value, ys, xs)


@dataclass(frozen=True)
class Threshold:
    """What a request asked for: a preset, a raw confidence, or a number on the original's scale (one is set)."""

    preset: Preset | None = None
    value: float | None = None
    original_value: float | None = None


def _checked(value: float, field: str) -> float:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"{field} must be within [0, 1], got {value}")
    return float(value)


def resolve(threshold: Threshold, model_id: str, default: Preset, field: str = "threshold") -> float:
    """The confidence threshold in [0, 1] a request means, for descriptors of `model_id`."""
    if threshold.value is not None:
        return _checked(threshold.value, f"{field}.value")
    if threshold.original_value is not None:
        return from_original(_checked(threshold.original_value, f"{field}.original_value"), presets_for(model_id))
    return presets_for(model_id).value(threshold.preset or default)


def confidence(cosine: float) -> float:
    if math.isnan(cosine):
        return 0.0
    return min(1.0, max(0.0, float(cosine)))


def cosine_threshold(confidence_threshold: float) -> float:
    """The cosine a shard must filter at so that every hit with confidence >= `confidence_threshold` is kept.

    Confidence 0 covers every negative cosine too (they all clip to 0), so it means no filtering at all.
    """
    if confidence_threshold <= 0.0:
        return -1.0
    return confidence_threshold
