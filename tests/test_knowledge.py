"""Knowledge files: the shipped files hold the seed's facts; malformed files are refused with a
message naming the file and the field."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.errors import InvalidInput
from pipelines.knowledge import FILES, load_knowledge
from pipelines.knowledge.loader import PACKAGE_DIR
from pipelines.planning.engine import check_intake_fields


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.fixture(scope="module")
def kb():
    return load_knowledge()


# --- the shipped knowledge -------------------------------------------------------------------------

def test_every_file_has_a_version_and_sources(kb):
    assert set(kb.versions) == set(FILES) == {p.name for p in PACKAGE_DIR.glob("*.yaml")}
    for name, version in kb.versions.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), name
        assert getattr(kb, FILES[name][0]).sources, name


def test_contraindications_are_the_seed_list(kb):
    effects = {c.id: c.effect for c in kb.contraindications.contraindications}
    assert effects == {
        "pregnant": "not_a_candidate", "breastfeeding": "not_a_candidate", "cancer": "not_a_candidate",
        "insulin_diabetes": "not_a_candidate", "coagulation_disorder": "not_a_candidate",
        "paralysis_history": "not_a_candidate", "cardiac_disease": "not_a_candidate",
        "urticaria": "not_a_candidate", "allergies": "exclude_ingredient"}
    check_intake_fields(kb)  # every one is an intake field


def test_course_templates_are_the_seed_courses(kb):
    std, intensive = kb.courses.templates["standard"], kb.courses.templates["intensive"]
    assert (std.sessions.min, std.sessions.max, std.interval.weeks) == (6, 8, 2)
    assert (std.maintenance.after_min.months, std.maintenance.after_max.months) == (6, 12)
    assert (intensive.sessions.min, intensive.sessions.max, intensive.interval.months) == (3, 3, 1)
    assert (intensive.maintenance.after_min.months, intensive.maintenance.after_max.months) == (3, 6)


def test_devices_are_the_seed_devices(kb):
    kinds = {d.id: d.kind for d in kb.devices.devices}
    assert kinds == {"LB212": "meso_gun", "SC004": "electroporation",
                     "SC311": "negative_pressure_injector", "LB213": "rf_facial"}


def test_ingredient_families_and_regions(kb):
    families = {f.id for f in kb.ingredients.families}
    assert families == {"hyaluronic_acid", "vitamins", "amino_acids", "plant_extracts", "minerals",
                        "antioxidants", "pigment_regulators", "enzymes", "scalp_formulations"}
    assert {i.family for i in kb.ingredients.ingredients} == families
    assert kb.ingredient_regions("scalp_complex") == {"scalp"}
    assert "forehead" in kb.ingredient_regions("vitamin_c")


def test_measured_concerns_and_their_ingredients(kb):
    measured = [cid for cid, c in kb.concerns.concerns.items() if c.measured]
    assert measured == ["spots", "redness", "uneven_tone", "rough_texture", "enlarged_pores",
                        "fine_lines", "deep_wrinkles"]
    assert set(kb.mapping.mapping) == set(measured)
    # fat-dissolving enzymes and scalp formulations are never triggered by a face photo
    mapped = {e.ingredient for entries in kb.mapping.mapping.values() for e in entries}
    assert not mapped & {"lipolytic_enzymes", "scalp_complex"}


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_no_dosing_anywhere():
    dose = re.compile(r"\b\d+(\.\d+)?\s*(mg|mcg|µg|ml|mL|g|IU|units?|cc)\b")
    assert dose.search("take 100 mg daily")
    for path in PACKAGE_DIR.glob("*.yaml"):
        for text in _strings(yaml.load(path.read_text(), Loader=_Loader)):
            assert not dose.search(text), (path.name, text)


# --- malformed files ------------------------------------------------------------------------------

@pytest.fixture
def kdir(tmp_path) -> Path:
    for path in PACKAGE_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def edit(directory: Path, name: str, change) -> None:
    path = directory / name
    data = yaml.load(path.read_text(), Loader=_Loader)
    change(data)
    path.write_text(yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))


def refused(directory: Path, name: str, field: str | None) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_knowledge(directory)
    err = info.value
    assert err.source == str(directory / name)
    assert err.field == field
    assert err.message.startswith(f"{directory / name}: ")
    if field:
        assert f"'{field}'" in err.message
    return err


def test_copy_of_shipped_files_loads(kdir):
    assert load_knowledge(kdir).versions == load_knowledge().versions


def test_missing_version(kdir):
    edit(kdir, "devices.yaml", lambda d: d.pop("version"))
    assert "required field is missing" in refused(kdir, "devices.yaml", "version").message


def test_version_must_be_a_string(kdir):
    edit(kdir, "courses.yaml", lambda d: d.update(version=1.0))
    refused(kdir, "courses.yaml", "version")


def test_ingredient_family_wrong_type(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"][1].update(family=42))
    assert "(got 42)" in refused(kdir, "ingredients.yaml", "ingredients[1].family").message


def test_ingredient_unknown_family(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"][2].update(family="hormones"))
    assert "unknown family 'hormones'" in refused(kdir, "ingredients.yaml", "ingredients[2].family").message


def test_ingredient_unknown_field(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"][0].update(dose="2 ml"))
    assert "unknown field" in refused(kdir, "ingredients.yaml", "ingredients[0].dose").message


def test_ingredient_unknown_concern(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"][0]["concerns"].append("freckles"))
    n = len(load_knowledge().ingredients.ingredients[0].concerns)
    refused(kdir, "ingredients.yaml", f"ingredients[0].concerns[{n}]")


def test_unknown_source(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"][3].update(source="wikipedia"))
    assert "unknown source 'wikipedia'" in refused(kdir, "ingredients.yaml", "ingredients[3].source").message


def test_rule_unknown_key(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0]["all"][0].update(threshold=2))
    refused(kdir, "concerns.yaml", "concerns.spots.detect[0].all[0].threshold")


def test_rule_bad_operator(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["redness"]["detect"][0]["all"][1].update(op="=>"))
    refused(kdir, "concerns.yaml", "concerns.redness.detect[0].all[1].op")


def test_rule_threshold_must_be_a_number(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0]["all"][0].update(value="30"))
    refused(kdir, "concerns.yaml", "concerns.spots.detect[0].all[0].value")
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0]["all"][0].update(value=True))
    refused(kdir, "concerns.yaml", "concerns.spots.detect[0].all[0].value")


def test_rule_misspelt_metric(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0]["all"][1].update(
        metric="metrics.pigmentation.spots_count"))
    err = refused(kdir, "concerns.yaml", "concerns.spots.detect[0].all[1]")
    assert "unknown metric path 'metrics.pigmentation.spots_count'" in err.message


def test_rule_overall_score_only_at_face_scope(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["rough_texture"]["detect"][0]["any"][0].update(
        metric="scores.overall"))
    err = refused(kdir, "concerns.yaml", "concerns.rough_texture.detect[0]")
    assert "any[0]: 'scores.overall' exists only at face scope" in err.message


def test_rule_condition_without_value(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0]["all"][0].pop("value"))
    assert "needs metric, op and value" in refused(kdir, "concerns.yaml", "concerns.spots.detect[0].all[0]").message


def test_rule_bad_scope(kdir):
    edit(kdir, "concerns.yaml", lambda d: d["concerns"]["spots"]["detect"][0].update(scope="cheek"))
    refused(kdir, "concerns.yaml", "concerns.spots.detect[0].scope")


def test_mapping_unknown_ingredient(kdir):
    edit(kdir, "mapping.yaml", lambda d: d["mapping"]["spots"][0].update(ingredient="hydroquinone"))
    assert "unknown ingredient 'hydroquinone'" in refused(kdir, "mapping.yaml", "mapping.spots[0].ingredient").message


def test_mapping_must_agree_with_ingredient_concerns(kdir):
    edit(kdir, "mapping.yaml", lambda d: d["mapping"]["redness"].append(
        {"ingredient": "amino_acid_complex", "why": "x", "source": "seed"}))
    err = refused(kdir, "mapping.yaml", "mapping.redness[3].ingredient")
    assert "does not list 'redness'" in err.message


def test_mapping_of_an_unmeasured_concern(kdir):
    edit(kdir, "mapping.yaml", lambda d: d["mapping"].update(
        hair_loss=[{"ingredient": "scalp_complex", "why": "x", "source": "seed"}]))
    refused(kdir, "mapping.yaml", "mapping.hair_loss")


def test_course_interval_with_two_units(kdir):
    edit(kdir, "courses.yaml", lambda d: d["templates"]["standard"]["interval"].update(days=14))
    assert "exactly one of" in refused(kdir, "courses.yaml", "templates.standard.interval").message


def test_course_sessions_out_of_order(kdir):
    edit(kdir, "courses.yaml", lambda d: d["templates"]["standard"]["sessions"].update(min=9))
    refused(kdir, "courses.yaml", "templates.standard.sessions")


def test_care_template_unknown_field(kdir):
    edit(kdir, "care.yaml", lambda d: d["pre_care"][0]["tailored"].update(text="Stop {drug}."))
    assert "['drug']" in refused(kdir, "care.yaml", "pre_care[0].tailored").message


def test_patch_test_hours_must_be_whole_days(kdir):
    edit(kdir, "care.yaml", lambda d: d["patch_test"].update(hours_before=36))
    refused(kdir, "care.yaml", "patch_test.hours_before")


def test_medication_category_unknown_pre_care_item(kdir):
    edit(kdir, "medications.yaml", lambda d: d["categories"][0]["pre_care"].append("stop_coffee"))
    refused(kdir, "medications.yaml", "categories[0].pre_care[1]")


def test_duplicate_ingredient_id(kdir):
    edit(kdir, "ingredients.yaml", lambda d: d["ingredients"].append(dict(d["ingredients"][0])))
    n = len(load_knowledge().ingredients.ingredients)
    refused(kdir, "ingredients.yaml", f"ingredients[{n}].id")


def test_duplicate_yaml_key(kdir):
    path = kdir / "courses.yaml"
    path.write_text(path.read_text() + "templates: {}\n")
    assert "duplicate key 'templates'" in refused(kdir, "courses.yaml", None).message


def test_yaml_syntax_error(kdir):
    (kdir / "devices.yaml").write_text("version: '1.0.0'\ndevices: [\n")
    assert "invalid YAML at line" in refused(kdir, "devices.yaml", None).message


def test_missing_file(kdir):
    (kdir / "care.yaml").unlink()
    assert "cannot read knowledge file" in refused(kdir, "care.yaml", None).message


def test_contraindication_must_be_an_intake_field(kdir):
    edit(kdir, "contraindications.yaml", lambda d: d["contraindications"][2].update(id="epilepsy"))
    kb = load_knowledge(kdir)  # structurally fine; the planner refuses it
    with pytest.raises(InvalidInput) as info:
        check_intake_fields(kb)
    assert info.value.field == "contraindications[2].id"
    assert info.value.source.endswith("contraindications.yaml")
