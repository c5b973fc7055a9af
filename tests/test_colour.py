"""Colour conversions and colour normalisation, on synthetic scenes with known casts."""
import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab

from pipelines.errors import InvalidInput
from pipelines.metrics.colour import (
    REFERENCE_GREY_WORLD,
    REFERENCE_NONE,
    REFERENCE_SCLERA,
    delta_e_2000,
    lab_to_linear,
    linear_to_lab,
    linear_to_srgb,
    linear_to_srgb8,
    luminance,
    normalize_colour,
    srgb_to_linear,
)
from pipelines.metrics.pigmentation import measure_pigmentation
from pipelines.synthetic.skin import skin_lab

PPM = 10.0
SHAPE = (420, 360)
SKIN_LAB = (62.0, 13.0, 17.0)


def scene(background_lab=(70.0, 0.0, 0.0), seed=0):
    """Linear RGB of a face-like scene: a skin ellipse, two neutral eye-white patches inside it,
    a uniform background. Returns (linear, skin mask, sclera mask)."""
    h, w = SHAPE
    lab = skin_lab(SHAPE, PPM, lab=SKIN_LAB, seed=seed)
    face = np.zeros(SHAPE, np.uint8)
    cv2.ellipse(face, (w // 2, h // 2), (140, 180), 0, 0, 360, 1, -1)
    eyes = np.zeros(SHAPE, np.uint8)
    for x in (w // 2 - 60, w // 2 + 60):
        cv2.ellipse(eyes, (x, h // 2 - 50), (40, 14), 0, 0, 360, 1, -1)
    face, eyes = face > 0, eyes > 0
    skin = face & ~eyes
    lab[~face] = background_lab
    lab[eyes] = (82.0, 0.0, 0.0)
    lab[eyes, 0] += np.random.default_rng(seed).normal(0, 1.0, eyes.sum())
    return lab_to_linear(lab), skin, eyes


def perturb(lin, gains=(1.0, 1.0, 1.0), exposure=1.0, ramp=0.0):
    out = lin * np.asarray(gains, np.float32) * np.float32(exposure)
    if ramp:
        x = np.linspace(-1.0, 1.0, lin.shape[1], dtype=np.float32)
        out = out * (1.0 + ramp * x)[None, :, None]
    return linear_to_srgb8(out)


def skin_mean(lin, skin):
    return lin[skin].mean(axis=0)


# --------------------------------------------------------------------------- conversions


def test_srgb_transfer_roundtrip():
    x8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x8 = np.dstack([x8, x8[::-1], x8.T])
    lut = srgb_to_linear(x8)
    exact = srgb_to_linear(x8.astype(np.float32) / 255.0)
    assert lut.dtype == np.float32 and np.allclose(lut, exact, atol=1e-6)
    assert lut[0, 0, 0] == 0.0 and lut[15, 15, 0] == pytest.approx(1.0)
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.2140, abs=1e-4)
    assert np.array_equal(linear_to_srgb8(lut), x8)
    assert np.allclose(linear_to_srgb(exact), x8 / 255.0, atol=1e-5)


def test_linear_to_srgb8_of_an_image_rounds_the_exact_curve():
    """The image path (OpenCV's rounding to 16 bits, then the table) against the exact curve:
    within one level everywhere, out-of-gamut values clipped, and exact but for rare ties."""
    rng = np.random.default_rng(3)
    lin = rng.uniform(-0.1, 1.3, (300, 200, 3)).astype(np.float32)
    lin[:5] = rng.uniform(0.0, 0.004, (5, 200, 3))   # the steep, linear part of the curve
    got = linear_to_srgb8(lin)
    exact = np.clip(np.rint(linear_to_srgb(lin) * 255.0), 0, 255)
    assert got.dtype == np.uint8 and got.shape == lin.shape
    assert np.abs(got.astype(int) - exact).max() <= 1
    assert np.mean(got == exact) > 0.999
    other = linear_to_srgb8(lin.reshape(-1, 3)).reshape(lin.shape)   # the numpy path, for (N, 3)
    assert np.abs(other.astype(int) - got).max() <= 1 and np.mean(other == got) > 0.999


def test_linear_to_lab_matches_skimage_both_paths():
    rng = np.random.default_rng(0)
    lin = rng.uniform(0.0, 1.0, (64, 64, 3)).astype(np.float32)
    ref = rgb2lab(linear_to_srgb(lin).astype(np.float64))
    assert np.abs(linear_to_lab(lin) - ref).max() < 0.02  # OpenCV path
    lin2 = lin.copy()
    lin2[0, 0] = (1.5, 1.2, 1.1)  # forces the numpy path (OpenCV clips at 1)
    lab2 = linear_to_lab(lin2)
    assert np.abs(lab2[1:] - ref[1:]).max() < 0.02
    assert lab2[0, 0, 0] > 100.0
    assert linear_to_lab(lin.reshape(-1, 3)).shape == (64 * 64, 3)


def test_lab_linear_roundtrip_and_luminance():
    lab = np.array([[62.0, 13.0, 17.0], [40.0, 20.0, 25.0], [85.0, 0.0, 0.0]], np.float32)
    assert np.allclose(linear_to_lab(lab_to_linear(lab)), lab, atol=0.02)
    grey = lab_to_linear(np.array([[50.0, 0.0, 0.0]], np.float32))
    assert luminance(grey)[0] == pytest.approx(0.1842, abs=2e-3)  # L* 50 is Y 0.184


def test_delta_e_2000_reference_pairs():
    # Sharma, Wu & Dalal (2005) test data, pairs 1 and 7
    a = np.array([[50.0, 2.6772, -79.7751], [50.0, 0.0, 0.0]])
    b = np.array([[50.0, 0.0, -82.7485], [50.0, -1.0, 2.0]])
    assert np.allclose(delta_e_2000(a, b), [2.0425, 2.3669], atol=1e-4)
    assert delta_e_2000([60.0, 10.0, 10.0], [60.0, 10.0, 10.0]) == 0.0


# --------------------------------------------------------------------------- normalisation


def test_sclera_undoes_a_blue_cast_within_3_percent():
    lin, skin, eyes = scene()
    ref_out, ref_corr = normalize_colour(perturb(lin), skin, reference_mask=eyes)
    out, corr = normalize_colour(perturb(lin, gains=(1.0, 1.0, 1.12)), skin, reference_mask=eyes)
    assert corr.reference == REFERENCE_SCLERA and not corr.clipped
    assert corr.reference_pixels > 100
    # the blue gain relative to green undoes the +12 %
    assert (corr.gains[2] / corr.gains[1]) * 1.12 == pytest.approx(1.0, abs=0.03)
    assert (corr.gains[0] / corr.gains[1]) == pytest.approx(1.0, abs=0.03)
    got, want = skin_mean(out, skin), skin_mean(ref_out, skin)
    assert np.all(np.abs(got / want - 1.0) < 0.03)
    assert out.dtype == np.float32 and out.shape == lin.shape


def test_ita_stable_under_exposure_and_white_balance():
    lin, skin, eyes = scene()
    regions = {"all": skin}

    def ita(img8):
        out, _ = normalize_colour(img8, skin, reference_mask=eyes)
        return measure_pigmentation(out, regions, PPM, skin_mask=skin).face.ita_deg

    base = ita(perturb(lin))
    for kwargs in ({"exposure": 0.85}, {"exposure": 1.15}, {"gains": (0.92, 1.0, 1.10)},
                   {"gains": (1.08, 1.0, 0.9), "exposure": 1.15}):
        assert abs(ita(perturb(lin, **kwargs)) - base) < 2.0, kwargs
    # without a reference the exposure is not normalised: ITA moves (this is why the sclera matters)
    out, _ = normalize_colour(perturb(lin, exposure=1.15), skin)
    moved = measure_pigmentation(out, regions, PPM, skin_mask=skin).face.ita_deg
    out0, _ = normalize_colour(perturb(lin), skin)
    assert abs(moved - measure_pigmentation(out0, regions, PPM, skin_mask=skin).face.ita_deg) > 3.0


def test_grey_world_over_non_skin_without_sclera():
    lin, skin, _ = scene(background_lab=(65.0, 0.0, 0.0))
    ref_out, ref_corr = normalize_colour(perturb(lin), skin)
    out, corr = normalize_colour(perturb(lin, gains=(1.0, 1.0, 1.12)), skin)
    assert corr.reference == REFERENCE_GREY_WORLD and ref_corr.reference == REFERENCE_GREY_WORLD
    assert corr.exposure_gain == 1.0
    got, want = skin_mean(out, skin), skin_mean(ref_out, skin)
    assert np.all(np.abs(got / want - 1.0) < 0.03)


def test_coloured_background_does_not_wreck_skin():
    # a saturated green wall is never taken for grey: only the eye whites are near-neutral
    lin, skin, eyes = scene(background_lab=(60.0, -50.0, 40.0))
    out, corr = normalize_colour(perturb(lin), skin)
    assert corr.reference == REFERENCE_GREY_WORLD
    assert corr.reference_pixels < 2 * eyes.sum()
    de = delta_e_2000(linear_to_lab(skin_mean(out, skin)[None]), linear_to_lab(skin_mean(lin, skin)[None]))
    assert de[0] < 1.0
    # no eye whites either: no usable reference, so no correction at all
    lin[eyes] = lin[skin].mean(axis=0)
    out, corr = normalize_colour(perturb(lin), skin | eyes)
    assert corr.reference == REFERENCE_NONE and corr.gains == (1.0, 1.0, 1.0)
    assert np.allclose(skin_mean(out, skin), skin_mean(lin, skin), rtol=0.02)
    # half green, half grey: the grey half is the reference, the green half is ignored
    lin2, skin2, _ = scene(background_lab=(65.0, 0.0, 0.0))
    green = lab_to_linear(np.array([[60.0, -50.0, 40.0]], np.float32))[0]
    lin2[:, : SHAPE[1] // 2][~skin2[:, : SHAPE[1] // 2]] = green
    out2, corr2 = normalize_colour(perturb(lin2, gains=(1.0, 1.0, 1.12)), skin2)
    assert corr2.reference == REFERENCE_GREY_WORLD
    assert (corr2.gains[2] / corr2.gains[1]) * 1.12 == pytest.approx(1.0, abs=0.03)


def test_gain_bounds_are_applied_and_recorded():
    lin, skin, eyes = scene()
    out, corr = normalize_colour(perturb(lin, gains=(0.6, 1.0, 1.0)), skin, reference_mask=eyes)
    assert corr.clipped and corr.clipped_bounds == ("gain_r",)
    assert min(corr.gains) >= 0.7 and max(corr.gains) <= 1.4
    assert corr.raw_gains[0] > 1.4 and corr.gains[0] == 1.4
    assert corr.as_dict()["clipped_bounds"] == list(corr.clipped_bounds)


def test_illumination_ramp_is_divided_out():
    lin, skin, eyes = scene()
    out_flat, corr_flat = normalize_colour(perturb(lin), skin, reference_mask=eyes)
    out, corr = normalize_colour(perturb(lin, ramp=0.2), skin, reference_mask=eyes)
    y = luminance(out)
    w = SHAPE[1]
    left = y[:, : w // 3][skin[:, : w // 3]].mean()
    right = y[:, 2 * w // 3:][skin[:, 2 * w // 3:]].mean()
    assert right / left == pytest.approx(1.0, abs=0.03)  # was about 1.25 before
    assert corr.gradient_coefficients[1] > 0.1 and corr.gradient_ratio > 1.3
    assert corr_flat.gradient_ratio < 1.10  # the fit also takes some of the 6 mm mottling
    # the mean skin colour is kept (same as the flat image's, to 3 %)
    assert np.all(np.abs(skin_mean(out, skin) / skin_mean(out_flat, skin) - 1.0) < 0.03)


def test_saturation_is_reported_and_inputs_validated():
    lin, skin, eyes = scene()
    img = perturb(lin)
    img[skin] = 255
    _, corr = normalize_colour(img, skin, correct_gradient=False)
    assert corr.saturated_fraction == pytest.approx(1.0)
    with pytest.raises(InvalidInput):
        normalize_colour(img.astype(np.float32), skin)
    with pytest.raises(InvalidInput):
        normalize_colour(img, skin[:-1])
    with pytest.raises(InvalidInput):
        normalize_colour(img, skin.astype(np.uint8))


def test_lighting_grid_bins_by_a_whole_number_when_one_divides_both_sides():
    from pipelines.metrics.colour import _grid_shape

    assert _grid_shape(1800, 1400, 96) == (90, 70)      # the canonical frame: 20 px per cell
    assert _grid_shape(1800, 1400, 256) == (225, 175)   # 8 px per cell
    assert _grid_shape(50, 40, 96) == (50, 40)          # small enough already: no binning
    rows, cols = _grid_shape(997, 1000, 96)              # no whole number divides both (997 is prime)
    assert max(rows, cols) <= 96 and abs(rows / cols - 997 / 1000) < 0.02
