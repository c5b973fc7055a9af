"""The ground-truth subject of the repeatability test: ``resurface_skin`` keeps a face's colour,
shading and features and replaces its fine texture by a known grain."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab

from pipelines.analysis import Analyzer
from pipelines.synthetic.face import Planting, face_at_resolution, plant_on_photo, resurface_skin

SAMPLE = Path(__file__).resolve().parents[1] / "sample_images" / "astronaut_render.jpg"


@pytest.fixture(scope="module")
def subject():
    analyzer = Analyzer()
    first = analyzer.analyze(SAMPLE.read_bytes())
    photo = face_at_resolution(first.decoded.rgb, first.frame, 6.0)
    analysis = analyzer.analyze(cv2.imencode(".png", photo[..., ::-1])[1].tobytes())
    return photo, analysis


def test_face_at_resolution_scales_the_face(subject):
    photo, analysis = subject
    assert analysis.frame.native_px_per_mm == pytest.approx(6.0, rel=0.05)


def test_resurfacing_removes_small_features_and_keeps_the_rest(subject):
    photo, analysis = subject
    spots = Planting(spots={"cheek_left": 6, "cheek_right": 6}, spot_diameter_mm=(2.0, 3.0),
                     spot_delta_l=(12.0, 14.0), seed=4)
    spotted, truth = plant_on_photo(photo, analysis.frame, analysis.regions, spots)
    assert sum(truth.spot_count.values()) == 12
    out = resurface_skin(spotted, analysis.frame, analysis.skin, analysis.regions, grain=0.6, seed=1)
    lab_in, lab_out = rgb2lab(spotted)[..., 0], rgb2lab(out)[..., 0]
    planted_dark = (rgb2lab(photo)[..., 0] - lab_in) > 6.0          # the spots' cores
    assert np.count_nonzero(planted_dark) > 500
    # the spots (2-3 mm) are smoothed away to under a quarter of their contrast
    ring = cv2.dilate(planted_dark.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & ~cv2.dilate(
        planted_dark.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    before = lab_in[ring].mean() - lab_in[planted_dark].mean()
    after = lab_out[ring].mean() - lab_out[planted_dark].mean()
    assert before > 8.0 and abs(after) < 0.25 * before
    # the cheek keeps its colour: its mean L*, a*, b* (spots left out) within 1.5
    cheek = cv2.warpAffine(analysis.regions["cheek_left"].mask.astype(np.uint8), analysis.frame.to_source,
                           photo.shape[1::-1], flags=cv2.INTER_NEAREST).astype(bool) & ~cv2.dilate(
        planted_dark.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert abs(rgb2lab(out)[cheek].mean(axis=0) - rgb2lab(photo)[cheek].mean(axis=0)).max() < 1.5
    # the fine texture is the new grain: L* minus its 1 mm smoothing has about its SD
    fine = lab_out - cv2.GaussianBlur(lab_out.astype(np.float32), (0, 0), 6.0)
    assert 0.3 < float(fine[cheek].std()) < 0.9
    # off the face (the backdrop's corner) nothing changes
    assert np.array_equal(out[:40, :40], spotted[:40, :40])
