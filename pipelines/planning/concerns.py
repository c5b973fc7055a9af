"""Detect concerns in an analysis document with the rules of ``concerns.yaml``.

Nothing here knows a concern by name: each concern's triggers are evaluated as written (see the
rule language at the top of concerns.yaml). A detected concern keeps the conditions that held,
with the measured values and the region, so every suggestion can say why it was made.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

from pipelines.errors import ImageRejected, InvalidInput
from pipelines.knowledge import KnowledgeBase, load_knowledge
from pipelines.knowledge.models import RuleNode

ANALYSIS_SCHEMA = "mesoscan.analysis/1"
FACE = "face"  # the region name of whole-face findings
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class RejectedAnalysis(ImageRejected):
    """The analysis failed the capture quality gate: no plan is made from it; retake the photo."""

    def __init__(self, message: str):
        super().__init__("analysis_rejected", message, retake=True)


@dataclass(frozen=True)
class Evidence:
    """One measured value behind a concern. ``op``/``threshold`` are None for explanatory values."""

    metric: str
    value: float
    region: str
    op: str | None = None
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "region": self.region,
                "op": self.op, "threshold": self.threshold}


@dataclass(frozen=True)
class DetectedConcern:
    """A concern found in the analysis: where, how severe (0-100), and the evidence."""

    id: str
    label: str
    severity: float
    regions: tuple[str, ...]
    evidence: tuple[Evidence, ...]

    @property
    def triggers(self) -> tuple[Evidence, ...]:
        """The conditions that held (evidence with a threshold)."""
        return tuple(e for e in self.evidence if e.op is not None)

    def to_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "severity": self.severity,
                "regions": list(self.regions), "evidence": [e.to_dict() for e in self.evidence]}


def check_analysis(doc: Any) -> str:
    """Validate the parts of an analysis document the planner relies on; return quality status.

    Raises :class:`InvalidInput` for a malformed document and :class:`RejectedAnalysis` when the
    capture quality is ``reject``."""
    if not isinstance(doc, dict):
        raise InvalidInput("analysis: must be a JSON object", field=None, source="analysis")
    if doc.get("schema") != ANALYSIS_SCHEMA:
        raise InvalidInput(f"analysis: schema must be '{ANALYSIS_SCHEMA}' (got {doc.get('schema')!r})",
                           field="schema", source="analysis")
    quality = doc.get("quality")
    status = quality.get("status") if isinstance(quality, dict) else None
    if status not in ("ok", "warn", "reject"):
        raise InvalidInput(f"analysis: quality.status must be ok, warn or reject (got {status!r})",
                           field="quality.status", source="analysis")
    if status == "reject":
        raise RejectedAnalysis("the photo failed the capture quality gate; retake it before planning")
    for key in ("metrics", "scores", "regions"):
        if not isinstance(doc.get(key), dict):
            raise InvalidInput(f"analysis: '{key}' must be an object", field=key, source="analysis")
    return status


def _value(doc: dict, path: str, where: str) -> float | None:
    """The number at dotted ``path`` of ``doc``; None when absent or null."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        field = path if where == FACE else f"regions.{where}.{path}"
        raise InvalidInput(f"analysis: '{field}' must be a finite number or null (got {node!r})",
                           field=field, source="analysis")
    return float(node)


def _measurable(region: Any) -> bool:
    """A region document present and not marked hidden (``measurable: false``)."""
    return isinstance(region, dict) and region.get("measurable", True) is not False


def _holds(node: RuleNode, docs: dict[str, dict], region: str) -> list[Evidence] | None:
    """Evidence if ``node`` holds in ``region`` (conditions that held), else None."""
    if node.metric is not None:
        where = FACE if node.scope == FACE else region
        value = _value(docs[where], node.metric, where)
        if value is None or not _OPS[node.op](value, node.value):
            return None
        return [Evidence(node.metric, value, where, node.op, node.value)]
    results = [_holds(child, docs, region) for child in node.children]
    if node.all_ is not None and any(r is None for r in results):
        return None
    held = [e for r in results if r is not None for e in r]
    return held if any(r is not None for r in results) else None


def detect_concerns(doc: dict, kb: KnowledgeBase | None = None) -> list[DetectedConcern]:
    """Every measured concern whose rules hold somewhere, in concerns.yaml order.

    ``doc`` is an analysis document (validate it with :func:`check_analysis` first)."""
    kb = kb or load_knowledge()
    face_doc = {"metrics": doc["metrics"], "scores": doc["scores"]}
    regions = doc["regions"]
    found = []
    for cid, concern in kb.concerns.concerns.items():
        fired: dict[str, list[Evidence]] = {}
        for trigger in concern.detect:
            places = [FACE] if trigger.scope == FACE else [r for r in kb.concerns.regions.face if _measurable(regions.get(r))]
            for place in places:
                docs = {FACE: face_doc, place: face_doc if place == FACE else regions[place]}
                held = _holds(trigger, docs, place)
                if held is not None:
                    fired.setdefault(place, []).extend(held)
        if not fired:
            continue
        order = {r: i for i, r in enumerate(kb.region_order)}
        places = sorted(fired, key=order.__getitem__)
        severities, evidence = [], []
        for place in places:
            place_doc = face_doc if place == FACE else regions[place]
            severities.append(_value(place_doc, concern.severity, place) or 0.0)
            evidence.extend(fired[place])
            for path in concern.explain:
                if (v := _value(place_doc, path, place)) is not None:
                    evidence.append(Evidence(path, v, place))
        found.append(DetectedConcern(
            id=cid, label=concern.label, severity=round(max(severities), 1), regions=tuple(places),
            evidence=tuple(dict.fromkeys(evidence))))  # de-duplicated, order kept
    return found
