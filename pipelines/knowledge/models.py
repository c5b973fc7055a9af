"""Pydantic schemas of the knowledge files (one model per YAML file).

The models check each file's own structure: types, allowed values, the rule language of
``concerns.yaml`` and the template fields of ``care.yaml``. References between files
(an ingredient's family, a mapping's ingredient, a category's pre-care item) are checked by
:mod:`pipelines.knowledge.loader` once every file has been read.
"""
from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, StringConstraints(min_length=1)]
Version = Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
Scope = Literal["face", "region"]
Op = Literal[">=", ">", "<=", "<"]
Sex = Literal["female", "male", "other"]

# The metric names of the analysis document (schema mesoscan.analysis/1), per family. Rule paths
# are checked against these so that a misspelt metric fails at load instead of never firing.
ANALYSIS_METRICS: dict[str, tuple[str, ...]] = {
    "pigmentation": ("ita_deg", "melanin_index", "erythema_index", "spot_count", "spot_area_pct",
                     "spot_contrast_de", "tone_unevenness", "red_area_pct"),
    "texture": ("roughness", "pore_density_per_cm2", "pore_diameter_mm", "shine_pct"),
    "wrinkles": ("wrinkle_density_pct", "wrinkle_length_mm_per_cm2", "wrinkle_depth_index",
                 "wrinkle_count", "wrinkle_depth_weighted_length"),
}
REGION_SCORES = ("pigmentation", "texture", "wrinkles")
FACE_SCORES = REGION_SCORES + ("overall",)


def metric_path_error(path: str, scope: str | None) -> str | None:
    """Why ``path`` is not a numeric path of the analysis document at ``scope``, or None.

    ``scope`` None accepts a path valid at either scope."""
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "metrics":
        if parts[2] in ANALYSIS_METRICS.get(parts[1], ()):
            return None
    elif len(parts) == 2 and parts[0] == "scores":
        allowed = REGION_SCORES if scope == "region" else FACE_SCORES
        if parts[1] in allowed:
            return None
        if parts[1] in FACE_SCORES:
            return f"'{path}' exists only at face scope"
    return (f"unknown metric path '{path}': expected metrics.<family>.<name> "
            f"({', '.join(ANALYSIS_METRICS)}) or scores.<{'|'.join(FACE_SCORES)}>")


def template_fields(text: str) -> set[str]:
    """The ``{name}`` fields of a str.format template."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class Strict(BaseModel):
    """Base of every knowledge model: unknown keys and loose types are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(Strict):
    id: Id
    title: Text
    ref: Text


class KnowledgeFile(Strict):
    """Fields every knowledge file starts with."""

    version: Version
    sources: list[Source] = Field(min_length=1)


# --- concerns.yaml -----------------------------------------------------------------------------

class RuleNode(Strict):
    """A condition ``{metric, op, value}`` or a group ``{any: [...]}`` / ``{all: [...]}``."""

    metric: str | None = None
    op: Op | None = None
    value: float | None = None
    scope: Scope | None = None
    any_: list[RuleNode] | None = Field(None, alias="any", min_length=1)
    all_: list[RuleNode] | None = Field(None, alias="all", min_length=1)

    @property
    def children(self) -> list[RuleNode] | None:
        return self.any_ if self.any_ is not None else self.all_

    @model_validator(mode="after")
    def _one_form(self) -> RuleNode:
        leaf = (self.metric, self.op, self.value)
        groups = [g for g in (self.any_, self.all_) if g is not None]
        if groups:
            if len(groups) > 1 or any(x is not None for x in leaf):
                raise ValueError("a node is either a condition (metric, op, value) or one of any/all")
        elif any(x is None for x in leaf):
            raise ValueError("a condition needs metric, op and value (or use any/all)")
        elif (err := metric_path_error(self.metric, self.scope)) is not None:
            raise ValueError(err)
        return self


class Trigger(RuleNode):
    """A top-level rule of a concern; ``scope`` says where it is tested."""

    scope: Scope

    @model_validator(mode="after")
    def _scopes(self) -> Trigger:
        def walk(node: RuleNode, path: str):
            if node.metric is not None:
                scope = node.scope or self.scope
                if self.scope == "face" and scope == "region":
                    raise ValueError(f"{path or 'condition'}: region-scope condition in a face-scope trigger")
                if (err := metric_path_error(node.metric, scope)) is not None:
                    raise ValueError(f"{path or 'metric'}: {err}")
            for i, child in enumerate(node.children or ()):
                walk(child, f"{path}{'.' if path else ''}{'any' if node.any_ is not None else 'all'}[{i}]")

        walk(self, "")
        return self


class Concern(Strict):
    label: Text
    description: Text
    source: Id
    severity: str | None = None
    explain: list[str] = []
    detect: list[Trigger] = []

    @property
    def measured(self) -> bool:
        return bool(self.detect)

    @model_validator(mode="after")
    def _measured(self) -> Concern:
        if self.detect and self.severity is None:
            raise ValueError("a detected concern needs `severity` (a scores.<family> path)")
        if self.severity is not None:
            if not self.detect:
                raise ValueError("`severity` given for a concern without `detect` rules")
            if not self.severity.startswith("scores.") or metric_path_error(self.severity, "region"):
                raise ValueError(f"severity '{self.severity}' must be a region score path: scores.<{'|'.join(REGION_SCORES)}>")
        for path in self.explain:
            if (err := metric_path_error(path, None)) is not None:
                raise ValueError(f"explain: {err}")
        return self


class RegionVocabulary(Strict):
    face: list[Id] = Field(min_length=1)
    other: list[Id] = []
    labels: dict[str, Text]

    @model_validator(mode="after")
    def _complete(self) -> RegionVocabulary:
        names = list(self.face) + list(self.other)
        if len(set(names)) != len(names) or "face" in names:
            raise ValueError("region names must be unique and must not be 'face' (the whole-face group)")
        missing = [n for n in ["face", *names] if n not in self.labels]
        if missing:
            raise ValueError(f"labels missing for: {', '.join(missing)}")
        return self


class ConcernsFile(KnowledgeFile):
    regions: RegionVocabulary
    concerns: dict[Id, Concern] = Field(min_length=1)


# --- ingredients.yaml / mapping.yaml -------------------------------------------------------------

class Family(Strict):
    id: Id
    label: Text
    source: Id
    notes: Text | None = None


class Ingredient(Strict):
    id: Id
    name: Text
    family: Id
    concerns: list[Id] = Field(min_length=1)
    regions: list[Id] = Field(min_length=1)
    notes: Text
    source: Id


class IngredientsFile(KnowledgeFile):
    families: list[Family] = Field(min_length=1)
    ingredients: list[Ingredient] = Field(min_length=1)


class MappingEntry(Strict):
    ingredient: Id
    why: Text
    source: Id


class MappingFile(KnowledgeFile):
    mapping: dict[Id, list[MappingEntry]] = Field(min_length=1)


# --- contraindications.yaml / medications.yaml ---------------------------------------------------

class NotApplicable(Strict):
    sex: list[Sex] = Field(min_length=1)


class Contraindication(Strict):
    id: Id
    label: Text
    effect: Literal["not_a_candidate", "exclude_ingredient"]
    reason: Text
    not_applicable_when: NotApplicable | None = None
    source: Id


class ContraindicationsFile(KnowledgeFile):
    contraindications: list[Contraindication] = Field(min_length=1)


class MedicationCategory(Strict):
    id: Id
    label: Text
    names: list[Annotated[str, StringConstraints(min_length=2)]] = Field(min_length=1)
    pre_care: list[Id] = []
    review: Text | None = None
    source: Id


class MedicationsFile(KnowledgeFile):
    categories: list[MedicationCategory] = Field(min_length=1)


# --- care.yaml -----------------------------------------------------------------------------------

def _check_fields(text: str, allowed: set[str], what: str) -> None:
    unknown = template_fields(text) - allowed
    if unknown:
        raise ValueError(f"{what}: unknown template field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


class Tailored(Strict):
    text: Text
    text_dated: Text | None = None
    stop_days_before: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _templates(self) -> Tailored:
        _check_fields(self.text, {"medications"}, "text")
        if self.text_dated is not None:
            if self.stop_days_before is None:
                raise ValueError("text_dated needs stop_days_before")
            _check_fields(self.text_dated, {"medications", "stop_date"}, "text_dated")
        return self


class CareItem(Strict):
    id: Id
    text: Text
    source: Id


class PreCareItem(CareItem):
    tailored: Tailored | None = None


class PatchTest(Strict):
    hours_before: int = Field(ge=24, multiple_of=24)
    text: Text
    text_dated: Text
    source: Id

    @model_validator(mode="after")
    def _templates(self) -> PatchTest:
        _check_fields(self.text, set(), "text")
        _check_fields(self.text_dated, {"date", "first_session"}, "text_dated")
        return self


class CareFile(KnowledgeFile):
    pre_care: list[PreCareItem] = Field(min_length=1)
    post_care: list[CareItem] = Field(min_length=1)
    patch_test: PatchTest


# --- courses.yaml / devices.yaml -----------------------------------------------------------------

class Interval(Strict):
    """A calendar step: exactly one of days, weeks, months."""

    days: int | None = Field(None, ge=1)
    weeks: int | None = Field(None, ge=1)
    months: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Interval:
        if sum(x is not None for x in (self.days, self.weeks, self.months)) != 1:
            raise ValueError("an interval has exactly one of days, weeks, months")
        return self

    def approx_days(self) -> float:
        return self.days or (self.weeks or 0) * 7 or (self.months or 0) * 30.44


class SessionRange(Strict):
    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SessionRange:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class Maintenance(Strict):
    description: Text
    after_min: Interval
    after_max: Interval

    @model_validator(mode="after")
    def _ordered(self) -> Maintenance:
        if self.after_max.approx_days() < self.after_min.approx_days():
            raise ValueError("after_max must not be shorter than after_min")
        return self


class CourseTemplate(Strict):
    label: Text
    description: Text
    sessions: SessionRange
    interval: Interval
    maintenance: Maintenance
    source: Id


class CoursesFile(KnowledgeFile):
    templates: dict[Id, CourseTemplate] = Field(min_length=1)


class Device(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]+$")]
    name: Text
    kind: Id
    needle_free: bool | None = None
    notes: Text | None = None
    source: Id


class DevicesFile(KnowledgeFile):
    devices: list[Device] = Field(min_length=1)
