"""The planning engine and the ``mesoscan plan`` command, on analysis documents made in code."""
from __future__ import annotations

import argparse
import json
import re
from datetime import date

import pytest

from pipelines.errors import ImageRejected, InvalidInput
from pipelines.knowledge import load_knowledge
from pipelines.planning import RejectedAnalysis, detect_concerns, make_plan, parse_intake
from pipelines.planning.samples import CLEAR_METRICS, example_analysis
from pipelines.scoring import family_score
from service.commands import plan as plan_cmd

KB = load_knowledge()
START = date(2025, 3, 3)
CLEAR_INTAKE = {
    "pregnant": False, "breastfeeding": False, "cancer": False, "insulin_diabetes": False,
    "coagulation_disorder": False, "paralysis_history": False, "cardiac_disease": False,
    "urticaria": False, "allergies": [], "medications": [], "sex": "female",
}


def intake(**changes):
    return parse_intake({**CLEAR_INTAKE, **changes})


def plan(doc=None, start=START, **changes) -> dict:
    return make_plan(doc or example_analysis(), intake(**changes), start=start).to_dict()


# An analysis with spots on both cheeks, an uneven tone overall and fine lines on the forehead, in
# measurements only (scores computed from them by pipelines.scoring; MIXED_SEVERITY below).
P, T, W = "metrics.pigmentation.", "metrics.texture.", "metrics.wrinkles."
MIXED = dict(
    face={P + "tone_unevenness": 10.5, P + "red_area_pct": 9.0, P + "spot_count": 80, P + "spot_area_pct": 4.4,
          P + "spot_contrast_de": 6.2},
    regions={"cheek_left": {P + "spot_count": 12, P + "spot_area_pct": 7.5, P + "spot_contrast_de": 8.0,
                            P + "tone_unevenness": 7.0},
             "cheek_right": {P + "spot_count": 9, P + "spot_area_pct": 6.4, P + "spot_contrast_de": 7.0,
                             P + "tone_unevenness": 6.5},
             "forehead": {W + "wrinkle_length_mm_per_cm2": 7.0, W + "wrinkle_density_pct": 7.0,
                          W + "wrinkle_depth_index": 11.0, W + "wrinkle_count": 6}},
    rescore=True)


def _mixed_score(family: str, where: str) -> float:
    """The score pipelines.scoring gives MIXED's metrics at ``where`` (a region or "face"), computed
    from the overrides on top of the clear metrics, not read back from the document under test."""
    overrides = MIXED["face"] if where == "face" else MIXED["regions"].get(where, {})
    metrics = {**CLEAR_METRICS[family], **{k.rsplit(".", 1)[1]: v for k, v in overrides.items()
                                           if k.startswith(f"metrics.{family}.")}}
    return family_score(family, metrics)


# each concern's severity in MIXED: the worst region's family score (spots: the left cheek)
MIXED_SEVERITY = {"spots": _mixed_score("pigmentation", "cheek_left"),
                  "uneven_tone": _mixed_score("pigmentation", "face"),
                  "fine_lines": _mixed_score("wrinkles", "forehead")}


# --- contraindications ----------------------------------------------------------------------------

CONTRAINDICATIONS = {
    "pregnant": "Pregnant: mesotherapy is not recommended during pregnancy.",
    "breastfeeding": "Breastfeeding: mesotherapy is not recommended for breastfeeding mothers.",
    "cancer": "Cancer: mesotherapy is not recommended for cancer patients.",
    "insulin_diabetes": "Diabetes treated with insulin: mesotherapy is not recommended.",
    "coagulation_disorder": "Blood coagulation disorder: mesotherapy is not recommended.",
    "paralysis_history": "History of paralysis: mesotherapy is not recommended.",
    "cardiac_disease": "Cardiac disease: mesotherapy is not recommended.",
    "urticaria": "Urticaria: mesotherapy is not recommended for people with urticaria.",
}


@pytest.mark.parametrize("field, message", CONTRAINDICATIONS.items())
def test_each_contraindication_makes_not_a_candidate(field, message):
    result = plan(example_analysis(**MIXED), **{field: True})
    assert result["status"] == "not_a_candidate"
    assert result["reasons"] == [{"code": field, "kind": "contraindication", "message": message, "field": field}]
    # nothing is suggested or scheduled, but what was measured is still reported
    assert result["suggestions"] == [] and result["calendar"] == [] and result["pre_care"] == []
    assert [c["id"] for c in result["concerns"]] == ["spots", "uneven_tone", "fine_lines"]


def test_every_contraindication_is_listed():
    result = plan(cancer=True, urticaria=True, pregnant=True)
    assert [r["code"] for r in result["reasons"]] == ["pregnant", "cancer", "urticaria"]


def test_contraindication_wins_over_review():
    result = plan(cardiac_disease=True, medications=["levothyroxine"])
    assert result["status"] == "not_a_candidate"
    assert [r["code"] for r in result["reasons"]] == ["cardiac_disease", "unmatched_medication"]


def test_clear_intake_is_eligible():
    result = plan(example_analysis(**MIXED))
    assert result["status"] == "eligible" and result["reasons"] == []


def test_unanswered_question_needs_review():
    data = dict(CLEAR_INTAKE)
    del data["cancer"]
    result = make_plan(example_analysis(), parse_intake(data), start=START).to_dict()
    assert result["status"] == "needs_review"
    assert result["reasons"] == [{"code": "unanswered", "kind": "review", "field": "cancer",
                                  "message": "The intake does not answer 'cancer' (Cancer): ask before treating."}]


def test_pregnancy_questions_do_not_apply_to_men():
    data = {k: v for k, v in CLEAR_INTAKE.items() if k not in ("pregnant", "breastfeeding")}
    male = make_plan(example_analysis(), parse_intake({**data, "sex": "male"})).to_dict()
    assert male["status"] == "eligible"
    unknown_sex = make_plan(example_analysis(), parse_intake({**data, "sex": None})).to_dict()
    assert [r["field"] for r in unknown_sex["reasons"]] == ["pregnant", "breastfeeding"]


def test_missing_lists_need_review():
    data = {k: v for k, v in CLEAR_INTAKE.items() if k not in ("allergies", "medications")}
    result = make_plan(example_analysis(), parse_intake(data)).to_dict()
    assert result["status"] == "needs_review"
    assert [r["field"] for r in result["reasons"]] == ["allergies", "medications"]


# --- allergies ---------------------------------------------------------------------------------

def test_allergy_removes_only_that_ingredient():
    doc = example_analysis(**MIXED)
    before = plan(doc)["suggestions"]
    after = plan(doc, allergies=["vitamin_c"])
    assert after["status"] == "eligible"
    assert after["suggestions"] == [s for s in before if s["ingredient"] != "vitamin_c"]
    assert len(after["suggestions"]) == len(before) - 1
    assert after["excluded"] == [{
        "ingredient": "vitamin_c", "name": "Vitamin C (ascorbic acid)", "would_be_suggested": True,
        "reason": "Allergy declared in the intake: never use this ingredient for this patient."}]


def test_allergy_to_an_ingredient_not_suggested():
    doc = example_analysis(**MIXED)
    result = plan(doc, allergies=["zinc"])
    assert result["suggestions"] == plan(doc)["suggestions"]
    assert [(e["ingredient"], e["would_be_suggested"]) for e in result["excluded"]] == [("zinc", False)]


def test_unknown_allergy_needs_review():
    result = plan(allergies=["lidocaine"])
    assert result["status"] == "needs_review"
    assert result["reasons"][0]["code"] == "unknown_allergy"
    assert "'lidocaine'" in result["reasons"][0]["message"]


def test_allergies_to_everything_suggested_need_review():
    doc = example_analysis(regions={"chin": {"metrics.texture.pore_diameter_mm": 0.44}}, rescore=True)
    result = plan(doc, allergies=["zinc", "b_vitamin_complex"])
    assert result["suggestions"] == []
    assert result["status"] == "needs_review" and result["reasons"][0]["code"] == "all_excluded"


# --- concerns -> ingredients ---------------------------------------------------------------------
#
# Documents below state measurements only (rescore=True: scores computed by pipelines.scoring, as the
# analysis does). Values: what a region showing the concern measures, against the 20 young-adult
# development faces the thresholds were set on (concerns.yaml; README.md).

# concern: (overrides that show it and nothing else, region, triggering metric and value, ingredients)
CONCERNS = {
    # 12 spots covering 7.5 % of the cheek, delta-E 8 (young-adult region p50: 3 spots, 1.5 %)
    "spots": ({"regions": {"cheek_left": {P + "spot_count": 12, P + "spot_area_pct": 7.5,
                                          P + "spot_contrast_de": 8.0, P + "tone_unevenness": 7.0}}},
              "cheek_left", (P + "spot_area_pct", 7.5), {"glutathione", "vitamin_c"}),
    # 40 % of the cheek red (region p90 27 %)
    "redness": ({"regions": {"cheek_right": {P + "red_area_pct": 40.0, P + "erythema_index": 24.0,
                                             P + "tone_unevenness": 8.0}}},
                "cheek_right", (P + "red_area_pct", 40.0), {"alpha_lipoic_acid", "centella_asiatica", "zinc"}),
    # face tone unevenness 10.5 delta-E (face p90 7.3), with some redness and spots as such faces have
    "uneven_tone": ({"face": {P + "tone_unevenness": 10.5, P + "red_area_pct": 9.0, P + "spot_count": 80,
                              P + "spot_area_pct": 4.4, P + "spot_contrast_de": 6.2}},
                    "face", (P + "tone_unevenness", 10.5),
                    {"vitamin_c", "glutathione", "hyaluronic_acid", "b_vitamin_complex"}),
    "rough_texture": ({"regions": {"forehead": {T + "roughness": 4.8}}},
                      "forehead", (T + "roughness", 4.8),
                      {"hyaluronic_acid", "amino_acid_complex", "b_vitamin_complex", "alpha_lipoic_acid"}),
    "enlarged_pores": ({"regions": {"nasolabial_right": {T + "pore_diameter_mm": 0.44, T + "pore_density_per_cm2": 45.0}}},
                       "nasolabial_right", (T + "pore_diameter_mm", 0.44), {"zinc", "b_vitamin_complex"}),
    # four lines of delta-L* 11 at the eye corner (face depth index p50 10.6)
    "fine_lines": ({"regions": {"crows_feet_left": {W + "wrinkle_length_mm_per_cm2": 7.0, W + "wrinkle_density_pct": 7.0,
                                                   W + "wrinkle_depth_index": 11.0, W + "wrinkle_count": 4}}},
                   "crows_feet_left", (W + "wrinkle_depth_index", 11.0),
                   {"hyaluronic_acid", "amino_acid_complex", "vitamin_c", "alpha_lipoic_acid", "centella_asiatica"}),
    # three dark lines, delta-L* 18 (face p90 14.3)
    "deep_wrinkles": ({"regions": {"nasolabial_left": {W + "wrinkle_length_mm_per_cm2": 7.0, W + "wrinkle_density_pct": 9.0,
                                                      W + "wrinkle_depth_index": 18.0, W + "wrinkle_count": 3}}},
                      "nasolabial_left", (W + "wrinkle_depth_index", 18.0), {"amino_acid_complex", "hyaluronic_acid"}),
}


def found(**overrides) -> list[tuple[str, tuple[str, ...]]]:
    """(concern, regions) detected in a rescored example analysis."""
    return [(c.id, c.regions) for c in detect_concerns(example_analysis(rescore=True, **overrides))]


@pytest.mark.parametrize("rescore", [False, True])
def test_clear_skin_shows_no_concern(rescore):
    result = plan(example_analysis(rescore=rescore))
    assert result["concerns"] == [] and result["suggestions"] == [] and result["target_regions"] == []
    assert result["status"] == "eligible"


def test_rescored_example_computes_every_score():
    doc = example_analysis(rescore=True, regions={"chin": {W + "wrinkle_count": 4}})
    assert doc["scores"]["overall"] is not None and doc["regions"]["chin"]["scores"]["wrinkles"] > 0
    with pytest.raises(ValueError, match="computed from the metrics"):
        example_analysis(rescore=True, regions={"chin": {"scores.wrinkles": 50.0}})


@pytest.mark.parametrize("concern", CONCERNS)
def test_each_concern_triggers_its_ingredients(concern):
    overrides, region, (metric, value), ingredients = CONCERNS[concern]
    doc = example_analysis(rescore=True, **overrides)
    result = plan(doc)
    assert [c["id"] for c in result["concerns"]] == [concern]
    detected = result["concerns"][0]
    assert detected["regions"] == [region]
    where = doc if region == "face" else doc["regions"][region]
    assert detected["severity"] == where["scores"][KB.concerns.concerns[concern].severity.split(".")[1]]
    assert {"metric": metric, "value": value, "region": region} in [
        {k: e[k] for k in ("metric", "value", "region")} for e in detected["evidence"] if e["op"]]
    assert {s["ingredient"] for s in result["suggestions"]} == ingredients
    for s in result["suggestions"]:
        assert s["concerns"] == [concern] and s["regions"] == [region]
        assert any(m["metric"] == metric and m["value"] == value for m in s["metrics"])
    assert result["target_regions"] == [region]


# Things every young face shows, measured on the development faces: none is a concern.
YOUNG_ADULT = {
    # the lower-lid crease: one long line (age 22), wrinkle score 58.7 with scoring 1.0, 65.0 with 1.1:
    # over the one-fold gate of 60, kept out by its contrast (depth index under 14)
    "under-eye crease": {"under_eye_left": {W + "wrinkle_length_mm_per_cm2": 9.4, W + "wrinkle_density_pct": 16.0,
                                            W + "wrinkle_depth_index": 11.1, W + "wrinkle_count": 1}},
    # a nasolabial fold of contrast 15: one line, score 48.3 with scoring 1.0, 50.0 with 1.1
    "nasolabial fold": {"nasolabial_right": {W + "wrinkle_length_mm_per_cm2": 4.5, W + "wrinkle_density_pct": 8.0,
                                             W + "wrinkle_depth_index": 15.0, W + "wrinkle_count": 1}},
    # two dark blobs at the eye corner make a quarter of a 3 cm2 region "spot area" (age 20)
    "eye-corner shadow": {"crows_feet_left": {P + "spot_count": 2, P + "spot_area_pct": 27.7,
                                              P + "spot_contrast_de": 6.5, P + "tone_unevenness": 7.1}},
    # many faint spots on even skin (delta-E 4.3, tone 3.0): pigmentation score 31.1 with scoring 1.1
    # (25.5 with 1.0), under the spots gate of 33
    "faint spots": {"cheek_right": {P + "spot_count": 10, P + "spot_area_pct": 10.8, P + "spot_contrast_de": 4.3,
                                    P + "tone_unevenness": 3.0, P + "red_area_pct": 0.4}},
    # a pink patch on a fifth of the cheek (region p90 27 %)
    "flushed cheek": {"cheek_left": {P + "red_area_pct": 20.0, P + "erythema_index": 21.0}},
    # fold shading makes a region's tone uneven; tone is judged on the whole face
    "shaded fold": {"nasolabial_left": {P + "tone_unevenness": 17.5, P + "spot_area_pct": 6.7,
                                        P + "spot_count": 4, P + "red_area_pct": 11.3}},
}


@pytest.mark.parametrize("case", YOUNG_ADULT)
def test_young_adult_features_are_no_concern(case):
    assert found(regions=YOUNG_ADULT[case]) == []


@pytest.mark.parametrize("medians", [
    # the development faces' whole-face medians with pipeline 0.1.0 (spots 61 covering 3 %, tone
    # 7.3, red 5.1 %, lines 10.6) and 0.3.0 (bench/concern_thresholds.py)
    {P + "spot_count": 61, P + "spot_area_pct": 3.0, P + "spot_contrast_de": 5.7, P + "tone_unevenness": 7.3,
     P + "red_area_pct": 5.1, W + "wrinkle_count": 6, W + "wrinkle_length_mm_per_cm2": 1.25,
     W + "wrinkle_density_pct": 1.9, W + "wrinkle_depth_index": 10.6},
    {P + "spot_count": 23, P + "spot_area_pct": 2.14, P + "spot_contrast_de": 4.5, P + "tone_unevenness": 5.0,
     P + "red_area_pct": 3.7, W + "wrinkle_count": 3, W + "wrinkle_length_mm_per_cm2": 0.36,
     W + "wrinkle_density_pct": 0.65, W + "wrinkle_depth_index": 12.8},
])
def test_young_adult_face_metrics_are_no_concern(medians):
    assert found(face=medians) == []


# Each threshold, on both sides (scores given, so one condition changes at a time).
BOUNDARIES = [
    ("spots", "cheek_left", {"scores.pigmentation": 33.0, P + "spot_count": 8, P + "spot_area_pct": 6.0},
     [("scores.pigmentation", 32.9), (P + "spot_count", 7), (P + "spot_area_pct", 5.99)]),
    ("redness", "cheek_right", {"scores.pigmentation": 25.0, P + "red_area_pct": 30.0},
     [("scores.pigmentation", 24.9), (P + "red_area_pct", 29.9)]),
    ("uneven_tone", "face", {"scores.pigmentation": 30.0, P + "tone_unevenness": 7.3},
     [("scores.pigmentation", 29.9), (P + "tone_unevenness", 7.29)]),
    ("rough_texture", "forehead", {T + "roughness": 3.3}, [(T + "roughness", 3.29)]),
    ("enlarged_pores", "chin", {T + "pore_diameter_mm": 0.4}, [(T + "pore_diameter_mm", 0.39)]),
    ("enlarged_pores", "chin", {T + "pore_density_per_cm2": 60.0}, [(T + "pore_density_per_cm2", 59.9)]),
    ("fine_lines", "forehead", {"scores.wrinkles": 45.0, W + "wrinkle_count": 3, W + "wrinkle_depth_index": 13.99},
     [("scores.wrinkles", 44.9), (W + "wrinkle_count", 2)]),
    ("deep_wrinkles", "glabella", {"scores.wrinkles": 45.0, W + "wrinkle_count": 3, W + "wrinkle_depth_index": 14.0},
     [("scores.wrinkles", 44.9), (W + "wrinkle_count", 2)]),
    ("deep_wrinkles", "nasolabial_right", {"scores.wrinkles": 60.0, W + "wrinkle_count": 1, W + "wrinkle_depth_index": 14.0},
     [("scores.wrinkles", 59.9), (W + "wrinkle_depth_index", 13.99)]),
]


@pytest.mark.parametrize("concern, where, at, below", BOUNDARIES)
def test_thresholds_on_both_sides(concern, where, at, below):
    def detected(values):
        doc = example_analysis(face=values) if where == "face" else example_analysis(regions={where: values})
        return [(c.id, c.regions) for c in detect_concerns(doc)]
    assert detected(at) == [(concern, (where,))]
    for path, value in below:
        assert detected({**at, path: value}) == [], path


def test_depth_index_splits_fine_lines_from_deep_wrinkles():
    def lines(depth, **kw):
        return found(regions={"forehead": {W + "wrinkle_length_mm_per_cm2": 7.0, W + "wrinkle_density_pct": 7.0,
                                           W + "wrinkle_count": 5, W + "wrinkle_depth_index": depth}})
    assert lines(11.0) == [("fine_lines", ("forehead",))]       # the young-adult median contrast
    assert lines(13.9) == [("fine_lines", ("forehead",))]
    assert lines(14.0) == [("deep_wrinkles", ("forehead",))]    # about the young-adult p90
    assert lines(18.0) == [("deep_wrinkles", ("forehead",))]


def test_one_marked_fold_is_a_deep_wrinkle():
    fold = {W + "wrinkle_length_mm_per_cm2": 9.0, W + "wrinkle_density_pct": 14.0, W + "wrinkle_count": 1}
    assert found(regions={"nasolabial_right": {**fold, W + "wrinkle_depth_index": 20.0}}) == [
        ("deep_wrinkles", ("nasolabial_right",))]
    # as long and wide but of low contrast: a crease, not a fold
    assert found(regions={"nasolabial_right": {**fold, W + "wrinkle_depth_index": 11.0}}) == []


def test_rough_and_porous_skin_shows_both():
    assert found(regions={"cheek_left": {T + "roughness": 3.6, T + "pore_density_per_cm2": 90.0,
                                         T + "pore_diameter_mm": 0.45}}) == [
        ("rough_texture", ("cheek_left",)), ("enlarged_pores", ("cheek_left",))]


def test_null_pore_metrics_are_skipped():
    dense = example_analysis(regions={"chin": {T + "pore_diameter_mm": None, T + "pore_density_per_cm2": 75.0}})
    assert [(c.id, c.regions) for c in detect_concerns(dense)] == [("enlarged_pores", ("chin",))]
    sparse = example_analysis(regions={"chin": {T + "pore_diameter_mm": None}})
    assert detect_concerns(sparse) == []
    # below 8 px/mm pores are not measured at all: only roughness can say anything about texture
    unresolved = example_analysis(regions={"chin": {T + "pore_diameter_mm": None, T + "pore_density_per_cm2": None,
                                                    "scores.texture": 60.0, T + "roughness": 3.2}})
    assert detect_concerns(unresolved) == []


def test_hidden_region_is_not_measured():
    doc = example_analysis(**CONCERNS["spots"][0], rescore=True)
    doc["regions"]["cheek_left"]["measurable"] = False
    assert detect_concerns(doc) == []


def test_concern_severity_is_the_worst_region_score():
    doc = example_analysis(**MIXED)
    (spots,) = [c for c in detect_concerns(doc) if c.id == "spots"]
    assert spots.regions == ("cheek_left", "cheek_right")
    left, right = _mixed_score("pigmentation", "cheek_left"), _mixed_score("pigmentation", "cheek_right")
    assert left > right
    assert spots.severity == max(doc["regions"][r]["scores"]["pigmentation"] for r in spots.regions) == left


def test_ranking_and_reasons():
    result = plan(example_analysis(**MIXED))
    severity = {c["id"]: c["severity"] for c in result["concerns"]}
    assert severity == MIXED_SEVERITY
    spots, tone, lines = (f"{MIXED_SEVERITY[c]:g}" for c in ("spots", "uneven_tone", "fine_lines"))
    # the order below holds for these severities: two concerns rank by their sum
    assert MIXED_SEVERITY["uneven_tone"] + MIXED_SEVERITY["fine_lines"] > MIXED_SEVERITY["spots"] + MIXED_SEVERITY["uneven_tone"]
    ranked = [(s["ingredient"], s["concerns"]) for s in result["suggestions"]]
    assert ranked == [
        ("vitamin_c", ["spots", "uneven_tone", "fine_lines"]),   # three concerns
        ("hyaluronic_acid", ["uneven_tone", "fine_lines"]),      # two, the larger sum
        ("glutathione", ["spots", "uneven_tone"]),               # two
        ("alpha_lipoic_acid", ["fine_lines"]),                   # ties broken by id
        ("amino_acid_complex", ["fine_lines"]),
        ("centella_asiatica", ["fine_lines"]),
        ("b_vitamin_complex", ["uneven_tone"]),
    ]
    for s in result["suggestions"]:
        assert s["severity"] == round(sum(severity[c] for c in s["concerns"]), 1)
    glutathione = result["suggestions"][2]
    assert glutathione["reason"] == (
        f"Pigment spots on left cheek, right cheek (pigmentation score {spots} >= 33; spot_count 12 >= 8; "
        "spot_area_pct 7.5 >= 6): slows melanin production by melanocytes. "
        f"Dullness / uneven tone on whole face (pigmentation score {tone} >= 30; tone_unevenness 10.5 >= 7.3): "
        "evens melanin production.")
    assert glutathione["regions"] == ["face", "cheek_left", "cheek_right"]
    assert result["target_regions"] == ["face", "forehead", "cheek_left", "cheek_right"]


def test_number_of_concerns_ranks_before_severity():
    # mild spots and a mildly uneven tone against one severe red patch (scores given to make the point)
    doc = example_analysis(
        face={P + "tone_unevenness": 9.5, "scores.pigmentation": 31.0},
        regions={"cheek_left": {P + "spot_count": 9, P + "spot_area_pct": 6.2, "scores.pigmentation": 34.0},
                 "cheek_right": {P + "red_area_pct": 70.0, "scores.pigmentation": 80.0}})
    ranked = [(s["ingredient"], s["severity"]) for s in plan(doc)["suggestions"]]
    assert ranked == [("glutathione", 65.0), ("vitamin_c", 65.0),       # two mild concerns each
                      ("alpha_lipoic_acid", 80.0), ("centella_asiatica", 80.0), ("zinc", 80.0),
                      ("b_vitamin_complex", 31.0), ("hyaluronic_acid", 31.0)]


def test_plan_is_deterministic_and_has_no_doses():
    doc = example_analysis(**MIXED)
    first = plan(doc, medications=["aspirin"])
    assert first == plan(doc, medications=["aspirin"])
    text = json.dumps(first)
    assert not re.search(r"\b\d+(\.\d+)?\s*(mg|ml|mL|µg|mcg|IU|units?)\b", text)
    assert first["disclaimer"].endswith("mesoscan gives no doses.")


# --- medications and pre-care ----------------------------------------------------------------

GENERIC_BLOOD_THINNERS = (
    "For at least one week before each session, avoid aspirin, other blood thinners, non-steroidal "
    "anti-inflammatories and blood-thinning supplements (fish oil, garlic, ginkgo, vitamin E): they "
    "increase bruising and bleeding.")


def pre_care(result) -> dict:
    return {i["id"]: (i["text"], i["tailored"]) for i in result["pre_care"]}


def test_no_medication_gives_the_general_pre_care():
    items = pre_care(plan())
    assert list(items) == ["stop_blood_thinners", "pause_strong_actives", "limit_alcohol", "numbing_cream"]
    assert items["stop_blood_thinners"] == (GENERIC_BLOOD_THINNERS, False)


def test_aspirin_gets_the_one_week_stop_warning():
    result = plan(medications=["Aspirin 100 mg"])
    assert result["status"] == "eligible"
    assert pre_care(result)["stop_blood_thinners"] == (
        "WARNING, blood thinning: the patient takes Aspirin 100 mg. Stop at least one week before "
        "the first session (from 2025-02-24) and before each session; a prescribed medicine only "
        "with the prescriber's agreement.", True)


@pytest.mark.parametrize("medication", ["aspirin", "ASA", "warfarin", "Xarelto 20", "clopidogrel",
                                        "ibuprofen", "Naproxen sodium", "fish oil", "Omega-3 capsules",
                                        "garlic", "Ginkgo biloba", "vitamin E"])
def test_blood_thinners_add_the_warning(medication):
    text, tailored = pre_care(plan(medications=[medication]))["stop_blood_thinners"]
    assert tailored and text.startswith(f"WARNING, blood thinning: the patient takes {medication}. ")
    assert "(from 2025-02-24)" in text


def test_several_blood_thinners_are_named_together():
    text, _ = pre_care(plan(medications=["fish oil", "aspirin", "garlic"]))["stop_blood_thinners"]
    assert text.startswith("WARNING, blood thinning: the patient takes fish oil, aspirin and garlic. ")


def test_warning_without_start_date_has_no_date():
    result = plan(start=None, medications=["ibuprofen"])
    text, tailored = pre_care(result)["stop_blood_thinners"]
    assert tailored and "ibuprofen" in text and "from 20" not in text


def test_prescribed_anticoagulant_needs_review():
    result = plan(medications=["warfarin"])
    assert result["status"] == "needs_review"
    assert [r["code"] for r in result["reasons"]] == ["medication_anticoagulant"]


def test_topical_actives_are_paused():
    items = pre_care(plan(medications=["retinol serum", "Vitamin C serum"]))
    assert items["pause_strong_actives"] == (
        "The patient uses retinol serum and Vitamin C serum: stop a few days before each session, as it "
        "makes the skin more sensitive, painful and red after injections.", True)
    assert items["stop_blood_thinners"] == (GENERIC_BLOOD_THINNERS, False)  # vitamin C is not vitamin E


def test_unmatched_medication_needs_review():
    result = plan(medications=["levothyroxine", "aspirin"])
    assert result["status"] == "needs_review"
    assert result["reasons"] == [{
        "code": "unmatched_medication", "kind": "review", "field": "medications",
        "message": "Medication 'levothyroxine' is not in the knowledge base: check it for blood-thinning "
                   "or skin-sensitising effects."}]


def test_names_match_whole_words_only():
    result = plan(medications=["aspartame"])  # contains neither "asa" nor "aspirin" as a word
    assert [r["code"] for r in result["reasons"]] == ["unmatched_medication"]


def test_insulin_in_medications_needs_review():
    result = plan(medications=["insulin glargine"])
    assert [r["code"] for r in result["reasons"]] == ["medication_insulin"]


def test_post_care_is_the_seed_list():
    assert [i["id"] for i in plan()["post_care"]] == [
        "no_water", "no_makeup", "no_tight_clothing", "no_exertion", "no_blood_thinners", "lifestyle"]


# --- the analysis document -------------------------------------------------------------------

def test_warn_quality_needs_review():
    result = plan(example_analysis(quality="warn", **MIXED))
    assert result["status"] == "needs_review"
    assert [r["code"] for r in result["reasons"]] == ["quality_warn"]
    assert result["suggestions"]  # still planned, for the practitioner to check


def test_rejected_analysis_is_not_planned():
    with pytest.raises(RejectedAnalysis) as info:
        plan(example_analysis(quality="reject"))
    assert info.value.code == "analysis_rejected" and info.value.retake
    assert isinstance(info.value, ImageRejected)


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(schema="mesoscan.analysis/2"), "schema"),
    (lambda d: d.pop("quality"), "quality.status"),
    (lambda d: d["quality"].update(status="good"), "quality.status"),
    (lambda d: d.update(regions=[]), "regions"),
    (lambda d: d["regions"]["chin"]["metrics"]["texture"].update(roughness="high"),
     "regions.chin.metrics.texture.roughness"),
    (lambda d: d["metrics"]["pigmentation"].update(tone_unevenness=True), "metrics.pigmentation.tone_unevenness"),
])
def test_malformed_analysis_is_refused(change, field):
    doc = example_analysis()
    change(doc)
    with pytest.raises(InvalidInput) as info:
        plan(doc)
    assert info.value.field == field


def test_unknown_template_is_refused():
    with pytest.raises(InvalidInput) as info:
        make_plan(example_analysis(), intake(), template="express")
    assert info.value.field == "template"


# --- the CLI command -------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"not really a jpeg")
    intake_path = tmp_path / "intake.json"
    intake_path.write_text(json.dumps({**CLEAR_INTAKE, "medications": ["aspirin"]}))
    return photo, intake_path


def cli(argv, analyze=None, **kw):
    parser = argparse.ArgumentParser(prog="mesoscan")
    plan_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["plan", *argv])
    return args.func(args, analyze=analyze, **kw) if analyze else args.func(args)


def fake_analysis(data: bytes) -> dict:
    assert data == b"not really a jpeg"
    return example_analysis(**MIXED)


def test_cli_json(files, capsys):
    photo, intake_path = files
    rc = cli([str(photo), "--intake", str(intake_path), "--start", "2025-03-03", "--json"], fake_analysis)
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {"status", "reasons", "suggestions", "excluded", "pre_care", "post_care", "calendar"} <= set(out)
    assert out["status"] == "eligible"
    assert {"ingredient", "reason", "concerns", "regions"} <= set(out["suggestions"][0])
    assert out["suggestions"][0]["ingredient"] == "vitamin_c"
    assert out["calendar"][:2] == ["2025-03-03", "2025-03-17"] and len(out["calendar"]) == 8
    assert out["pre_care"][0]["tailored"] is True


def test_cli_intensive_template(files, capsys):
    photo, intake_path = files
    cli([str(photo), "--intake", str(intake_path), "--start", "2025-01-31", "--template", "intensive",
         "--json"], fake_analysis)
    assert json.loads(capsys.readouterr().out)["calendar"] == ["2025-01-31", "2025-02-28", "2025-03-31"]


def test_cli_summary(files, capsys):
    photo, intake_path = files
    assert cli([str(photo), "--intake", str(intake_path), "--start", "2025-03-03"], fake_analysis) == 0
    out = capsys.readouterr().out
    assert out.startswith("Status: eligible\n")
    assert "  1. Vitamin C (ascorbic acid) [vitamins]" in out
    assert f"Pigment spots (severity {MIXED_SEVERITY['spots']:g}) on left cheek, right cheek" in out
    assert f"Fine lines (severity {MIXED_SEVERITY['fine_lines']:g}) on forehead" in out
    assert "WARNING, blood thinning: the patient takes aspirin." in out
    assert "2025-05-26 (optional), 2025-06-09 (optional)" in out
    assert "Patch test on 2025-03-02" in out


def test_cli_uses_the_analysis_pipeline_by_default(files, capsys, monkeypatch):
    photo, intake_path = files
    monkeypatch.setattr(plan_cmd, "_analyze_bytes", fake_analysis)
    assert cli([str(photo), "--intake", str(intake_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calendar"][0] == date.today().isoformat()


@pytest.mark.parametrize("content, field", [
    ('{"pregnant": "no"}', "pregnant"),
    ('{"smoker": false}', "smoker"),
    ('{"allergies": "vitamin_c"}', "allergies"),
])
def test_cli_intake_problem_exits_2_naming_the_field(files, capsys, content, field):
    photo, intake_path = files
    intake_path.write_text(content)
    assert cli([str(photo), "--intake", str(intake_path)], fake_analysis) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mesoscan plan: {intake_path}: field '{field}': ")


def test_cli_missing_intake_file(files, capsys):
    photo, intake_path = files
    assert cli([str(photo), "--intake", str(intake_path) + ".missing"], fake_analysis) == 2
    assert "cannot read intake" in capsys.readouterr().err


def test_cli_unknown_template(files, capsys):
    photo, intake_path = files
    assert cli([str(photo), "--intake", str(intake_path), "--template", "express"], fake_analysis) == 2
    assert "unknown course template 'express'" in capsys.readouterr().err


def test_cli_bad_start_date(files, capsys):
    photo, intake_path = files
    with pytest.raises(SystemExit) as info:
        cli([str(photo), "--intake", str(intake_path), "--start", "03/03/2025"], fake_analysis)
    assert info.value.code == 2
    assert "not a date in YYYY-MM-DD form" in capsys.readouterr().err


def test_cli_rejected_photo_exits_1(files, capsys):
    photo, intake_path = files

    def reject(data):
        raise ImageRejected("too_dark", "the photo is too dark", retake=True)

    assert cli([str(photo), "--intake", str(intake_path)], reject) == 1
    assert capsys.readouterr().err == "mesoscan plan: photo rejected (too_dark): the photo is too dark\n"
    assert cli([str(photo), "--intake", str(intake_path)], lambda d: example_analysis(quality="reject")) == 1
    assert "photo rejected (analysis_rejected)" in capsys.readouterr().err
