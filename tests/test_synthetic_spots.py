"""The spot planter must itself be right before it can judge the detector."""
import math

import numpy as np
import pytest

from pipelines.synthetic.skin import skin_lab
from pipelines.synthetic.spots import plant_spots

PPM = 10.0
SHAPE = (400, 360)


@pytest.fixture(scope="module")
def base():
    return skin_lab(SHAPE, PPM, mottling=0.0, grain=0.0, seed=1)


def test_deterministic_given_seed(base):
    a, ta = plant_spots(base, PPM, count=8, red_count=2, seed=5)
    b, tb = plant_spots(base, PPM, count=8, red_count=2, seed=5)
    c, _ = plant_spots(base, PPM, count=8, red_count=2, seed=6)
    assert np.array_equal(a, b)
    assert [s.centre_xy for s in ta.spots] == [s.centre_xy for s in tb.spots]
    assert not np.array_equal(a, c)


def test_counts_non_overlap_and_inside_mask(base):
    mask = np.zeros(SHAPE, bool)
    mask[20:380, 30:330] = True
    out, truth = plant_spots(base, PPM, mask=mask, count=12, red_count=3, edge_mm=0.6, gap_mm=1.5, seed=2)
    feats = truth.spots + truth.red_areas
    assert truth.spot_count == 12 and len(truth.red_areas) == 3
    for i, f in enumerate(feats):
        outer = f.diameter_mm / 2 * PPM + 0.3 * PPM
        x, y = f.centre_xy
        assert 30 + outer <= x <= 330 - outer and 20 + outer <= y <= 380 - outer
        for g in feats[i + 1:]:
            gap = math.dist(f.centre_xy, g.centre_xy) - outer - (g.diameter_mm / 2 * PPM + 0.3 * PPM)
            assert gap >= 1.5 * PPM - 1e-6
    # nothing changed outside the mask
    assert np.array_equal(out[~mask], base[~mask])
    assert not (truth.spot_mask & truth.red_mask).any()


def test_area_and_contrast_truth(base):
    out, truth = plant_spots(base, PPM, count=10, diameter_mm=(2.0, 5.0), delta_l=8.0, seed=3)
    expected = sum(math.pi * (s.diameter_mm / 2 * PPM) ** 2 for s in truth.spots)
    assert truth.spot_area_px == pytest.approx(expected, rel=0.03)
    assert sum(s.area_px for s in truth.spots) == truth.spot_area_px
    d = out - base
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    for s in truth.spots:
        x, y = (round(v) for v in s.centre_xy)
        dl, da, db = d[y, x]
        assert dl == pytest.approx(-8.0, abs=1e-3)
        assert da == pytest.approx(0.15 * 8.0, abs=1e-3) and db == pytest.approx(0.35 * 8.0, abs=1e-3)
        # soft edge: half contrast at the nominal radius, nothing well past it
        r = s.diameter_mm / 2 * PPM
        dist = np.hypot(yy - s.centre_xy[1], xx - s.centre_xy[0])
        assert d[np.abs(dist - r) < 0.25, 0].mean() == pytest.approx(-4.0, abs=0.3)
        assert np.abs(d[(dist > r + 0.3 * PPM + 1) & (dist < r + 0.3 * PPM + 10)]).max() < 1e-6
        # mean delta-E 2000 of an L*-8 brown spot on L* 62 skin: between 6 and 9
        assert 6.0 < s.mean_delta_e < 9.0


def test_red_areas_raise_a_star(base):
    out, truth = plant_spots(base, PPM, count=0, red_count=2, red_delta_a=8.0, seed=4)
    for f in truth.red_areas:
        x, y = (round(v) for v in f.centre_xy)
        dl, da, db = out[y, x] - base[y, x]
        assert da == pytest.approx(8.0, abs=1e-3) and dl < 0 and db > 0
    assert truth.red_area_px > 0 and truth.spot_area_px == 0


def test_impossible_placement_raises(base):
    with pytest.raises(ValueError):
        plant_spots(base, PPM, count=200, diameter_mm=5.0, seed=0)
    small = np.zeros(SHAPE, bool)
    small[:20, :20] = True
    with pytest.raises(ValueError):
        plant_spots(base, PPM, mask=small, count=1, diameter_mm=4.0)
