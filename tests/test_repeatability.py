"""Repeatability of the face scores: capture wobble must move every score much
less than a real change does (issue 3; bench/repeatability.py measures the same on more faces).

Two subjects: the sample render as it is (face at 4.3 px/mm, film-like grain, a fringe over the
forehead), and a ground-truth subject made from it: its face taken to a clinic camera's 10.5
px/mm and its skin resurfaced (colour and shading kept, grain, freckles and hair strands
smoothed away, a fresh fine grain added), so that what is on the skin is only what is planted.
Each is analysed as is, under each capture wobble issue 3 names, made as bench/repeatability.py
makes them (exposure -15 % and +15 %, a white-balance shift, rotation -5 and +5 degrees, scale
0.8x and 1.25x, JPEG quality 70 and 95, a 0.8 px blur), and with a strong real change of each
family planted into it (brown spots; deeper lines; enlarged pores; spots and lines together for
``overall``), drawn in the canonical frame into the regions the photo lets us measure and
warped onto the photo, at ``PLACEMENTS`` random places whose effects are averaged (one placement
is one draw). Each family's change is planted on its own, as bench/repeatability.py does: dense
planted pores roughen the cheeks, and a rougher skin hides faint folds from the wrinkle
detector. For each face score, every wobble's change must be smaller than the planted change
divided by the factor the pipeline reaches for that score (``FACTOR``; the target is 5). The
factors are what was measured when the test was written, rounded down, not wishes: a regression
in repeatability or in sensitivity makes the test fail.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.repeatability import WOBBLES as BENCH_WOBBLES
from bench.repeatability import png_bytes
from pipelines.analysis import Analyzer
from pipelines.synthetic.face import Planting, face_at_resolution, plant_on_photo, resurface_skin

SAMPLE = Path(__file__).resolve().parents[1] / "sample_images" / "astronaut_render.jpg"
CLINIC_PX_PER_MM = 10.5

SPOTS = Planting(spots={"cheek_left": 10, "cheek_right": 10, "forehead": 8, "chin": 4},
                 spot_diameter_mm=(3.5, 5.0), spot_delta_l=(12.0, 15.0), seed=21)
LINES = Planting(lines={"forehead": 6, "crows_feet_left": 4, "crows_feet_right": 4, "glabella": 3,
                        "under_eye_left": 3, "under_eye_right": 3},
                 line_depth=(12.0, 15.0), line_width_mm=(1.0, 1.4), seed=22)
PORES = Planting(pores_per_cm2={"cheek_left": 90.0, "cheek_right": 90.0, "forehead": 60.0, "chin": 60.0},
                 pore_diameter_mm=(0.5, 0.7), seed=23)
# random placements of each planted change, averaged (as bench/repeatability.py does)
PLACEMENTS = 3
# the real change planted to measure each score's effect
CHANGES = {"pigmentation": SPOTS, "wrinkles": LINES, "texture": PORES,
           "overall": Planting(**{**vars(SPOTS), "lines": LINES.lines, "line_depth": LINES.line_depth,
                                  "line_width_mm": LINES.line_width_mm})}

# planted change / largest wobble change, per subject and face score, as reached (target 5), the
# planted change the mean over PLACEMENTS draws. Measured when written (pipeline 0.10.0, scoring
# 1.4, the ten wobbles above), pigmentation / overall / wrinkles / texture:
#   sample render             10.0 / 3.02 / 0.76 / 0.46
#   clean skin at 10.5 px/mm  13.8 / 11.8 / 5.09 / 5.88
# On the render the forehead window is mostly its blond fringe, which the skin mask keeps (the
# seed patch over the lower forehead is fringe too, so the colour model learns it): its strands
# read as lines when the photo is taken 1.25x closer (wrinkles +5.1, overall +2.7) or with 15 %
# less light (+3.8), against +3.9 for the planted lines, most of which the render's heavy grain
# hides (it cuts the line detector's gain to 0.2-0.3). The planted pores (0.5-0.7 mm) are near
# the 4.3 px/mm photo's resolution, so they move texture by 0.8 while a 5 degree turn moves it by
# 1.8. The weaker factors guard against these scores getting worse. On the clean subject every
# score reaches the target under every wobble: the closest are the wrinkles (+26.5 for the planted
# lines; with 15 % less light faint lines of the forehead and a crow's feet fall under the
# detector's thresholds and the score drops 5.2) and the texture (+16.5
# for the planted pores; 15 % more light moves it 2.8: the sclera-based exposure normalisation
# takes back about two thirds of an exposure change).
FACTOR = {
    "sample render": {"pigmentation": 9.5, "overall": 2.8, "wrinkles": 0.7, "texture": 0.4},
    "clean skin at 10.5 px/mm": {"pigmentation": 13.0, "overall": 11.0, "wrinkles": 5.0, "texture": 5.8},
}


# the capture wobbles issue 3 names, as bench/repeatability.py makes them (it adds a sub-pixel
# shift and three combinations for its noise floor)
WOBBLES = {name: BENCH_WOBBLES[name] for name in (
    "exposure -15%", "exposure +15%", "white balance", "rotation -5", "rotation +5", "scale 0.8x",
    "scale 1.25x", "jpeg q70", "jpeg q95", "blur 0.8px")}


def _mean_scores(docs: list[dict]) -> dict:
    """The first document with its face scores replaced by their mean over ``docs``."""
    out = dict(docs[0])
    out["scores"] = {f: float(np.mean([d["scores"][f] for d in docs])) for f in docs[0]["scores"]}
    return out


def sample_render(analyzer: Analyzer) -> np.ndarray:
    """The sample render's pixels, as the photo it is (face at about 4.3 px/mm)."""
    return np.ascontiguousarray(analyzer.analyze(SAMPLE.read_bytes()).decoded.rgb)


def clean_skin_at_clinic_resolution(analyzer: Analyzer) -> np.ndarray:
    """The sample render's face taken to 10.5 px/mm, where pores resolve, its skin resurfaced
    (``resurface_skin``: its colour and shading kept, its grain, freckles and fringe strands
    smoothed away, a fresh fine grain added), so what is on the skin is what is planted."""
    first = analyzer.analyze(SAMPLE.read_bytes())
    big = face_at_resolution(first.decoded.rgb, first.frame, CLINIC_PX_PER_MM)
    upscaled = analyzer.analyze(png_bytes(big))
    return resurface_skin(big, upscaled.frame, upscaled.skin, upscaled.regions, seed=3)


SUBJECTS = {"sample render": sample_render, "clean skin at 10.5 px/mm": clean_skin_at_clinic_resolution}


def measure_all(keys=("scores",), subject=sample_render):
    """(base, {family: planted}, {wobble: ...}) of a subject: the documents' ``keys`` parts."""
    analyzer = Analyzer()
    rgb = subject(analyzer)
    base = analyzer.analyze(png_bytes(rgb))

    def pick(doc):
        return doc[keys[0]] if len(keys) == 1 else {k: doc[k] for k in keys}

    changed = {}
    for family, planting in CHANGES.items():
        # one placement of the features is one draw of the effect: the mean of a few is the effect
        draws = []
        for k in range(3 * PLACEMENTS):
            if len(draws) == PLACEMENTS:
                break
            draw = replace(planting.in_measurable(base.regions), seed=planting.seed + 1000 * k)
            try:
                planted, truth = plant_on_photo(rgb, base.frame, base.regions, draw)
            except ValueError:      # this draw's features did not fit without overlap: the next
                continue
            if planting.spots:
                assert sum(truth.spot_count.values()) > 20
            if planting.lines:
                assert sum(truth.line_count.values()) >= 8
            draws.append(analyzer.analyze(png_bytes(planted)).document)
        assert len(draws) == PLACEMENTS
        changed[family] = pick(_mean_scores(draws))
    wobbled = {name: pick(analyzer.analyze(make(rgb)).document) for name, make in WOBBLES.items()}
    return pick(base.document), changed, wobbled


@pytest.fixture(scope="module", params=sorted(SUBJECTS))
def measured(request):
    return request.param, measure_all(subject=SUBJECTS[request.param])


@pytest.mark.parametrize("family", sorted(FACTOR["sample render"]))
def test_wobble_moves_each_score_far_less_than_a_real_change(measured, family):
    subject, (base, changed, wobbled) = measured
    factor = FACTOR[subject][family]
    effect = changed[family][family] - base[family]
    assert effect > 0, f"{family}: the planted change must raise the score ({base[family]} -> {changed[family][family]})"
    for name, scores in wobbled.items():
        wobble = abs(scores[family] - base[family])
        assert wobble < effect / factor, (
            f"{subject}, {family} under {name}: moved {wobble:.1f}, the planted change {effect:.1f} "
            f"(ratio {effect / max(wobble, 1e-9):.1f} < {factor})")
