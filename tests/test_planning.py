"""The planning engine and the ``mesoscan plan`` command, on analysis documents made in code."""
from __future__ import annotations

import argparse
import json
import re
from datetime import date

import pytest

from pipelines.errors import ImageRejected, InvalidInput
from pipelines.planning import RejectedAnalysis, detect_concerns, make_plan, parse_intake
from pipelines.planning.samples import example_analysis
from service.commands import plan as plan_cmd

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


# An analysis with spots on both cheeks, an uneven tone overall and fine lines on the forehead.
MIXED = dict(
    face={"metrics.pigmentation.tone_unevenness": 3.4, "scores.pigmentation": 35},
    regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 2.4, "scores.pigmentation": 55},
             "cheek_right": {"metrics.pigmentation.spot_count": 7, "scores.pigmentation": 48},
             "forehead": {"metrics.wrinkles.wrinkle_length_mm_per_cm2": 11.0, "scores.wrinkles": 45}})


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
    doc = example_analysis(regions={"chin": {"metrics.texture.pore_diameter_mm": 0.3}})
    result = plan(doc, allergies=["zinc", "b_vitamin_complex"])
    assert result["suggestions"] == []
    assert result["status"] == "needs_review" and result["reasons"][0]["code"] == "all_excluded"


# --- concerns -> ingredients ---------------------------------------------------------------------

# concern: (overrides that show it and nothing else, region, triggering metric and value, ingredients)
CONCERNS = {
    "spots": ({"regions": {"cheek_left": {"metrics.pigmentation.spot_area_pct": 2.0}}},
              "cheek_left", ("metrics.pigmentation.spot_area_pct", 2.0), {"glutathione", "vitamin_c"}),
    "redness": ({"regions": {"cheek_right": {"metrics.pigmentation.red_area_pct": 6.5}}},
                "cheek_right", ("metrics.pigmentation.red_area_pct", 6.5),
                {"alpha_lipoic_acid", "centella_asiatica", "zinc"}),
    "uneven_tone": ({"face": {"metrics.pigmentation.tone_unevenness": 3.4}},
                    "face", ("metrics.pigmentation.tone_unevenness", 3.4),
                    {"vitamin_c", "glutathione", "hyaluronic_acid", "b_vitamin_complex"}),
    "rough_texture": ({"regions": {"forehead": {"metrics.texture.roughness": 3.5}}},
                      "forehead", ("metrics.texture.roughness", 3.5),
                      {"hyaluronic_acid", "amino_acid_complex", "b_vitamin_complex", "alpha_lipoic_acid"}),
    "enlarged_pores": ({"regions": {"nasolabial_right": {"metrics.texture.pore_diameter_mm": 0.3}}},
                       "nasolabial_right", ("metrics.texture.pore_diameter_mm", 0.3), {"zinc", "b_vitamin_complex"}),
    "fine_lines": ({"regions": {"crows_feet_left": {"metrics.wrinkles.wrinkle_length_mm_per_cm2": 10.0,
                                                   "metrics.wrinkles.wrinkle_depth_index": 0.3}}},
                   "crows_feet_left", ("metrics.wrinkles.wrinkle_length_mm_per_cm2", 10.0),
                   {"hyaluronic_acid", "amino_acid_complex", "vitamin_c", "alpha_lipoic_acid", "centella_asiatica"}),
    "deep_wrinkles": ({"regions": {"nasolabial_left": {"scores.wrinkles": 60,
                                                      "metrics.wrinkles.wrinkle_depth_index": 0.7}}},
                      "nasolabial_left", ("scores.wrinkles", 60.0), {"amino_acid_complex", "hyaluronic_acid"}),
}


def test_clear_skin_shows_no_concern():
    result = plan(example_analysis())
    assert result["concerns"] == [] and result["suggestions"] == [] and result["target_regions"] == []
    assert result["status"] == "eligible"


@pytest.mark.parametrize("concern", CONCERNS)
def test_each_concern_triggers_its_ingredients(concern):
    overrides, region, (metric, value), ingredients = CONCERNS[concern]
    result = plan(example_analysis(**overrides))
    assert [c["id"] for c in result["concerns"]] == [concern]
    found = result["concerns"][0]
    assert found["regions"] == [region]
    assert {"metric": metric, "value": value, "region": region} in [
        {k: e[k] for k in ("metric", "value", "region")} for e in found["evidence"] if e["op"]]
    assert {s["ingredient"] for s in result["suggestions"]} == ingredients
    for s in result["suggestions"]:
        assert s["concerns"] == [concern] and s["regions"] == [region]
        assert any(m["metric"] == metric and m["value"] == value for m in s["metrics"])
    assert result["target_regions"] == [region]


def test_just_below_thresholds_shows_nothing():
    doc = example_analysis(
        face={"metrics.pigmentation.tone_unevenness": 2.99},
        regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 1.49, "metrics.pigmentation.spot_count": 4,
                                "metrics.pigmentation.red_area_pct": 4.9, "metrics.texture.roughness": 2.9,
                                "scores.texture": 39.9, "metrics.texture.pore_diameter_mm": 0.24,
                                "metrics.texture.pore_density_per_cm2": 59.0},
                 "forehead": {"scores.wrinkles": 39.0, "metrics.wrinkles.wrinkle_length_mm_per_cm2": 7.9,
                              "metrics.wrinkles.wrinkle_density_pct": 2.9, "metrics.wrinkles.wrinkle_depth_index": 0.9}})
    assert detect_concerns(doc) == []


def test_depth_index_splits_fine_lines_from_deep_wrinkles():
    def found(depth):
        doc = example_analysis(regions={"forehead": {"metrics.wrinkles.wrinkle_density_pct": 4.0,
                                                     "metrics.wrinkles.wrinkle_depth_index": depth}})
        return [c.id for c in detect_concerns(doc)]
    assert found(0.49) == ["fine_lines"]
    assert found(0.5) == ["deep_wrinkles"]


def test_null_pore_diameter_is_skipped():
    dense = example_analysis(regions={"chin": {"metrics.texture.pore_diameter_mm": None,
                                               "metrics.texture.pore_density_per_cm2": 75.0}})
    assert [(c.id, c.regions) for c in detect_concerns(dense)] == [("enlarged_pores", ("chin",))]
    sparse = example_analysis(regions={"chin": {"metrics.texture.pore_diameter_mm": None}})
    assert detect_concerns(sparse) == []


def test_hidden_region_is_not_measured():
    doc = example_analysis(regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 3.0}})
    doc["regions"]["cheek_left"]["measurable"] = False
    assert detect_concerns(doc) == []


def test_concern_severity_is_the_worst_region_score():
    (spots,) = [c for c in detect_concerns(example_analysis(**MIXED)) if c.id == "spots"]
    assert spots.severity == 55.0
    assert spots.regions == ("cheek_left", "cheek_right")


def test_ranking_and_reasons():
    result = plan(example_analysis(**MIXED))
    ranked = [(s["ingredient"], s["concerns"], s["severity"]) for s in result["suggestions"]]
    assert ranked == [
        ("vitamin_c", ["spots", "uneven_tone", "fine_lines"], 135.0),   # three concerns
        ("glutathione", ["spots", "uneven_tone"], 90.0),                # two, more severe
        ("hyaluronic_acid", ["uneven_tone", "fine_lines"], 80.0),
        ("alpha_lipoic_acid", ["fine_lines"], 45.0),                     # ties broken by id
        ("amino_acid_complex", ["fine_lines"], 45.0),
        ("centella_asiatica", ["fine_lines"], 45.0),
        ("b_vitamin_complex", ["uneven_tone"], 35.0),
    ]
    glutathione = result["suggestions"][1]
    assert glutathione["reason"] == (
        "Pigment spots on left cheek, right cheek (spot_area_pct 2.4 >= 1.5; spot_count 7 >= 5): "
        "slows melanin production by melanocytes. "
        "Dullness / uneven tone on whole face (tone_unevenness 3.4 >= 3): evens melanin production.")
    assert glutathione["regions"] == ["face", "cheek_left", "cheek_right"]
    assert result["target_regions"] == ["face", "forehead", "cheek_left", "cheek_right"]


def test_number_of_concerns_ranks_before_severity():
    doc = example_analysis(
        face={"metrics.pigmentation.tone_unevenness": 3.2, "scores.pigmentation": 15},
        regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 1.6, "scores.pigmentation": 20},
                 "cheek_right": {"metrics.pigmentation.red_area_pct": 9.0, "scores.pigmentation": 80}})
    ranked = [(s["ingredient"], s["severity"]) for s in plan(doc)["suggestions"]]
    assert ranked == [("glutathione", 35.0), ("vitamin_c", 35.0),       # two mild concerns each
                      ("alpha_lipoic_acid", 80.0), ("centella_asiatica", 80.0), ("zinc", 80.0),
                      ("b_vitamin_complex", 15.0), ("hyaluronic_acid", 15.0)]


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
    assert "Pigment spots (severity 55) on left cheek, right cheek" in out
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
