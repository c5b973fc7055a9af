"""Before/after comparison (pure): landmark similarity alignment, image refinement, exposure
matching, CIEDE2000 difference per region, rendering. On a synthetic face-like image moved by a
known similarity transform."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipelines.compare import align_landmarks, apply_affine, compare_photos, heat_map, render_comparison
from pipelines.errors import InvalidInput
from pipelines.metrics.colour import linear_to_srgb8, srgb_to_linear

H, W = 900, 760
LANDMARKS = {"left_eye": (480.0, 350.0), "right_eye": (280.0, 350.0), "nose": (380.0, 470.0),
             "mouth_left": (450.0, 585.0), "mouth_right": (310.0, 585.0)}        # IPD 200 px: 3.2 px/mm
REGIONS = {
    "forehead": [(250, 200), (510, 200), (510, 290), (250, 290)],
    "cheek_left": [(430, 420), (560, 420), (560, 530), (440, 530)],
    "cheek_right": [(200, 420), (330, 420), (320, 530), (200, 530)],
    "chin": [(320, 640), (440, 640), (430, 720), (330, 720)],
}


def _noise(rng, sigma: float) -> np.ndarray:
    n = cv2.GaussianBlur(rng.standard_normal((H, W)).astype(np.float32), (0, 0), sigma)
    return n / (n.std() + 1e-9)


def synthetic_face(seed: int = 0) -> np.ndarray:
    """Skin-coloured texture at several scales with dark eyes, brows, nostrils and mouth."""
    rng = np.random.default_rng(seed)
    base = np.array([205.0, 160.0, 138.0], np.float32)
    tex = 4.0 * _noise(rng, 1.2) + 5.0 * _noise(rng, 5.0) + 6.0 * _noise(rng, 25.0)
    img = base[None, None, :] + tex[..., None] * np.array([1.0, 0.9, 0.85], np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    dark = (70, 45, 40)
    for (x, y) in (LANDMARKS["left_eye"], LANDMARKS["right_eye"]):
        cv2.ellipse(img, (int(x), int(y)), (38, 16), 0, 0, 360, (235, 235, 230), -1, cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), 12, dark, -1, cv2.LINE_AA)
        cv2.ellipse(img, (int(x), int(y) - 45), (50, 8), 0, 0, 360, (110, 80, 60), -1, cv2.LINE_AA)
    nx, ny = LANDMARKS["nose"]
    for dx in (-18, 18):
        cv2.ellipse(img, (int(nx + dx), int(ny + 10)), (9, 5), 0, 0, 360, (120, 70, 60), -1, cv2.LINE_AA)
    cv2.ellipse(img, (380, 585), (72, 14), 0, 0, 360, (170, 80, 80), -1, cv2.LINE_AA)
    return img


def similarity(angle_deg: float, scale: float, shift=(0.0, 0.0)) -> np.ndarray:
    m = cv2.getRotationMatrix2D((W / 2.0, H / 2.0), angle_deg, scale)
    m[:, 2] += shift
    return m


def move(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def moved_landmarks(m: np.ndarray, landmarks=LANDMARKS) -> dict:
    return {k: tuple(apply_affine(m, [v])[0]) for k, v in landmarks.items()}


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return synthetic_face()


M = similarity(4.0, 0.92, (25.0, -15.0))


def test_similarity_from_landmarks_inverts_the_move():
    a = align_landmarks(LANDMARKS, moved_landmarks(M))
    expected = cv2.invertAffineTransform(M)
    assert np.allclose(a.matrix, expected, atol=1e-4)
    assert a.scale == pytest.approx(1 / 0.92, rel=1e-5)
    assert a.rotation_deg == pytest.approx(4.0, abs=1e-3)     # the after photo was turned by -4 as displayed
    assert a.residual_px < 1e-3 and a.outliers == ()


def test_one_wrong_landmark_is_an_outlier():
    after = moved_landmarks(M)
    after["mouth_left"] = (after["mouth_left"][0] + 60.0, after["mouth_left"][1] + 20.0)   # 0.3 IPD off
    a = align_landmarks(LANDMARKS, after)
    assert a.outliers == ("mouth_left",)
    good = {k: v for k, v in moved_landmarks(M).items()}
    err = np.hypot(*(a.map(list(good.values())) - np.array(list(LANDMARKS.values()))).T)
    assert err.max() < 0.5


def test_alignment_refuses_too_few_landmarks():
    with pytest.raises(InvalidInput):
        align_landmarks({"left_eye": (0, 0), "right_eye": (10, 0)}, {"left_eye": (0, 0), "right_eye": (10, 0)})
    with pytest.raises(InvalidInput):
        align_landmarks({**LANDMARKS, "nose": (float("nan"), 1.0)}, LANDMARKS)


def test_same_skin_moved_and_brighter_shows_no_difference(face):
    after = linear_to_srgb8(srgb_to_linear(move(face, M)) * 1.15)
    cmp = compare_photos(face, after, LANDMARKS, moved_landmarks(M), regions=REGIONS)
    assert set(cmp.regions) == set(REGIONS)
    for r in cmp.regions.values():
        assert r.mean_delta_e < 1.0, r
        assert r.changed_pct < 2.0, r
    assert np.allclose(cmp.exposure_gains, 1 / 1.15, rtol=0.03)
    assert cmp.px_per_mm == pytest.approx(200 / 63.0, rel=1e-6)     # capped at the photo's own resolution
    assert cmp.before.shape == cmp.after.shape and cmp.valid.mean() > 0.9


def test_a_new_dark_spot_shows_in_its_region_only(face):
    after = move(face, M)
    cx, cy = apply_affine(M, [(500.0, 475.0)])[0]                   # centre of cheek_left, after coords
    yy, xx = np.mgrid[:H, :W]
    spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 10.0 ** 2))[..., None]
    after = linear_to_srgb8(srgb_to_linear(after) * (1 - 0.45 * spot))
    cmp = compare_photos(face, after, LANDMARKS, moved_landmarks(M), regions=REGIONS)
    cheek = cmp.regions["cheek_left"]
    assert cheek.mean_delta_l < -0.3                  # darker on average (a ~4 % area spot)
    assert cheek.p95_delta_e > 3.0 and cheek.changed_pct > 3.0
    for name in ("forehead", "cheek_right", "chin"):
        assert cmp.regions[name].mean_delta_e < 1.0 and cmp.regions[name].changed_pct < 1.0
    # the map's peak sits on the spot (within 1.5 mm)
    y, x = np.unravel_index(np.argmax(cmp.delta_e), cmp.delta_e.shape)
    spot_view = apply_affine(cmp.to_view, [(500.0, 475.0)])[0]
    assert math.hypot(x - spot_view[0], y - spot_view[1]) < 1.5 * cmp.px_per_mm


def test_imprecise_landmarks_are_corrected_on_the_image(face):
    after = move(face, M)
    rng = np.random.default_rng(3)
    noisy = {k: (x + rng.uniform(-6, 6), y + rng.uniform(-6, 6)) for k, (x, y) in moved_landmarks(M).items()}
    rough = compare_photos(face, after, LANDMARKS, noisy, regions=REGIONS, refine=False)
    fine = compare_photos(face, after, LANDMARKS, noisy, regions=REGIONS)
    assert fine.refined
    assert fine.refinement["corr_refined"] > max(0.9, fine.refinement["corr_landmarks"])
    worst_rough = max(r.mean_delta_e for r in rough.regions.values())
    worst_fine = max(r.mean_delta_e for r in fine.regions.values())
    assert worst_fine < 1.0 < worst_rough


def test_reduced_decodes_use_full_resolution_coordinates(face):
    after = move(face, M)
    half = cv2.resize(face, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    cmp = compare_photos(half, after, LANDMARKS, moved_landmarks(M), regions=REGIONS, before_scale=0.5)
    assert cmp.px_per_mm == pytest.approx(100 / 63.0, rel=1e-6)
    assert max(r.mean_delta_e for r in cmp.regions.values()) < 1.5


def test_rendering(face):
    after = move(face, M)
    cmp = compare_photos(face, after, LANDMARKS, moved_landmarks(M), regions=REGIONS)
    img = render_comparison(cmp, labels=("2025-01-06", "2025-03-03"), panel_height=300)
    assert img.dtype == np.uint8 and img.shape[0] == 300 + 28 and img.shape[2] == 3
    panel_w = round(cmp.before.shape[1] * 300 / cmp.before.shape[0])
    assert img.shape[1] == 3 * panel_w + 3 * 6 + 60
    crop = render_comparison(cmp, region="cheek_left", panel_height=200)
    assert crop.shape[0] == 228
    assert heat_map(cmp).shape == cmp.before.shape
    with pytest.raises(InvalidInput):
        render_comparison(cmp, region="nose_tip")


def test_inputs_are_validated(face):
    with pytest.raises(InvalidInput):
        compare_photos(face[..., 0], face, LANDMARKS, LANDMARKS)
    with pytest.raises(InvalidInput):
        compare_photos(face.astype(np.float32), face, LANDMARKS, LANDMARKS)
