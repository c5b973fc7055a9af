"""From a photo to a plan through the real pipeline: the sample render analysed as it is, and again
with wrinkles planted into it (pipelines.synthetic.face), each planned with ``make_plan``.

The lines go on the chin, not the forehead. In the render the fringe covers most of the forehead,
and its hair strands are measured as lines: ~15 of them, depth index ~24 delta-L*, wrinkle score
43-49 depending on the pipeline revision, right at the wrinkle concern's gate of 45. The clean
render sometimes reports deep wrinkles there already, and a forehead test would then test the
hair. The chin has one line (the jaw contour, score ~10) and no wrinkle concern.

The lines are planted at delta-L* 28-34, darker than real wrinkles (the metric doc gives depth
indices of 2-15): the render's synthetic skin grain makes the line detector scale its response
down 3.5-6x (a line must stand out of the skin's texture). Pipeline 0.2.0 weights each segment by
ramps above its thresholds, so fainter lines are found but only partly counted: at delta-L* 22-28
(what pipeline 0.1.0 needed) the six lines are all found but measure 3.1 mm/cm2 of the 5.9 planted
and score 39 with scoring 1.1, under the gate of 45. At 28-34 the measured length is close to the
planted one (5.8 of 5.9 with seed 1; 0.8-1.05x with seeds 2 and 3) and the score 55-60. Their
depth index is measured at about 24, below the planted contrast at this photo's 4.3 px/mm, so
they count as deep (>= 14 in concerns.yaml).
"""
from __future__ import annotations

import io
from datetime import date

import pytest
from PIL import Image

from pipelines.knowledge import load_knowledge
from pipelines.planning import make_plan, parse_intake
from pipelines.scoring import family_score
from pipelines.synthetic.face import Planting, plant_on_photo

INTAKE = {
    "pregnant": False, "breastfeeding": False, "cancer": False, "insulin_diabetes": False,
    "coagulation_disorder": False, "paralysis_history": False, "cardiac_disease": False,
    "urticaria": False, "allergies": [], "medications": [], "sex": "female",
}
REGION = "chin"
CONCERN = "deep_wrinkles"
# 8-14 mm long: six of them fit the chin's ~8.8 cm2 at once (the default 10-22 mm take the line
# placer thousands of tries, ~10 s, and only 5 fit)
LINES = Planting(lines={REGION: 6}, line_length_mm=(8.0, 14.0), line_depth=(28.0, 34.0), seed=1)


def plan_of(document: dict) -> dict:
    return make_plan(document, parse_intake(INTAKE), start=date(2026, 12, 1)).to_dict()


def concern_regions(plan: dict, concern: str) -> list[str]:
    return next((c["regions"] for c in plan["concerns"] if c["id"] == concern), [])


@pytest.fixture(scope="module")
def clean(analyzer, render_bytes):
    return analyzer.analyze(render_bytes)


@pytest.fixture(scope="module")
def planted(analyzer, clean):
    rgb, truth = plant_on_photo(clean.decoded.rgb, clean.frame, clean.regions, LINES)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)   # lossless; level 1 is 4x faster
    return analyzer.analyze(buf.getvalue()), truth


@pytest.fixture(scope="module")
def mapped() -> list[str]:
    ingredients = [e.ingredient for e in load_knowledge().mapping.mapping[CONCERN]]
    assert ingredients
    return ingredients


def test_clean_render_has_no_wrinkle_concern_on_the_chin(clean, mapped):
    plan = plan_of(clean.document)
    assert REGION not in concern_regions(plan, "deep_wrinkles")
    assert REGION not in concern_regions(plan, "fine_lines")
    suggested = {s["ingredient"]: s for s in plan["suggestions"]}
    for ingredient in mapped:
        assert REGION not in suggested.get(ingredient, {}).get("regions", [])


def test_planted_wrinkles_are_measured(clean, planted):
    analysis, truth = planted
    assert truth.line_count[REGION] == 6
    before = clean.document["regions"][REGION]
    after = analysis.document["regions"][REGION]
    assert before["metrics"]["wrinkles"]["wrinkle_count"] <= 1 and before["scores"]["wrinkles"] < 45
    wrinkles = after["metrics"]["wrinkles"]
    assert wrinkles["wrinkle_count"] >= 3
    # the planted length is measured (within 30 %), not just some lines
    planted_mm_per_cm2 = truth.line_length_mm[REGION] / after["area_cm2"]
    measured = wrinkles["wrinkle_length_mm_per_cm2"] - before["metrics"]["wrinkles"]["wrinkle_length_mm_per_cm2"]
    assert 0.7 * planted_mm_per_cm2 <= measured <= 1.3 * planted_mm_per_cm2
    assert after["scores"]["wrinkles"] == family_score("wrinkles", wrinkles)
    assert after["scores"]["wrinkles"] >= 45                  # the wrinkle concerns' score gate
    assert wrinkles["wrinkle_depth_index"] >= 14.0


def test_planted_wrinkles_are_planned(planted, mapped):
    analysis, _ = planted
    plan = plan_of(analysis.document)
    assert plan["status"] in ("eligible", "needs_review")   # the render's capture quality is 'warn'
    assert REGION in concern_regions(plan, CONCERN)
    assert REGION in plan["target_regions"]
    suggested = {s["ingredient"]: s for s in plan["suggestions"]}
    for ingredient in mapped:
        s = suggested[ingredient]
        assert CONCERN in s["concerns"] and REGION in s["regions"]
        assert any(m["region"] == REGION and m["metric"] == "metrics.wrinkles.wrinkle_depth_index"
                   and m["value"] >= 14.0 for m in s["metrics"])
        assert "Deep wrinkles on " in s["reason"] and "chin" in s["reason"]
