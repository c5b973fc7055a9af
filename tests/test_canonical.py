"""Canonical frame geometry and region rasterisation on synthetic landmarks."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.canonical import FrameSpec, build_frame, source_to_canonical_matrix
from pipelines.regions import REGION_NAMES, build_regions

LANDMARKS = {  # a frontal face, IPD 200 px, rolled by atan(20/200) ~ 5.7 deg
    "left_eye": (700.0, 420.0), "right_eye": (500.0, 400.0), "nose": (595.0, 540.0),
    "mouth_left": (670.0, 640.0), "mouth_right": (530.0, 625.0),
}


def test_eyes_land_level_at_the_ipd():
    spec = FrameSpec()
    m = source_to_canonical_matrix(LANDMARKS, spec)
    le = m[:, :2] @ np.array(LANDMARKS["left_eye"]) + m[:, 2]
    re = m[:, :2] @ np.array(LANDMARKS["right_eye"]) + m[:, 2]
    assert le[1] == pytest.approx(re[1], abs=1e-6)
    assert le[0] - re[0] == pytest.approx(spec.ipd_mm * spec.px_per_mm, rel=1e-9)
    assert spec.px_to_mm(np.array([(le + re) / 2]))[0] == pytest.approx([0.0, 0.0], abs=1e-9)


def test_frame_maps_back_to_the_photo():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (1000, 1200, 3), np.uint8)
    frame = build_frame(img, LANDMARKS)
    assert frame.native_px_per_mm == pytest.approx(np.hypot(200, 20) / 63.0)
    assert frame.roll_deg == pytest.approx(np.degrees(np.arctan2(20, 200)))
    for name, (x, y) in frame.landmarks.items():
        assert frame.map_to_source(np.array([[x, y]]))[0] == pytest.approx(LANDMARKS[name], abs=1e-6)
    # A pixel sampled in the frame equals the photo's pixel at its mapped position.
    cx, cy = 700, 900
    sx, sy = np.round(frame.map_to_source(np.array([[cx, cy]]))[0]).astype(int)
    near = img[sy - 1:sy + 2, sx - 1:sx + 2].reshape(-1, 3).astype(int)
    assert np.abs(near - frame.rgb[cy, cx].astype(int)).sum(axis=1).min() < 200


@pytest.mark.parametrize("k", [0.5, 3.0, 8.0])
def test_valid_marks_the_frame_pixels_that_sample_the_photo(k):
    """``valid`` is the photo's outline filled in the frame: a frame pixel is valid when it maps
    back inside the photo, to within a pixel at the outline. The face (rolled) sits near the
    photo's corner, so the outline crosses the frame; k scales it (IPD 100 px: the frame
    upsamples; 1600 px: the photo is pre-shrunk before the warp)."""
    img = np.zeros((500, 400, 3), np.uint8)
    mid = (np.array(LANDMARKS["left_eye"]) + LANDMARKS["right_eye"]) / 2
    landmarks = {n: tuple((np.array(p) - mid) * k + (80.0, 60.0)) for n, p in LANDMARKS.items()}
    frame = build_frame(img, landmarks)
    h, w = frame.valid.shape
    ys, xs = np.mgrid[0:h:7, 0:w:7]
    src = frame.map_to_source(np.stack([xs.ravel(), ys.ravel()], axis=1))
    step = float(np.hypot(*frame.to_source[:, 0]))   # source px per frame px

    def within(pad):
        return (src[:, 0] >= -0.5 - pad) & (src[:, 0] < 399.5 + pad) & (src[:, 1] >= -0.5 - pad) & (src[:, 1] < 499.5 + pad)
    inside = within(0.0)
    got = frame.valid[ys.ravel(), xs.ravel()]
    assert 0 < inside.sum() < inside.size            # the outline crosses the frame
    assert np.all(got[within(-1.5 * step)]) and not np.any(got[~within(1.5 * step)])
    assert np.mean(got == inside) > 0.99


def test_reduced_decode_gives_the_same_frame_geometry():
    img = np.zeros((1000, 1200, 3), np.uint8)
    img[380:440, 480:520] = 255   # a bright patch on the right-hand (image-left) eye
    full = build_frame(img, LANDMARKS)
    half = build_frame(img[::2, ::2], LANDMARKS, image_scale=0.5)
    np.testing.assert_allclose(half.to_source, full.to_source)
    assert np.abs(full.rgb.astype(int) - half.rgb.astype(int)).mean() < 3


def test_regions_are_disjoint_and_sized():
    img = np.full((1000, 1200, 3), 180, np.uint8)
    frame = build_frame(img, LANDMARKS)
    skin = np.ones(frame.rgb.shape[:2], bool)
    regions = build_regions(frame, skin)
    assert set(regions) == set(REGION_NAMES)
    total = np.zeros(skin.shape, int)
    for r in regions.values():
        total += r.mask
    assert total.max() == 1
    assert regions["forehead"].area_cm2 == pytest.approx(regions["forehead"].mask.sum() / 100.0 ** 2 * 1.0, rel=1e-9)
    for side in ("left", "right"):
        assert regions[f"cheek_{side}"].area_cm2 > 5
    # Subject's left is the image's right.
    lx = np.nonzero(regions["cheek_left"].mask)[1].mean()
    rx = np.nonzero(regions["cheek_right"].mask)[1].mean()
    assert lx > rx
    # Half the skin hidden: regions lose area and report their visible fraction.
    skin[:, : skin.shape[1] // 2] = False
    hidden = build_regions(frame, skin)
    assert hidden["cheek_right"].skin_fraction < 0.05 and not hidden["cheek_right"].measurable
    assert hidden["cheek_left"].skin_fraction > 0.95


def test_fit_zone_grows_the_regions_by_the_margin():
    """The lighting-fit zone (grown on a 4x coarser grid) holds everything within the margin of
    a region, to within half a millimetre, and nothing further."""
    import cv2

    from pipelines.measure import FIT_MARGIN_MM, fit_zone

    frame = build_frame(np.full((1000, 1200, 3), 180, np.uint8), LANDMARKS)
    regions = build_regions(frame, np.ones(frame.rgb.shape[:2], bool))
    k = frame.px_per_mm
    polygons = np.zeros(frame.rgb.shape[:2], np.uint8)
    for r in regions.values():
        cv2.fillPoly(polygons, [np.round(r.polygon).astype(np.int32)], 1)
    distance_mm = cv2.distanceTransform((polygons == 0).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) / k
    zone = fit_zone(regions, polygons.shape, k)
    assert zone.shape == polygons.shape and zone.dtype == bool
    assert np.all(zone[distance_mm <= FIT_MARGIN_MM - 0.5])
    assert not np.any(zone[distance_mm > FIT_MARGIN_MM + 0.5])


def test_a_region_outside_the_frame_is_empty_and_not_measurable():
    """Landmarks far off (the mouth 240 mm under the eyes, say) put the chin polygon outside
    the frame: it is rasterised as empty, not an error, and the quality gate sees it as
    not measurable."""
    low_mouth = {**LANDMARKS, "mouth_left": (670.0, 1900.0), "mouth_right": (530.0, 1880.0)}
    frame = build_frame(np.full((2400, 1200, 3), 180, np.uint8), low_mouth)
    regions = build_regions(frame, np.ones(frame.rgb.shape[:2], bool))
    assert regions["chin"].area_cm2 == 0.0 and not regions["chin"].measurable
    assert not regions["chin"].mask.any()
    assert regions["forehead"].measurable
