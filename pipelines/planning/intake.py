"""The patient intake: a small JSON document answered before the first session.

Every contraindication of ``contraindications.yaml`` is a field here (checked by the engine).
``null`` or an absent field means "not asked"; the engine turns that into ``needs_review``
where it matters. Unknown fields and wrong types are refused, naming the field.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from pipelines.errors import InvalidInput
from pipelines.knowledge.loader import format_loc
from pipelines.knowledge.models import Sex

INTAKE_SCHEMA = "mesoscan.intake/1"

IngredientId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
MedicationName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


class Intake(BaseModel):
    """One patient's answers. Booleans: true = has the condition, false = has not, null = unknown."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    schema_: Literal["mesoscan.intake/1"] | None = Field(None, alias="schema")
    pregnant: bool | None = None
    breastfeeding: bool | None = None
    cancer: bool | None = None
    insulin_diabetes: bool | None = None
    coagulation_disorder: bool | None = None
    paralysis_history: bool | None = None
    cardiac_disease: bool | None = None
    urticaria: bool | None = None
    allergies: list[IngredientId] | None = None
    medications: list[MedicationName] | None = None
    birth_year: int | None = None
    sex: Sex | None = None
    skin_type: Literal["I", "II", "III", "IV", "V", "VI"] | None = None

    @field_validator("birth_year")
    @classmethod
    def _plausible_year(cls, year: int | None) -> int | None:
        if year is not None and not 1900 <= year <= dt.date.today().year:
            raise ValueError(f"must be a year between 1900 and {dt.date.today().year}")
        return year


# Friendlier wording than pydantic's for the errors an intake form produces.
_MESSAGES = {
    "bool_type": "must be true, false or null",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "string_pattern_mismatch": "must be an ingredient id (lowercase letters, digits and _, e.g. vitamin_c)",
    "string_too_short": "must not be empty",
}


def _intake_error(exc: ValidationError, source: str) -> InvalidInput:
    err = exc.errors()[0]
    field = format_loc(err["loc"]) or None
    if err["type"] == "extra_forbidden":
        known = ", ".join(f.alias or name for name, f in Intake.model_fields.items())
        msg = f"unknown field (known fields: {known})"
    else:
        msg = _MESSAGES.get(err["type"], err["msg"].removeprefix("Value error, "))
        if err["type"] != "value_error":
            got = json.dumps(err.get("input"))
            msg += f" (got {got if len(got) <= 40 else got[:37] + '...'})"
    return InvalidInput(f"{source}: field '{field}': {msg}", field=field, source=source)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    for k in keys:
        if keys.count(k) > 1:
            raise InvalidInput(f"field '{k}' appears twice", field=k)
    return dict(pairs)


def parse_intake(data: bytes | str | Mapping[str, Any], source: str = "intake") -> Intake:
    """Parse an intake from JSON text/bytes or an already decoded mapping.

    Raises :class:`InvalidInput` with ``field`` set (None for a JSON syntax error)."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data, object_pairs_hook=_no_duplicate_keys)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: {exc.message}", field=exc.field, source=source) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise InvalidInput(f"{source}: not valid JSON{where}", source=source) from None
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: the intake must be a JSON object", source=source)
    try:
        return Intake.model_validate(dict(data))
    except ValidationError as exc:
        raise _intake_error(exc, source) from None
