"""From an analysis and an intake to a treatment plan that suggests and explains.

Order of decisions, all driven by the knowledge files:
1. the analysis must be plannable (schema, quality not ``reject``);
2. contraindications answered ``true`` -> ``not_a_candidate`` (each with its reason);
   unanswered ones that apply, unmatched medications, medication categories with a ``review``
   message, unknown allergies and a ``warn`` capture -> ``needs_review``; otherwise ``eligible``;
3. concerns detected by rules -> ingredients mapped to them, minus allergies, ranked by the
   number of concerns covered, then their summed severity, then ingredient id;
4. pre-care (tailored to the medications), post-care, patch test and calendar.
A ``not_a_candidate`` plan keeps its concerns but suggests nothing and schedules nothing.
No dosing anywhere: the practitioner composes the cocktail and decides.
"""
from __future__ import annotations

import datetime as dt
import re
import typing
from dataclasses import dataclass, field

from pipelines.errors import InvalidInput
from pipelines.knowledge import KnowledgeBase, load_knowledge
from pipelines.planning.calendar import Course, build_course
from pipelines.planning.concerns import FACE, DetectedConcern, Evidence, check_analysis, detect_concerns
from pipelines.planning.intake import Intake

PLAN_SCHEMA = "mesoscan.plan/1"
DISCLAIMER = ("Suggestions only: the practitioner examines the patient, composes the cocktail and "
              "decides. mesoscan gives no doses.")


@dataclass(frozen=True)
class Reason:
    """Why a plan is not ``eligible``. ``kind`` is ``contraindication`` or ``review``."""

    code: str
    kind: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict:
        return {"code": self.code, "kind": self.kind, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class Suggestion:
    ingredient: str
    name: str
    family: str
    reason: str
    concerns: tuple[str, ...]
    regions: tuple[str, ...]
    metrics: tuple[Evidence, ...]
    severity: float

    def to_dict(self) -> dict:
        return {"ingredient": self.ingredient, "name": self.name, "family": self.family,
                "reason": self.reason, "concerns": list(self.concerns), "regions": list(self.regions),
                "metrics": [e.to_dict() for e in self.metrics], "severity": self.severity}


@dataclass(frozen=True)
class Exclusion:
    ingredient: str
    name: str
    reason: str
    would_be_suggested: bool

    def to_dict(self) -> dict:
        return {"ingredient": self.ingredient, "name": self.name, "reason": self.reason,
                "would_be_suggested": self.would_be_suggested}


@dataclass(frozen=True)
class Instruction:
    id: str
    text: str
    tailored: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "tailored": self.tailored}


@dataclass(frozen=True)
class Plan:
    status: str
    reasons: tuple[Reason, ...]
    concerns: tuple[DetectedConcern, ...]
    suggestions: tuple[Suggestion, ...]
    excluded: tuple[Exclusion, ...]
    target_regions: tuple[str, ...]
    pre_care: tuple[Instruction, ...]
    post_care: tuple[Instruction, ...]
    patch_test: dict | None
    course: Course | None
    knowledge: dict[str, str] = field(default_factory=dict)
    pipeline_version: str | None = None

    @property
    def calendar(self) -> tuple[dt.date, ...]:
        return self.course.dates if self.course else ()

    def to_dict(self) -> dict:
        return {
            "schema": PLAN_SCHEMA, "status": self.status,
            "reasons": [r.to_dict() for r in self.reasons],
            "concerns": [c.to_dict() for c in self.concerns],
            "suggestions": [s.to_dict() for s in self.suggestions],
            "excluded": [e.to_dict() for e in self.excluded],
            "target_regions": list(self.target_regions),
            "pre_care": [i.to_dict() for i in self.pre_care],
            "post_care": [i.to_dict() for i in self.post_care],
            "patch_test": self.patch_test,
            "calendar": [d.isoformat() for d in self.calendar],
            "course": self.course.to_dict() if self.course else None,
            "knowledge": dict(self.knowledge), "pipeline_version": self.pipeline_version,
            "disclaimer": DISCLAIMER,
        }


def check_intake_fields(kb: KnowledgeBase) -> None:
    """Every contraindication must be an intake field of the right kind, and vice versa."""
    fields = Intake.model_fields
    booleans = {n for n, f in fields.items() if set(typing.get_args(f.annotation)) == {bool, type(None)}}
    source = str(kb.directory / "contraindications.yaml")
    for i, c in enumerate(kb.contraindications.contraindications):
        wanted = booleans if c.effect == "not_a_candidate" else {"allergies"}
        if c.id not in wanted:
            raise InvalidInput(f"{source}: field 'contraindications[{i}].id': '{c.id}' is not an intake "
                               f"field for effect {c.effect} (one of {sorted(wanted)})",
                               field=f"contraindications[{i}].id", source=source)
    missing = booleans - {c.id for c in kb.contraindications.contraindications}
    if missing:
        raise InvalidInput(f"{source}: field 'contraindications': no entry for intake field(s) {sorted(missing)}",
                           field="contraindications", source=source)


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def match_medications(names: list[str], kb: KnowledgeBase) -> dict[str, list[str]]:
    """``{medication as written: [category ids]}``; whole-word, case-insensitive."""
    out = {}
    for name in names:
        padded = f" {_normal(name)} "
        out[name] = [cat.id for cat in kb.medications.categories
                     if any(f" {_normal(n)} " in padded for n in cat.names)]
    return out


def _and_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _screen(intake: Intake, quality: str, meds: dict[str, list[str]], kb: KnowledgeBase) -> list[Reason]:
    """Contraindication and review reasons, contraindications first, in knowledge-file order."""
    contra, review = [], []
    for c in kb.contraindications.contraindications:
        answer = getattr(intake, c.id)
        not_applicable = c.not_applicable_when and intake.sex in c.not_applicable_when.sex
        if c.effect == "not_a_candidate" and answer is True:
            contra.append(Reason(c.id, "contraindication", c.reason, c.id))
        elif answer is None and not not_applicable:
            review.append(Reason("unanswered", "review",
                                 f"The intake does not answer '{c.id}' ({c.label}): ask before treating.", c.id))
    if intake.medications is None:
        review.append(Reason("unanswered", "review", "The intake does not list current medications and "
                             "supplements (use [] for none): ask before treating.", "medications"))
    for name, cats in meds.items():
        if not cats:
            review.append(Reason("unmatched_medication", "review",
                                 f"Medication '{name}' is not in the knowledge base: check it for blood-thinning "
                                 "or skin-sensitising effects.", "medications"))
    categories = {c.id: c for c in kb.medications.categories}
    for cid in dict.fromkeys(c for cats in meds.values() for c in cats):
        if categories[cid].review:
            review.append(Reason(f"medication_{cid}", "review", categories[cid].review, "medications"))
    for allergy in intake.allergies or ():
        if allergy not in kb.ingredient_by_id:
            review.append(Reason("unknown_allergy", "review",
                                 f"Allergy to '{allergy}', which is not an ingredient of the knowledge base: check "
                                 "every product used, the numbing cream included.", "allergies"))
    if quality == "warn":
        review.append(Reason("quality_warn", "review", "The photo passed the capture quality gate with warnings: "
                             "check the measurements against the patient before relying on them.", None))
    return contra + review


def _evidence_text(triggers: list[Evidence]) -> str:
    """``name value op threshold`` per condition, keeping the most extreme value across regions."""
    best: dict[tuple, float] = {}
    for e in triggers:
        key = (e.metric, e.op, e.threshold)
        pick = max if e.op in (">=", ">") else min
        best[key] = pick(best.get(key, e.value), e.value)
    parts = []
    for (metric, op, threshold), value in best.items():
        kind, name = metric.split(".", 1)[0], metric.rsplit(".", 1)[-1]
        parts.append(f"{name}{' score' if kind == 'scores' else ''} {value:g} {op} {threshold:g}")
    return "; ".join(parts)


def suggest(concerns: list[DetectedConcern], kb: KnowledgeBase) -> list[Suggestion]:
    """Ingredients mapped to the detected concerns, ranked; allergies not yet applied."""
    order = {r: i for i, r in enumerate(kb.region_order)}
    covered: dict[str, list[tuple[DetectedConcern, str, tuple[str, ...]]]] = {}
    for concern in concerns:
        for entry in kb.mapping.mapping.get(concern.id, ()):
            reach = kb.ingredient_regions(entry.ingredient)
            regions = tuple(r for r in concern.regions if r in reach)
            if regions:
                covered.setdefault(entry.ingredient, []).append((concern, entry.why, regions))
    out = []
    for ing_id, items in covered.items():
        ing = kb.ingredient_by_id[ing_id]
        sentences, metrics = [], []
        for concern, why, regions in items:
            triggers = [e for e in concern.triggers if e.region in regions or e.region == FACE]
            where = ", ".join(kb.region_label(r) for r in regions)
            sentences.append(f"{concern.label} on {where} ({_evidence_text(triggers)}): {why}.")
            metrics.extend(triggers)
        regions = sorted({r for _, _, rs in items for r in rs}, key=order.__getitem__)
        out.append(Suggestion(
            ingredient=ing_id, name=ing.name, family=ing.family, reason=" ".join(sentences),
            concerns=tuple(c.id for c, _, _ in items), regions=tuple(regions),
            metrics=tuple(dict.fromkeys(metrics)), severity=round(sum(c.severity for c, _, _ in items), 1)))
    out.sort(key=lambda s: (-len(s.concerns), -s.severity, s.ingredient))
    return out


def _pre_care(meds: dict[str, list[str]], start: dt.date | None, kb: KnowledgeBase) -> list[Instruction]:
    categories = {c.id: c for c in kb.medications.categories}
    out = []
    for item in kb.care.pre_care:
        taking = [name for name, cats in meds.items() if any(item.id in categories[c].pre_care for c in cats)]
        t = item.tailored
        if t is None or not taking:
            out.append(Instruction(item.id, item.text))
        elif start is not None and t.text_dated is not None:
            stop = start - dt.timedelta(days=t.stop_days_before)
            out.append(Instruction(item.id, t.text_dated.format(medications=_and_join(taking),
                                                                stop_date=stop.isoformat()), True))
        else:
            out.append(Instruction(item.id, t.text.format(medications=_and_join(taking)), True))
    return out


def _patch_test(start: dt.date | None, kb: KnowledgeBase) -> dict:
    pt = kb.care.patch_test
    if start is None:
        return {"text": pt.text, "date": None, "hours_before": pt.hours_before}
    day = start - dt.timedelta(hours=pt.hours_before)
    return {"text": pt.text_dated.format(date=day.isoformat(), first_session=start.isoformat()),
            "date": day.isoformat(), "hours_before": pt.hours_before}


def make_plan(analysis: dict, intake: Intake, *, start: dt.date | None = None,
              template: str = "standard", kb: KnowledgeBase | None = None) -> Plan:
    """The plan for one analysis document and one intake (deterministic for equal inputs).

    Raises :class:`pipelines.planning.concerns.RejectedAnalysis` for a rejected capture and
    :class:`InvalidInput` for a malformed analysis or an unknown ``template``."""
    kb = kb or load_knowledge()
    check_intake_fields(kb)
    if template not in kb.courses.templates:
        raise InvalidInput(f"unknown course template '{template}' (one of {', '.join(kb.courses.templates)})",
                           field="template")
    quality = check_analysis(analysis)
    concerns = detect_concerns(analysis, kb)
    meds = match_medications(intake.medications or [], kb)
    reasons = _screen(intake, quality, meds, kb)
    common = dict(concerns=tuple(concerns), knowledge=kb.versions,
                  pipeline_version=analysis.get("pipeline_version"))
    if any(r.kind == "contraindication" for r in reasons):
        return Plan(status="not_a_candidate", reasons=tuple(reasons), suggestions=(), excluded=(),
                    target_regions=(), pre_care=(), post_care=(), patch_test=None, course=None, **common)

    ranked = suggest(concerns, kb)
    allergy = next(c for c in kb.contraindications.contraindications if c.effect == "exclude_ingredient")
    allergic = [a for a in dict.fromkeys(intake.allergies or ()) if a in kb.ingredient_by_id]
    suggested = {s.ingredient for s in ranked}
    excluded = tuple(Exclusion(a, kb.ingredient_by_id[a].name, allergy.reason, a in suggested) for a in allergic)
    kept = tuple(s for s in ranked if s.ingredient not in allergic)
    if ranked and not kept:
        reasons.append(Reason("all_excluded", "review", "Every ingredient suggested for the detected concerns "
                              "is excluded by an allergy: the practitioner must choose another approach.", "allergies"))
    order = {r: i for i, r in enumerate(kb.region_order)}
    targets = tuple(sorted({r for s in kept for r in s.regions}, key=order.__getitem__))
    return Plan(
        status="needs_review" if reasons else "eligible", reasons=tuple(reasons),
        suggestions=kept, excluded=excluded, target_regions=targets,
        pre_care=tuple(_pre_care(meds, start, kb)),
        post_care=tuple(Instruction(i.id, i.text) for i in kb.care.post_care),
        patch_test=_patch_test(start, kb), course=build_course(template, kb.courses.templates[template], start),
        **common)
