from __future__ import annotations

import math

import pytest

from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway import scoring
from findface_grpc.gateway.scoring import Preset, Threshold


@pytest.mark.parametrize("cosine, expected", [(-0.5, 0.0), (0.0, 0.0), (0.42, 0.42), (1.0, 1.0), (1.0001, 1.0),
                                               (math.nan, 0.0)])
def test_confidence_is_clipped_cosine(cosine, expected):
    assert scoring.confidence(cosine) == pytest.approx(expected)


@pytest.mark.parametrize("model", sorted(scoring.PRESETS))
def test_presets_are_ordered_and_in_range(model):
    p = scoring.presets_for(model)
    assert 0 < p.low < p.medium < p.strict < 1
    assert p.value(Preset.NONE) == 0.0


def test_unknown_model_gets_the_fallback():
    assert scoring.presets_for("my-own-model") == scoring.FALLBACK


def test_resolve_presets_default_and_values():
    medium = scoring.PRESETS["w600k_mbf"].medium
    assert scoring.resolve(Threshold(), "w600k_mbf", Preset.MEDIUM) == medium
    assert scoring.resolve(Threshold(preset=Preset.STRICT), "w600k_mbf", Preset.MEDIUM) == scoring.PRESETS["w600k_mbf"].strict
    assert scoring.resolve(Threshold(preset=Preset.NONE), "w600k_mbf", Preset.MEDIUM) == 0.0
    assert scoring.resolve(Threshold(value=0.0), "x", Preset.MEDIUM) == 0.0
    assert scoring.resolve(Threshold(value=1.0), "x", Preset.MEDIUM) == 1.0
    assert scoring.resolve(Threshold(value=0.5), "x", Preset.MEDIUM) == 0.5


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf])
def test_raw_values_outside_0_1_are_invalid(value):
    with pytest.raises(InvalidArgument, match="threshold.value"):
        scoring.resolve(Threshold(value=value), "w600k_mbf", Preset.MEDIUM)


def test_cosine_threshold_keeps_every_hit_a_confidence_threshold_keeps():
    assert scoring.cosine_threshold(0.0) == -1.0  # confidence 0 includes all negative cosines
    for t in (0.1, 0.3, 0.9, 1.0):
        c = scoring.cosine_threshold(t)
        assert scoring.confidence(c) >= t
        assert scoring.confidence(c - 1e-6) < t


# ---- the original product's scale ----

@pytest.mark.parametrize("model", sorted(scoring.PRESETS))
def test_the_mapping_puts_each_preset_exactly_on_the_originals_number(model):
    p = scoring.presets_for(model)
    for preset in (Preset.LOW, Preset.MEDIUM, Preset.STRICT):
        assert scoring.to_original(p.value(preset), p) == scoring.ORIGINAL.value(preset)
        assert scoring.from_original(scoring.ORIGINAL.value(preset), p) == p.value(preset)
    assert scoring.to_original(0.0, p) == 0.0 and scoring.to_original(1.0, p) == 1.0
    assert scoring.from_original(0.0, p) == 0.0 and scoring.from_original(1.0, p) == 1.0


@pytest.mark.parametrize("model", sorted(scoring.PRESETS))
def test_the_mapping_is_monotone_and_its_inverse_consistent(model):
    p = scoring.presets_for(model)
    grid = [i / 1000 for i in range(1001)]
    mapped = [scoring.to_original(x, p) for x in grid]
    assert all(a < b for a, b in zip(mapped, mapped[1:]))
    assert all(0.0 <= y <= 1.0 for y in mapped)
    for x, y in zip(grid, mapped):
        assert scoring.from_original(y, p) == pytest.approx(x, abs=1e-12)
        assert scoring.to_original(scoring.from_original(x, p), p) == pytest.approx(x, abs=1e-12)


def test_the_mapping_clips_what_lies_outside_0_1():
    p = scoring.presets_for("w600k_mbf")
    assert scoring.to_original(-0.3, p) == 0.0 and scoring.to_original(1.2, p) == 1.0


def test_the_originals_0_75_lies_between_medium_and_strict():
    for model in scoring.PRESETS:
        p = scoring.presets_for(model)
        assert p.medium < scoring.from_original(0.75, p) < p.strict


def test_resolve_maps_a_number_on_the_originals_scale():
    p = scoring.PRESETS["sface_2021dec"]
    assert scoring.resolve(Threshold(original_value=0.6616), "sface_2021dec", Preset.LOW) == p.medium
    assert scoring.resolve(Threshold(original_value=0.0), "sface_2021dec", Preset.LOW) == 0.0
    with pytest.raises(InvalidArgument, match="threshold.original_value"):
        scoring.resolve(Threshold(original_value=1.5), "sface_2021dec", Preset.LOW)
