"""Pigmentation metrics against planted ground truth (synthetic skin at a known px/mm)."""
import math

import cv2
import numpy as np
import pytest

from pipelines.errors import InvalidInput
from pipelines.metrics.colour import lab_to_linear, linear_to_srgb8, normalize_colour, srgb_to_linear
from pipelines.metrics.pigmentation import (
    METRIC_KEYS,
    PigmentationParams,
    ita_category,
    ita_degrees,
    measure_pigmentation,
)
from pipelines.synthetic.skin import skin_lab
from pipelines.synthetic.spots import plant_spots

PPM = 10.0
SHAPE = (600, 500)  # 60 x 50 mm
SKIN = np.ones(SHAPE, bool)
PLANT = np.zeros(SHAPE, bool)
PLANT[20:-20, 20:-20] = True  # keep planted spots off the 1 mm measuring border
HALVES = {"left": np.zeros(SHAPE, bool), "right": np.zeros(SHAPE, bool)}
HALVES["left"][:, : SHAPE[1] // 2] = True
HALVES["right"][:, SHAPE[1] // 2:] = True


def make(*, count=20, diameter_mm=(2.0, 5.0), delta_l=(6.0, 10.0), red_count=0, red_delta_a=(6.0, 10.0),
         base=(62.0, 13.0, 17.0), seed=0, shape=SHAPE, ppm=PPM, mask=None):
    lab = skin_lab(shape, ppm, lab=base, seed=seed)
    lab, truth = plant_spots(lab, ppm, mask=PLANT if mask is None else mask, count=count,
                             diameter_mm=diameter_mm, delta_l=delta_l, red_count=red_count,
                             red_delta_a=red_delta_a, seed=seed)
    return lab_to_linear(lab), truth


def measure(lin, masks=HALVES, skin=SKIN, ppm=PPM, **kw):
    return measure_pigmentation(lin, masks, ppm, skin_mask=skin, **kw)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spot_count_and_area_match_planted_truth(seed):
    lin, truth = make(seed=seed)
    res = measure(lin)
    face = res.face
    assert abs(face.spot_count - truth.spot_count) <= 0.10 * truth.spot_count
    detected_px = int(res.spot_mask.sum())
    assert detected_px == pytest.approx(truth.spot_area_px, rel=0.15)
    assert face.spot_area_pct == pytest.approx(100.0 * truth.spot_area_px / (face.area_mm2 * PPM ** 2), rel=0.15)
    # every planted spot is found where it was planted, at about its size
    for s in truth.spots:
        near = [d for d in res.spots if math.dist(d.centre_xy, s.centre_xy) < 0.1 * s.diameter_mm * PPM + 3]
        assert len(near) == 1, s
        assert near[0].diameter_mm == pytest.approx(s.diameter_mm, rel=0.15)
    assert face.spot_contrast_de == pytest.approx(truth.mean_spot_delta_e, rel=0.15)
    assert face.red_area_pct < 0.2


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_clean_skin_has_no_spots(seed):
    lin, _ = make(count=0, seed=seed)
    res = measure(lin)
    assert res.face.spot_count <= 1
    assert res.face.red_area_pct < 0.5
    assert res.face.tone_unevenness < 1.5


def test_red_areas_match_planted_truth():
    lin, truth = make(count=10, red_count=3, seed=4)
    res = measure(lin)
    assert int(res.red_mask.sum()) == pytest.approx(truth.red_area_px, rel=0.15)
    assert not (res.red_mask & res.spot_mask).any()
    # red patches are not brown spots, and brown spots are not red areas
    assert abs(res.face.spot_count - truth.spot_count) <= 1
    assert (res.red_mask & truth.spot_mask).sum() < 0.02 * truth.spot_area_px


# --------------------------------------------------------------------------- monotonicity


def test_more_spots_more_count_and_area():
    faces = [measure(make(count=n, seed=5)[0]).face for n in (0, 5, 10, 20)]
    counts = [f.spot_count for f in faces]
    areas = [f.spot_area_pct for f in faces]
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert areas == sorted(areas) and len(set(areas)) == 4
    tone = [f.tone_unevenness for f in faces]
    assert tone == sorted(tone)


def test_darker_spots_higher_contrast():
    faces = [measure(make(count=12, delta_l=dl, seed=6)[0]).face for dl in (4.0, 7.0, 10.0)]
    contrast = [f.spot_contrast_de for f in faces]
    assert contrast[0] < contrast[1] < contrast[2]
    assert all(abs(f.spot_count - 12) <= 1 for f in faces)
    mel = [f.melanin_index for f in faces]
    assert mel[0] < mel[1] < mel[2]


def test_more_red_more_red_area_and_erythema():
    faces = [measure(make(count=0, red_count=n, red_delta_a=da, seed=7)[0]).face
             for n, da in ((0, 6.0), (2, 6.0), (4, 6.0), (4, 10.0))]
    red = [f.red_area_pct for f in faces]
    ery = [f.erythema_index for f in faces]
    assert red[0] < 0.2 and red[0] < red[1] < red[2] <= red[3]
    assert ery[0] < ery[1] < ery[2] < ery[3]
    assert all(f.spot_count <= 1 for f in faces)


def test_darker_skin_lower_ita_higher_melanin():
    bases = [(72.0, 10.0, 15.0), (62.0, 13.0, 17.0), (50.0, 14.0, 20.0), (38.0, 14.0, 20.0)]
    faces = [measure(make(count=0, base=b, seed=8)[0]).face for b in bases]
    ita = [f.ita_deg for f in faces]
    mel = [f.melanin_index for f in faces]
    assert ita == sorted(ita, reverse=True) and len(set(ita)) == 4
    assert mel == sorted(mel) and len(set(mel)) == 4
    for f, (l, _, b) in zip(faces, bases):
        assert f.ita_deg == pytest.approx(ita_degrees(l, b), abs=1.0)
    assert [f.ita_category for f in faces] == ["very_light", "intermediate", "brown", "dark"]


def test_ita_and_categories_for_known_lab():
    assert ita_degrees(60.0, 17.0) == pytest.approx(math.degrees(math.atan(10.0 / 17.0)))
    assert ita_degrees(50.0, 0.0) == 0.0
    assert ita_degrees(70.0, 0.0) == pytest.approx(90.0)
    cases = {56.0: "very_light", 55.0: "light", 41.5: "light", 41.0: "intermediate", 28.5: "intermediate",
             28.0: "tan", 10.5: "tan", 10.0: "brown", -29.0: "brown", -30.0: "dark", -60.0: "dark"}
    for ita, name in cases.items():
        assert ita_category(ita) == name, ita
    assert ita_category(float("nan")) == "unknown"
    # through the whole measurement, uniform patches of known colour
    for lab, name in (((75.0, 5.0, 12.0), "very_light"), ((58.0, 12.0, 18.0), "tan"), ((30.0, 10.0, 15.0), "dark")):
        patch = lab_to_linear(np.full((200, 200, 3), lab, np.float32))
        face = measure_pigmentation(patch, {}, PPM, skin_mask=np.ones((200, 200), bool)).face
        assert face.ita_deg == pytest.approx(ita_degrees(lab[0], lab[2]), abs=0.3)
        assert face.ita_category == name


# --------------------------------------------------------------------------- robustness


def _ramp(lin, amount=0.2):
    x = np.linspace(-1.0, 1.0, lin.shape[1], dtype=np.float32)
    return lin * (1.0 + amount * x)[None, :, None]


def test_illumination_ramp_creates_no_spots():
    clean, _ = make(count=0, seed=9)
    base = measure(clean).face
    for lin in (_ramp(clean), srgb_to_linear(linear_to_srgb8(_ramp(clean)))):
        face = measure(lin).face
        assert face.spot_count <= 1
        assert face.tone_unevenness == pytest.approx(base.tone_unevenness, rel=0.15)
    # after the colour normalisation as well (the gradient fit takes the ramp out)
    norm, corr = normalize_colour(linear_to_srgb8(_ramp(clean)), SKIN)
    assert corr.gradient_ratio > 1.3
    face = measure(norm).face
    assert face.spot_count <= 1 and face.tone_unevenness == pytest.approx(base.tone_unevenness, rel=0.15)
    spotted, truth = make(seed=9)
    assert measure(_ramp(spotted)).face.spot_count == measure(spotted).face.spot_count


def _jpeg(img8, quality=75):
    ok, buf = cv2.imencode(".jpg", img8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


@pytest.mark.parametrize("seed", [0, 3])
def test_count_robust_to_jpeg_blur_exposure(seed):
    lin, truth = make(seed=seed)
    img8 = linear_to_srgb8(lin)
    ref = measure(srgb_to_linear(img8)).face.spot_count
    variants = {
        "jpeg75": _jpeg(img8),
        "blur0.5": cv2.GaussianBlur(img8, (0, 0), 0.5),
        "exposure-15": linear_to_srgb8(lin * 0.85),
        "exposure+15": linear_to_srgb8(lin * 1.15),
    }
    for name, v in variants.items():
        count = measure(srgb_to_linear(v)).face.spot_count
        assert abs(count - ref) <= 0.10 * ref, (name, count, ref)
        assert abs(count - truth.spot_count) <= 0.10 * truth.spot_count, (name, count)


def test_spot_area_is_a_share_of_the_skin_where_spots_are_looked_for():
    """Pixels marked unreliable (a clipped highlight) hide the spots under them: spot and red
    area are shares of the rest of the skin, so a highlight growing with the exposure does not
    read as clearer skin. With a band over a third of the face unreliable, the spot area is the
    planted spots' share of the skin outside the band (within 15 %); counted as clear skin, the
    band halved it."""
    lin, truth = make(seed=4, count=24, red_count=6)
    band = np.zeros(SHAPE, bool)
    band[:, 170:340] = True
    hidden = measure(lin, unreliable=band).face
    # the planted share outside the band, over the measured area (the skin inside the 1 mm border)
    outside = np.zeros(SHAPE, bool)
    outside[10:-10, 10:-10] = True
    outside &= ~band
    planted_pct = 100.0 * np.count_nonzero(truth.spot_mask & outside) / np.count_nonzero(outside)
    assert planted_pct > 1.0
    assert hidden.spot_area_pct == pytest.approx(planted_pct, rel=0.15)
    assert hidden.spot_count < truth.spot_count          # the spots under the band are not seen


def test_scale_is_physical():
    """The same physical scene at 6 px/mm gives the same spots as at 10 px/mm."""
    ppm = 6.0
    shape = (360, 300)
    plant = np.zeros(shape, bool)
    plant[12:-12, 12:-12] = True
    lin, truth = make(seed=2, shape=shape, ppm=ppm, mask=plant)
    res = measure_pigmentation(lin, {}, ppm, skin_mask=np.ones(shape, bool))
    assert abs(res.face.spot_count - truth.spot_count) <= 2
    assert int(res.spot_mask.sum()) == pytest.approx(truth.spot_area_px, rel=0.15)
    assert res.face.area_mm2 == pytest.approx((60 - 2) * (50 - 2), rel=0.03)


# --------------------------------------------------------------------------- regions and borders


def test_spot_split_by_region_border_counted_once_per_region():
    strip = np.zeros(SHAPE, bool)
    strip[30:-30, SHAPE[1] // 2 - 27: SHAPE[1] // 2 + 27] = True  # 5.4 mm wide around the border
    lin, truth = make(count=4, diameter_mm=4.0, delta_l=8.0, seed=3, mask=strip)
    res = measure(lin)
    assert res.face.spot_count == 4
    assert res.regions["left"].spot_count == 4 and res.regions["right"].spot_count == 4
    assert all(s.regions == ("left", "right") for s in res.spots)
    # areas add up: each half holds its part of each spot
    split = sum(r.spot_area_pct * r.area_mm2 for r in res.regions.values())
    assert split == pytest.approx(res.face.spot_area_pct * res.face.area_mm2, rel=1e-6)


def test_mask_border_does_not_create_spots():
    """Dark hair or brows a little inside the skin mask's edge must not read as spots."""
    lab = skin_lab(SHAPE, PPM, seed=14)
    hair = np.zeros(SHAPE, bool)
    hair[:150] = True
    hair[:, :100] = True
    lab[hair] = (22.0, 4.0, 6.0)
    skin = ~hair
    skin |= cv2.dilate(hair.view(np.uint8), np.ones((9, 9), np.uint8)) > 0  # mask 0.4 mm into the hair
    skin[:140] = False
    skin[:, :90] = False
    lin = lab_to_linear(lab)
    regions = {"forehead": skin.copy()}
    res = measure(lin, masks=regions, skin=skin)
    assert res.face.spot_count <= 1 and res.regions["forehead"].spot_count <= 1
    assert res.face.tone_unevenness < 1.5
    # with no border taken off, the same edge reads as wild unevenness (a strip along the edge
    # fills its moment ellipse poorly, so the spot shape test already keeps it from the count)
    bare = measure(lin, masks=regions, skin=skin, params=PigmentationParams(border_mm=0.0))
    assert bare.face.tone_unevenness > 3 * res.face.tone_unevenness
    loose = measure(lin, masks=regions, skin=skin, params=PigmentationParams(border_mm=0.0, spot_min_fill=0.0))
    assert loose.face.spot_count >= 1


def test_dark_lines_are_not_spots():
    """Wrinkle valleys and fold shadows are dark lines: elongated, so not brown spots."""
    lines = np.zeros(SHAPE, np.float32)
    for i in range(5):
        y = 60 + 110 * i
        cv2.line(lines, (60, y), (440, y + 30), 1.0, thickness=8)  # 38 mm long, 0.8 mm wide
    lines = cv2.GaussianBlur(lines, (0, 0), 2.0)
    clear = PLANT & (cv2.dilate((lines > 0.01).view(np.uint8), np.ones((31, 31), np.uint8)) == 0)
    lab, truth = plant_spots(skin_lab(SHAPE, PPM, seed=15), PPM, mask=clear, count=6, seed=15)
    lab[..., 0] -= 8.0 * lines
    res = measure(lab_to_linear(lab))
    assert res.face.spot_count == truth.spot_count
    assert (res.spot_mask & (lines > 0.5)).sum() < 0.05 * (lines > 0.5).sum()


def test_result_structure_and_validation():
    lin, truth = make(count=5, red_count=1, seed=1)
    tiny = np.zeros(SHAPE, bool)
    tiny[100:120, 100:120] = True  # 4 mm^2 before erosion: too small to measure
    res = measure(lin, masks={**HALVES, "tiny": tiny})
    d = res.face.as_dict()
    assert set(METRIC_KEYS) <= set(d) and set(d) - set(METRIC_KEYS) == {"area_mm2"}
    assert isinstance(d["spot_count"], int) and isinstance(d["ita_category"], str)
    assert set(res.regions) == {"left", "right", "tiny"}
    assert math.isnan(res.regions["tiny"].ita_deg) and res.regions["tiny"].ita_category == "unknown"
    for m in (res.spot_mask, res.red_mask, res.measured_mask):
        assert m.dtype == np.bool_ and m.shape == SHAPE
    for m in (res.melanin_map, res.redness_map):
        assert m.dtype == np.float32 and m.shape == SHAPE
        assert np.all(m[~res.measured_mask] == 0.0)
    # the melanin map is higher on spots, the redness map on red areas
    inner = res.measured_mask
    assert res.melanin_map[res.spot_mask].mean() > res.melanin_map[inner & ~res.spot_mask & ~res.red_mask].mean() + 4
    assert res.redness_map[res.red_mask].mean() > res.redness_map[inner & ~res.spot_mask & ~res.red_mask].mean() + 4
    assert res.as_dict()["regions"]["left"]["spot_count"] == res.regions["left"].spot_count
    with pytest.raises(InvalidInput):
        measure(lin.astype(np.float64))
    with pytest.raises(InvalidInput):
        measure(lin, masks={"x": np.ones((10, 10), bool)})
    with pytest.raises(InvalidInput):
        measure(lin, ppm=0.0)
    with pytest.raises(InvalidInput):
        measure(lin, skin=np.zeros(SHAPE, bool))
