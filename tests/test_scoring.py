"""Severity scores (pipelines/scoring.py): monotone anchors, renormalised weights, overall."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.scoring import RAISE_SHARE, SCORING, Anchor, family_score, scores


def test_anchor_is_zero_at_floor_fifty_at_half_and_strictly_increasing_above():
    a = Anchor(floor=2.0, half=6.0, weight=1.0)
    assert a.severity(1.0) == 0.0 and a.severity(2.0) == 0.0
    assert a.severity(6.0) == pytest.approx(50.0)
    values = [a.severity(v) for v in np.linspace(2.01, 500.0, 200)]
    assert all(b > c for b, c in zip(values[1:], values[:-1]))
    assert values[-1] < 100.0


def test_every_anchor_of_the_table_is_well_formed():
    for family, anchors in SCORING.items():
        for raises in (False, True):
            group = [a.weight for a in anchors.values() if a.raises == raises]
            assert not group or abs(sum(group) - 1.0) < 1e-9, (family, raises)
        assert any(not a.raises for a in anchors.values()), family
        for name, a in anchors.items():
            assert a.half > a.floor and a.weight > 0, name


def test_family_score_renormalises_over_measured_metrics():
    spots = SCORING["pigmentation"]["spot_area_pct"]
    only_spots = family_score("pigmentation", {"spot_area_pct": spots.half, "tone_unevenness": None})
    assert only_spots == pytest.approx(50.0, abs=0.05)
    assert family_score("pigmentation", {"spot_area_pct": None}) is None


def test_a_metric_that_needs_another_counts_at_its_floor_without_it():
    m = {"spot_area_pct": 0.5, "tone_unevenness": 4.0, "red_area_pct": 2.0, "spot_contrast_de": 20.0,
         "spot_count": 0}
    assert family_score("pigmentation", m) == 0.0
    m["spot_count"] = 2
    assert family_score("pigmentation", m) > 0.0


def test_overall_is_the_mean_of_pigmentation_and_wrinkles_whatever_texture_is():
    metrics = {
        "pigmentation": {"spot_area_pct": 6.0, "tone_unevenness": 12.0},           # 50
        "wrinkles": {"wrinkle_length_mm_per_cm2": 0.5, "wrinkle_density_pct": 0.5},  # 0
    }
    without = scores(metrics)
    with_texture = scores({**metrics, "texture": {"roughness": 40.0}})
    assert without["texture"] is None and with_texture["texture"] > 80.0
    assert without["overall"] == with_texture["overall"] == pytest.approx(25.0, abs=0.05)
    assert scores({"texture": {"roughness": 40.0}})["overall"] is None


def test_pores_raise_texture_by_part_of_what_is_left_and_never_make_it_jump():
    rough = SCORING["texture"]["roughness"]
    alone = family_score("texture", {"roughness": rough.half, "pore_density_per_cm2": None})
    assert alone == pytest.approx(50.0, abs=0.05)
    # pores at their floors (resolved, unremarkable): the score is the roughness's own
    floors = {"roughness": rough.half, "pore_density_per_cm2": 20.0, "pore_diameter_mm": 0.3}
    assert family_score("texture", floors) == pytest.approx(alone, abs=0.05)
    # pores at their halves raise it by RAISE_SHARE * 50 % of what is left to 100
    halves = {"roughness": rough.half, "pore_density_per_cm2": 80.0, "pore_diameter_mm": 0.5}
    assert family_score("texture", halves) == pytest.approx(50.0 + 50.0 * RAISE_SHARE * 0.5, abs=0.05)
    # monotone in each: more pores, larger pores, rougher skin
    more = [family_score("texture", {**halves, "pore_density_per_cm2": d}) for d in (20.0, 40.0, 80.0, 160.0)]
    larger = [family_score("texture", {**halves, "pore_diameter_mm": d}) for d in (0.3, 0.4, 0.5, 0.7)]
    rougher = [family_score("texture", {**halves, "roughness": r}) for r in (1.2, 1.8, 2.2, 4.0)]
    for seq in (more, larger, rougher):
        assert all(b > a for a, b in zip(seq, seq[1:])), seq
    # pores alone are no texture score: roughness is measured wherever pores are
    assert family_score("texture", {"roughness": None, "pore_density_per_cm2": 80.0}) is None


def test_severity_map_is_the_severity_of_each_value_as_a_share():
    a = Anchor(floor=1.0, half=3.0, weight=1.0)
    values = np.array([[0.0, 1.0, 2.0], [3.0, 5.0, 40.0]], np.float32)
    heat = a.severity_map(values)
    assert heat.dtype == np.float32 and heat.shape == values.shape
    assert heat == pytest.approx(np.array([[a.severity(float(v)) / 100.0 for v in row] for row in values]), abs=1e-6)
