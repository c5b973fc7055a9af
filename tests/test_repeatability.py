"""Repeatability of the face scores on a real photo: capture wobble must move every score much
less than a real change does (issue 3; bench/repeatability.py measures the same on more faces).

The sample render is analysed as is, under four capture wobbles (exposure -15 % and +15 %, JPEG
quality 75, a 3 degree rotation) and with a strong real change of each family planted into it
(brown spots; deeper lines; enlarged pores; spots and lines together for ``overall``), drawn in
the canonical frame into the regions the photo lets us measure and warped onto the photo. Each
family's change is planted on its own, as bench/repeatability.py does: dense planted pores
roughen the cheeks, and a rougher skin hides faint folds from the wrinkle detector. For each face
score, every wobble's change must be smaller than the planted change divided by the factor the
pipeline reaches for that score (``FACTOR``; the target is 5). The factors are what was measured
when the test was written, rounded down, not wishes: a regression in repeatability or in
sensitivity makes the test fail.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.analysis import Analyzer
from pipelines.synthetic.face import Planting, plant_on_photo

SAMPLE = Path(__file__).resolve().parents[1] / "sample_images" / "astronaut_render.jpg"

SPOTS = Planting(spots={"cheek_left": 10, "cheek_right": 10, "forehead": 8, "chin": 4},
                 spot_diameter_mm=(3.5, 5.0), spot_delta_l=(12.0, 15.0), seed=21)
LINES = Planting(lines={"forehead": 6, "crows_feet_left": 4, "crows_feet_right": 4, "glabella": 3,
                        "under_eye_left": 3, "under_eye_right": 3},
                 line_depth=(12.0, 15.0), line_width_mm=(1.0, 1.4), seed=22)
PORES = Planting(pores_per_cm2={"cheek_left": 90.0, "cheek_right": 90.0, "forehead": 60.0, "chin": 60.0},
                 pore_diameter_mm=(0.5, 0.7), seed=23)
# the real change planted to measure each score's effect
CHANGES = {"pigmentation": SPOTS, "wrinkles": LINES, "texture": PORES,
           "overall": Planting(**{**vars(SPOTS), "lines": LINES.lines, "line_depth": LINES.line_depth,
                                  "line_width_mm": LINES.line_width_mm})}

# planted change / largest wobble change, per face score, as reached (target 5). Measured when
# written (pipeline 0.6.0, scoring 1.2): pigmentation 6.7, overall 6.1, wrinkles 1.02, texture 0.27.
# The render's forehead window is mostly its blond fringe, which the skin mask keeps (the seed
# patch over the lower forehead is fringe too, so the colour model learns it): with 15 % less
# light the fringe's strands read as lines and move the wrinkle score by 4.7 against 4.8 for the
# planted lines. The planted pores (0.5-0.7 mm) are near the 4.3 px/mm photo's resolution, so they
# move texture by 1.0 while a 3 degree turn moves it by 3.7. (As this test was first written, with
# one planting of every family at once and without the -15 % wobble, spots and lines also raised
# the texture score.) The weaker factors guard against these scores getting worse.
FACTOR = {"pigmentation": 6.0, "overall": 6.0, "wrinkles": 1.0, "texture": 0.25}


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


def _jpeg(rgb: np.ndarray, q: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q)
    return buf.getvalue()


def _exposure(rgb: np.ndarray, gain: float) -> np.ndarray:
    lin = (rgb.astype(np.float32) / 255.0) ** 2.2 * np.float32(gain)
    return np.clip(np.rint(lin ** (1 / 2.2) * 255.0), 0, 255).astype(np.uint8)


def _rotate(rgb: np.ndarray, deg: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), deg, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


WOBBLES = {
    "exposure -15%": lambda im: _png(_exposure(im, 0.85)),
    "exposure +15%": lambda im: _png(_exposure(im, 1.15)),
    "jpeg q75": lambda im: _jpeg(im, 75),
    "rotation 3": lambda im: _png(_rotate(im, 3.0)),
}


def measure_all(keys=("scores",)):
    """(base, {family: planted}, {wobble: ...}) of the sample render: the documents' ``keys`` parts."""
    analyzer = Analyzer()
    first = analyzer.analyze(SAMPLE.read_bytes())
    rgb = np.ascontiguousarray(first.decoded.rgb)
    base = analyzer.analyze(_png(rgb))

    def pick(doc):
        return doc[keys[0]] if len(keys) == 1 else {k: doc[k] for k in keys}

    changed = {}
    for family, planting in CHANGES.items():
        planted, truth = plant_on_photo(rgb, base.frame, base.regions, planting.in_measurable(base.regions))
        if planting.spots:
            assert sum(truth.spot_count.values()) > 20
        if planting.lines:
            assert sum(truth.line_count.values()) >= 8
        changed[family] = pick(analyzer.analyze(_png(planted)).document)
    wobbled = {name: pick(analyzer.analyze(make(rgb)).document) for name, make in WOBBLES.items()}
    return pick(base.document), changed, wobbled


@pytest.fixture(scope="module")
def measured():
    return measure_all()


@pytest.mark.parametrize("family", sorted(FACTOR))
def test_wobble_moves_each_score_far_less_than_a_real_change(measured, family):
    base, changed, wobbled = measured
    effect = changed[family][family] - base[family]
    assert effect > 0, f"{family}: the planted change must raise the score ({base[family]} -> {changed[family][family]})"
    for name, scores in wobbled.items():
        wobble = abs(scores[family] - base[family])
        assert wobble < effect / FACTOR[family], (
            f"{family} under {name}: moved {wobble:.1f}, the planted change {effect:.1f} "
            f"(ratio {effect / max(wobble, 1e-9):.1f} < {FACTOR[family]})")

