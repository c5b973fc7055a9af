"""Wrinkle metrics against synthetic skin with known lines (10 px/mm, the canonical scale)."""
import math

import numpy as np
import pytest

from pipelines.errors import InvalidInput
from pipelines.metrics.luminance import skin_luminance
from pipelines.metrics.wrinkles import OrientationPrior, WrinkleParams, default_priors, measure_wrinkles
from pipelines.scoring import family_score
from pipelines.synthetic.lines import Line, plant_lines, random_lines
from pipelines.synthetic.pores import plant_pores, random_pores
from pipelines.synthetic.skin import lab_to_srgb8, skin_lab
from pipelines.synthetic.spots import plant_spots
from tests.wobble import blur, exposure, jpeg

PPM = 10.0


def skin(size_mm=80.0, seed=0, grain=0.8):
    n = int(size_mm * PPM)
    return skin_lab((n, n), PPM, grain=grain, seed=seed)


def wrinkles(rgb, priors=None, region="forehead", **kw):
    m = np.ones(rgb.shape[:2], bool)
    return measure_wrinkles(rgb, {region: m}, PPM, skin_mask=m, priors=priors or {}, **kw)


@pytest.fixture(scope="module", params=[1, 2], ids=["seed1", "seed2"])
def lined(request):
    """8 lines, 15-30 mm long, 0.5-1 mm wide, delta L* 5-8, any direction, on 8 x 8 cm."""
    lab = skin(seed=request.param)
    lines = random_lines(np.ones(lab.shape[:2], bool), PPM, 8, length_mm=(15, 30), width_mm=(0.5, 1.0),
                         depth=(5.0, 8.0), seed=request.param)
    lab, truth = plant_lines(lab, PPM, lines)
    rgb = lab_to_srgb8(lab)
    return rgb, truth, wrinkles(rgb)


def test_length_count_and_depth_match_planted(lined):
    _, truth, res = lined
    f = res.face
    assert f.wrinkle_length_mm == pytest.approx(truth.total_length_mm, rel=0.20)
    assert abs(f.wrinkle_count - truth.count) <= 1
    # as measured: length +5..+10 % (8-connected steps over-count oblique lines), count exact
    assert f.wrinkle_length_mm == pytest.approx(truth.total_length_mm, rel=0.12)
    assert f.wrinkle_count == truth.count
    assert f.wrinkle_length_mm_per_cm2 == pytest.approx(f.wrinkle_length_mm / f.area_cm2, rel=0.02)
    assert f.wrinkle_depth_index == pytest.approx(truth.mean_depth, rel=0.15)
    assert len(res.segments) == f.wrinkle_count
    assert res.segments[:, 0].sum() == pytest.approx(f.wrinkle_length_mm, rel=1e-3)
    # the detected lines cover the planted ones; density is close to their area share
    m = res.wrinkle_mask
    assert m.dtype == bool and m.shape == truth.mask.shape
    assert (m & truth.mask).sum() / truth.mask.sum() > 0.85
    assert f.wrinkle_density_pct == pytest.approx(100 * truth.mask.mean(), rel=0.6)
    r = res.wrinkle_response
    assert r.dtype == np.float32 and r[truth.mask].mean() > 3.0 > np.median(r[~m])


def test_clean_skin_has_no_wrinkles():
    for seed in (3, 4):
        f = wrinkles(lab_to_srgb8(skin(seed=seed, grain=1.2))).face
        assert f.wrinkle_count == 0
        assert f.wrinkle_length_mm_per_cm2 < 0.1
        assert f.wrinkle_density_pct < 0.05
        assert f.wrinkle_depth_index == 0.0


def test_pores_and_blotches_are_not_wrinkles():
    lab = skin(40.0, seed=5)
    m = np.ones(lab.shape[:2], bool)
    lab, _ = plant_pores(lab, PPM, random_pores(m, PPM, 60.0, diameter_mm=(0.3, 0.5), depth=(5, 10), seed=5))
    # plus a few dark round spots 2-4 mm across
    yy, xx = np.mgrid[: lab.shape[0], : lab.shape[1]]
    for cx, cy, r in ((100, 100, 10), (300, 150, 15), (200, 320, 20)):
        lab[..., 0] -= 8 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (r / 2) ** 2))
    f = wrinkles(lab_to_srgb8(lab)).face
    assert f.wrinkle_count == 0 and f.wrinkle_length_mm < 3.0


@pytest.mark.parametrize("gated", [True, False], ids=["gates", "no gates"])
def test_spot_rims_and_shadow_edges_are_not_wrinkles(gated):
    """The dark side of a step in L* curves up like a valley floor: flat-topped brown spots
    (3.5-5 mm, 12-15 darker, as plant_spots draws them) ring with "lines" just inside their
    rims, and a shadow's soft edge (10 L* over 1 mm) runs as one. A wrinkle rises on both
    sides and its floor runs on along it: a step rises on one side (the edge, and the rim seen
    at a fine scale), and a spot's rim seen at a scale near the spot's size turns away, its
    floor rising (measured: 0.34-0.50 of its depth, against 0.05 for the line). They are not
    wrinkles; a real line of the same depth planted beside them still is. Without the gates
    the rims and the edge count."""
    lab = skin(60.0, seed=7)
    n = lab.shape[0]
    inner = np.zeros((n, n), bool)
    inner[50:300, 50:550] = True                      # spots in the top part
    lab, spots = plant_spots(lab, PPM, mask=inner, count=10, diameter_mm=(3.5, 5.0), delta_l=(12.0, 15.0), seed=7)
    assert spots.spot_count == 10
    yy = np.arange(n, dtype=np.float32)[:, None]
    shadow = np.clip((yy - 400.0) / 10.0, 0.0, 1.0)   # below y = 40 mm: 10 L* darker, edge 1 mm
    lab[..., 0] -= 10.0 * shadow
    line = Line(x_mm=30.0, y_mm=34.0, length_mm=25.0, width_mm=1.0, depth=12.0, angle_deg=0.0)
    lab, truth = plant_lines(lab, PPM, [line])
    params = WrinkleParams() if gated else WrinkleParams(valley_min_symmetry=0.0, floor_max_rise=0.0)
    f = wrinkles(lab_to_srgb8(lab), params=params).face
    if gated:
        # one rim's floor rises 0.34 of its depth, inside the soft ramp (0.2-0.4): partly counted
        assert f.wrinkle_count <= 2
        assert f.wrinkle_length_mm == pytest.approx(25.0, rel=0.2)
    else:
        assert f.wrinkle_length_mm > 60.0     # the rims and the edge, as the gate's premise says


@pytest.mark.parametrize("name,change", [
    ("exposure+15%", lambda x: exposure(x, 1.15)),
    ("exposure-15%", lambda x: exposure(x, 0.85)),
    ("jpeg75", jpeg),
    ("blur0.5", blur),
])
def test_length_robust_to_capture_changes(lined, name, change):
    rgb, _, res = lined
    other = wrinkles(change(rgb)).face
    assert other.wrinkle_length_mm == pytest.approx(res.face.wrinkle_length_mm, rel=0.10), name
    assert other.wrinkle_count == res.face.wrinkle_count


def test_more_and_longer_lines_raise_length_density_and_count():
    lab = skin(seed=6)
    mask = np.ones(lab.shape[:2], bool)
    lines = random_lines(mask, PPM, 8, length_mm=20.0, width_mm=0.7, depth=6.0, seed=6)
    by_n = [wrinkles(lab_to_srgb8(plant_lines(lab, PPM, lines[:n])[0])).face for n in (2, 4, 8)]
    for a, b in zip(by_n, by_n[1:]):
        assert b.wrinkle_length_mm_per_cm2 > a.wrinkle_length_mm_per_cm2
        assert b.wrinkle_density_pct > a.wrinkle_density_pct
        assert b.wrinkle_count > a.wrinkle_count
    by_len = []
    for length in (8.0, 16.0, 24.0):
        ls = [Line(x, y, length, 0.7, 6.0, 0.0) for x, y in ((40, 15), (40, 35), (40, 55))]
        by_len.append(wrinkles(lab_to_srgb8(plant_lines(lab, PPM, ls)[0])).face.wrinkle_length_mm_per_cm2)
    assert by_len[0] < by_len[1] < by_len[2]


def test_deeper_lines_raise_depth_index():
    lab = skin(seed=7)
    lines = random_lines(np.ones(lab.shape[:2], bool), PPM, 6, length_mm=20.0, width_mm=0.8, depth=1.0, seed=7)
    depth = []
    for z in (4.0, 6.0, 9.0, 12.0):
        ls = [Line(ln.x_mm, ln.y_mm, ln.length_mm, ln.width_mm, z, ln.angle_deg) for ln in lines]
        f = wrinkles(lab_to_srgb8(plant_lines(lab, PPM, ls)[0])).face
        assert f.wrinkle_count == 6
        assert f.wrinkle_depth_index == pytest.approx(z, rel=0.2)
        depth.append(f.wrinkle_depth_index)
    assert all(b > a for a, b in zip(depth, depth[1:])), depth


def test_depth_weighted_length_rises_with_every_line_added_even_when_the_mean_depth_falls():
    """Two deep lines (delta L* 12), then two and four shallow ones (5) beside them: the mean depth
    index falls, the depth-weighted length (and the wrinkle score built on it) rises. For lines
    of one depth it is the length times the depth index."""
    lab = skin(seed=8)
    deep = [Line(40.0, y, 25.0, 0.9, 12.0, 0.0) for y in (12.0, 24.0)]
    shallow = [Line(40.0, y, 25.0, 0.9, 5.0, 0.0) for y in (36.0, 48.0, 60.0, 70.0)]
    faces = [wrinkles(lab_to_srgb8(plant_lines(lab, PPM, deep + shallow[:n])[0])).face for n in (0, 2, 4)]
    assert [f.wrinkle_count for f in faces] == [2, 4, 6]
    first = faces[0]
    assert first.wrinkle_depth_weighted_length == pytest.approx(
        first.wrinkle_length_mm_per_cm2 * first.wrinkle_depth_index, rel=0.05)
    assert first.wrinkle_depth_index == pytest.approx(12.0, rel=0.2)
    dwl = [f.wrinkle_depth_weighted_length for f in faces]
    depth = [f.wrinkle_depth_index for f in faces]
    assert depth[0] > depth[1] > depth[2], depth
    assert dwl[0] < dwl[1] < dwl[2], dwl
    # each shallow line adds about its length x depth: 25 mm x 5 over the 64 cm^2 skin
    assert dwl[2] - dwl[1] == pytest.approx(2 * 25.0 * 5.0 / first.area_cm2, rel=0.3)
    score = [family_score("wrinkles", f.as_dict()) for f in faces]
    assert score[0] < score[1] < score[2], score


def test_forehead_prior_keeps_horizontal_rejects_vertical():
    lab = skin(60.0, seed=8)
    mask = np.ones(lab.shape[:2], bool)
    prior = {"forehead": OrientationPrior(angle_deg=0.0)}
    for angle, expect in ((0.0, 6), (15.0, 6), (90.0, 0), (60.0, 0)):
        ls = random_lines(mask, PPM, 6, angle_deg=angle, length_mm=(15, 25), seed=8)
        lab2, truth = plant_lines(lab, PPM, ls)
        rgb = lab_to_srgb8(lab2)
        with_prior = wrinkles(rgb, prior).face
        without = wrinkles(rgb).face
        assert without.wrinkle_count == 6
        assert with_prior.wrinkle_count == expect, angle
        if expect:
            assert with_prior.wrinkle_length_mm == pytest.approx(without.wrinkle_length_mm, rel=0.05)
        else:
            assert with_prior.wrinkle_length_mm == 0.0


def test_glabella_prior_is_vertical_and_tolerance_is_respected():
    lab = skin(60.0, seed=9)
    mask = np.ones(lab.shape[:2], bool)
    for angle, tol, expect in ((90.0, 30.0, 5), (0.0, 30.0, 0), (65.0, 30.0, 5), (45.0, 30.0, 0), (45.0, 50.0, 5)):
        ls = random_lines(mask, PPM, 5, angle_deg=angle, length_mm=15.0, seed=9)
        rgb = lab_to_srgb8(plant_lines(lab, PPM, ls)[0])
        got = wrinkles(rgb, {"glabella": OrientationPrior(angle_deg=90.0, tolerance_deg=tol)}, region="glabella")
        assert got.face.wrinkle_count == expect, (angle, tol)


def fan(corner_mm, tangential):
    """Four 10 mm lines 30 mm from an eye corner on the image's right, radial or tangential."""
    cx, cy = corner_mm
    out = []
    for a in (-40.0, -13.0, 13.0, 40.0):
        t = math.radians(a)
        out.append(Line(cx + 30 * math.cos(t), cy - 30 * math.sin(t), 10.0, 0.7, 6.0, a + (90.0 if tangential else 0.0)))
    return out


def test_crows_feet_radial_prior():
    lab = skin(60.0, seed=10)
    corner_mm = (5.0, 30.0)
    prior = {"crows_feet_left": OrientationPrior(radial_from=(corner_mm[0] * PPM, corner_mm[1] * PPM))}
    for tangential, expect in ((False, 4), (True, 0)):
        lab2, truth = plant_lines(lab, PPM, fan(corner_mm, tangential))
        rgb = lab_to_srgb8(lab2)
        assert wrinkles(rgb, region="crows_feet_left").face.wrinkle_count == 4
        got = wrinkles(rgb, prior, region="crows_feet_left").face
        assert got.wrinkle_count == expect, tangential
        if expect:
            assert got.wrinkle_length_mm == pytest.approx(truth.total_length_mm, rel=0.2)


def test_default_priors():
    p = default_priors((1180.0, 830.0), (320.0, 830.0))
    assert p["forehead"].angle_deg == 0.0 and p["glabella"].angle_deg == 90.0
    assert p["crows_feet_left"].radial_from == (1180.0, 830.0)
    assert p["crows_feet_right"].radial_from == (320.0, 830.0)
    # folds run down and outwards: on the image's left (subject's right) that is +60 deg on screen
    assert p["nasolabial_right"].angle_deg == 60.0 and p["nasolabial_left"].angle_deg == -60.0
    assert "crows_feet_left" not in default_priors()
    with pytest.raises(InvalidInput):
        OrientationPrior(angle_deg=0.0, radial_from=(1.0, 2.0))
    with pytest.raises(InvalidInput):
        OrientationPrior(angle_deg=0.0, tolerance_deg=0.0)


def test_nasolabial_prior_direction_matches_the_faces_side():
    lab = skin(60.0, seed=11)
    mask = np.ones(lab.shape[:2], bool)
    p = default_priors()
    ls = random_lines(mask, PPM, 4, angle_deg=60.0, length_mm=20.0, seed=11)  # "/" on screen
    rgb = lab_to_srgb8(plant_lines(lab, PPM, ls)[0])
    assert wrinkles(rgb, p, region="nasolabial_right").face.wrinkle_count == 4
    assert wrinkles(rgb, p, region="nasolabial_left").face.wrinkle_count == 0


def test_regions_attribution_and_skin_mask():
    lab = skin(60.0, seed=12)
    h, w = lab.shape[:2]
    left = np.zeros((h, w), bool)
    left[:, : w // 2] = True
    right = ~left
    ls = random_lines(left, PPM, 4, angle_deg=(0, 180), length_mm=(10, 20), seed=12)
    lab2, truth = plant_lines(lab, PPM, ls)
    rgb = lab_to_srgb8(lab2)
    sk = np.ones((h, w), bool)
    res = measure_wrinkles(rgb, {"cheek_right": left, "cheek_left": right}, PPM, skin_mask=sk)
    a, b = res.regions["cheek_right"], res.regions["cheek_left"]
    assert a.wrinkle_count == 4 and b.wrinkle_count == 0 and b.wrinkle_length_mm < 1.0
    assert res.face.wrinkle_count == 4
    assert a.wrinkle_length_mm_per_cm2 == pytest.approx(2 * res.face.wrinkle_length_mm_per_cm2, rel=0.05)
    # lines off the skin mask (e.g. under hair) are not measured
    hidden = measure_wrinkles(rgb, {"cheek_right": left & False, "cheek_left": right}, PPM, skin_mask=right)
    assert hidden.face.wrinkle_count == 0
    assert not hidden.wrinkle_mask[left].any() and (hidden.wrinkle_response[left] == 0).all()


def test_low_native_resolution_skips_fine_scales(lined):
    rgb, truth, _ = lined
    res = wrinkles(rgb, native_px_per_mm=4.0)  # a 0.3 mm line spans 1.2 native px
    assert "fine_lines_unresolved" in [c for c, _ in res.warnings]
    # the 0.5-1 mm lines are still found
    assert res.face.wrinkle_length_mm == pytest.approx(truth.total_length_mm, rel=0.25)


def test_shared_luminance_gives_identical_results(lined):
    rgb, _, res = lined
    m = np.ones(rgb.shape[:2], bool)
    lum = skin_luminance(rgb, m, PPM, {"forehead": m})
    again = measure_wrinkles(rgb, {"forehead": m}, PPM, skin_mask=m, luminance=lum)
    assert again.face == res.face


def test_linear_rgb_measures_as_its_srgb_encoding(lined):
    from pipelines.metrics.colour import srgb_to_linear

    rgb, _, res = lined
    lin = wrinkles(srgb_to_linear(rgb)).face
    assert lin.wrinkle_count == res.face.wrinkle_count
    assert lin.wrinkle_length_mm_per_cm2 == pytest.approx(res.face.wrinkle_length_mm_per_cm2, rel=0.02)
    assert lin.wrinkle_depth_index == pytest.approx(res.face.wrinkle_depth_index, rel=0.02)


def test_invalid_inputs_are_rejected():
    m = np.ones((20, 20), bool)
    rgb = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(InvalidInput):
        measure_wrinkles(rgb, {"a": m}, 10.0, skin_mask=m, priors={"a": 0.0})
    with pytest.raises(InvalidInput):
        measure_wrinkles(rgb[..., :2], {"a": m}, 10.0, skin_mask=m)
