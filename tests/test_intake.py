"""Intake parsing: the documented format is accepted; unknown fields, wrong types and bad JSON
are refused with a message naming the field."""
from __future__ import annotations

import json

import pytest

from pipelines.errors import InvalidInput
from pipelines.planning.intake import Intake, parse_intake

EXAMPLE = {
    "schema": "mesoscan.intake/1",
    "pregnant": False, "breastfeeding": False, "cancer": False, "insulin_diabetes": False,
    "coagulation_disorder": False, "paralysis_history": False, "cardiac_disease": False,
    "urticaria": False,
    "allergies": ["vitamin_c"],
    "medications": ["Aspirin 100 mg", "fish oil"],
    "birth_year": 1984, "sex": "female", "skin_type": "III",
}


def test_example_parses_from_bytes_and_mapping():
    intake = parse_intake(json.dumps(EXAMPLE).encode())
    assert intake == parse_intake(EXAMPLE)
    assert intake.pregnant is False and intake.urticaria is False
    assert intake.allergies == ["vitamin_c"]
    assert intake.medications == ["Aspirin 100 mg", "fish oil"]
    assert (intake.birth_year, intake.sex, intake.skin_type) == (1984, "female", "III")


def test_every_field_is_optional_and_unknown_means_none():
    intake = parse_intake("{}")
    assert all(getattr(intake, name) is None for name in Intake.model_fields)


def test_medication_names_are_stripped():
    assert parse_intake({"medications": ["  warfarin "]}).medications == ["warfarin"]


def refused(data, field: str | None, fragment: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_intake(data, source="patient.json")
    err = info.value
    assert err.field == field
    assert err.source == "patient.json"
    assert err.message.startswith("patient.json: ")
    if field:
        assert f"field '{field}'" in err.message
    assert fragment in err.message
    assert "\n" not in err.message
    return err


def test_unknown_field_is_refused():
    err = refused({**EXAMPLE, "smoker": True}, "smoker", "unknown field")
    assert "pregnant" in err.message  # lists the known fields


@pytest.mark.parametrize("field, value, fragment", [
    ("pregnant", "yes", 'must be true, false or null (got "yes")'),
    ("cancer", 1, "must be true, false or null (got 1)"),
    ("urticaria", "false", "must be true, false or null"),
    ("allergies", "vitamin_c", 'must be a list (got "vitamin_c")'),
    ("medications", "aspirin", "must be a list"),
    ("birth_year", "1984", "must be an integer"),
    ("birth_year", 1984.0, "must be an integer"),
    ("birth_year", True, "must be an integer"),
    ("birth_year", 1850, "must be a year between 1900 and"),
    ("sex", "f", "Input should be 'female', 'male' or 'other'"),
    ("skin_type", 3, "Input should be 'I', 'II', 'III', 'IV', 'V' or 'VI'"),
    ("schema", "mesoscan.intake/2", "Input should be 'mesoscan.intake/1'"),
])
def test_wrong_types_are_refused(field, value, fragment):
    refused({**EXAMPLE, field: value}, field, fragment)


def test_list_items_are_checked():
    refused({**EXAMPLE, "allergies": ["hyaluronic_acid", "Vitamin C"]}, "allergies[1]",
            "must be an ingredient id")
    refused({**EXAMPLE, "medications": ["aspirin", 5]}, "medications[1]", "must be a string")
    refused({**EXAMPLE, "medications": ["  "]}, "medications[0]", "must not be empty")


def test_invalid_json_is_refused():
    refused(b'{"pregnant": fals}', None, "not valid JSON at line 1, column 14")
    refused(b"\xff\xfe", None, "not valid JSON")


def test_top_level_must_be_an_object():
    refused("[true]", None, "must be a JSON object")


def test_duplicate_field_is_refused():
    refused('{"pregnant": false, "pregnant": true}', "pregnant", "appears twice")
