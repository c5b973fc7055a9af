"""Progress across visits: series, changes, the real-change decision and one-line summaries.

Pure: observations (one per visit: its date and the scores of its analysis) and the measurement
noise (:mod:`pipelines.calibration`) in, dataclasses out. Nothing here reads a database.

    from pipelines.calibration import load_repeatability
    from pipelines.progress import Observation, compute_progress
    obs = [Observation.from_document(date, analysis_document, visit_id=...) for ...]
    progress = compute_progress(obs, load_repeatability())
    progress.get("wrinkles", "forehead").since_baseline    # Change(delta=-8.0, pct=-18.2, real=True, ...)
    [s.text for s in progress.summaries]                 # "forehead wrinkles -18 % since baseline ..."

Rules
-----
* A **series** is one measure across the patient's visits, in date order: a whole-face score
  (``scores.<family>``), a region's score (``regions.<region>.scores.<family>``) or, optionally, a
  whole-face metric (``metrics.<family>.<name>``). A visit where the measure is missing (region
  hidden, metric not computed) has ``None`` there and is skipped by the changes.
* **Baseline** is the first visit with a value; **previous** is the last value before the latest.
* A **change** ``later - earlier`` is called **real** only when ``|delta| > MDC95`` of that
  measure (the harness's minimal detectable change: two photos of an unchanged face differ by
  more than that less than 5 % of the time). With no known MDC, ``real`` is ``None``: reported,
  not judged.
* Scores are severities (0 none - 100 most severe): a real fall is ``improved``, a real rise
  ``worsened``. Metrics have no agreed direction here, so they get ``changed`` instead.
* The relative change ``pct`` is against the earlier value, and left out (``None``) when the
  earlier value is too close to 0 for a percentage to mean anything (under 1 score point).
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from pipelines.calibration import Repeatability
from pipelines.errors import InvalidInput
from pipelines.regions import REGION_NAMES

SCORE_FAMILIES = ("pigmentation", "texture", "wrinkles", "overall")
REGION_FAMILIES = ("pigmentation", "texture", "wrinkles")
FACE = "face"                    # region name of whole-face series
CONCERN_SCORE = 40.0             # without a plan naming the concerns: a region scoring this at baseline is summarised
PCT_FLOOR_SCORE = 1.0            # no percentage against a score under 1 point

FAMILY_LABELS = {"pigmentation": "pigmentation", "texture": "texture", "wrinkles": "wrinkles",
                 "overall": "overall severity"}

# verdicts of a change
IMPROVED, WORSENED, CHANGED, NO_REAL_CHANGE, UNKNOWN = "improved", "worsened", "changed", "no_real_change", "unknown"
INSUFFICIENT = "insufficient_data"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Observation:
    """The measurements of one visit.

    ``scores``: family -> 0-100 (None = not scored). ``region_scores``: region -> family -> 0-100;
    regions that were hidden at this visit are simply absent. ``metrics``: ``"<family>.<name>"``
    -> value in the metric's unit.
    """

    date: dt.date
    visit_id: int | None = None
    scores: Mapping[str, float | None] = field(default_factory=dict)
    region_scores: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    pipeline_version: str | None = None
    analysis_id: int | None = None
    colour_reference: str | None = None   # what set white balance: colour_card, sclera, ...

    @classmethod
    def from_document(cls, date: dt.date, document: Mapping[str, Any], *, visit_id: int | None = None,
                      analysis_id: int | None = None, with_metrics: bool = True) -> "Observation":
        """Read an analysis document (schema ``mesoscan.analysis/1``). Regions marked
        ``measurable: false`` are left out; non-numeric values become None."""
        if not isinstance(document, Mapping):
            raise InvalidInput("analysis: must be a JSON object", field=None, source="analysis")
        scores = document.get("scores") or {}
        regions = document.get("regions") or {}
        region_scores = {}
        for name, reg in regions.items():
            if isinstance(reg, Mapping) and reg.get("measurable", True) is not False and reg.get("scores"):
                region_scores[name] = {k: _finite(v) for k, v in reg["scores"].items()}
        metrics = flatten_metrics(document.get("metrics")) if with_metrics else {}
        return cls(date=date, visit_id=visit_id, analysis_id=analysis_id,
                   scores={k: _finite(v) for k, v in scores.items()} if isinstance(scores, Mapping) else {},
                   region_scores=region_scores, metrics=metrics,
                   pipeline_version=document.get("pipeline_version"),
                   colour_reference=(document.get("colour_correction") or {}).get("reference"))


def flatten_metrics(metrics: Any) -> dict[str, float | None]:
    """``{"texture": {"roughness": 2.1}}`` -> ``{"texture.roughness": 2.1}`` (numbers only)."""
    out: dict[str, float | None] = {}
    if not isinstance(metrics, Mapping):
        return out
    for family, values in metrics.items():
        if isinstance(values, Mapping):
            for name, value in values.items():
                v = _finite(value)
                if v is not None or value is None:
                    out[f"{family}.{name}"] = v
    return out


# --------------------------------------------------------------------------- changes


class Change(NamedTuple):
    """``later - earlier`` of one measure, in its unit, judged against its MDC95.

    ``real``: ``|delta| > mdc`` (None when the MDC is unknown). ``pct``: relative to ``earlier``
    (None when ``earlier`` is too close to 0). ``verdict``: improved / worsened (severity scores),
    changed (metrics), no_real_change, or unknown (no MDC). (A named tuple: a 50-visit patient
    has thousands of these, and they are made on every progress request.)
    """

    earlier: float
    later: float
    delta: float
    pct: float | None
    mdc: float | None
    real: bool | None
    verdict: str
    earlier_date: dt.date
    later_date: dt.date

    def to_dict(self) -> dict:
        return {"earlier": self.earlier, "later": self.later, "delta": round(self.delta, 4),
                "pct": None if self.pct is None else round(self.pct, 2), "mdc95": self.mdc,
                "real": self.real, "verdict": self.verdict,
                "earlier_date": self.earlier_date.isoformat(), "later_date": self.later_date.isoformat()}

    def brief(self) -> dict:
        """The change without what its series already says (values, dates, MDC)."""
        return {"delta": round(self.delta, 4), "pct": None if self.pct is None else round(self.pct, 2),
                "real": self.real, "verdict": self.verdict}


def judge_change(earlier: float, later: float, mdc: float | None, *, severity: bool = True,
                 pct_floor: float = PCT_FLOOR_SCORE, earlier_date: dt.date | None = None,
                 later_date: dt.date | None = None) -> Change:
    """The change from ``earlier`` to ``later`` and whether it is beyond the noise ``mdc``.

    ``severity``: higher is worse (scores), so a real fall is ``improved``. ``pct_floor``: no
    percentage when ``|earlier|`` is below it."""
    earlier, later = float(earlier), float(later)
    delta = later - earlier
    pct = 100.0 * delta / earlier if abs(earlier) >= pct_floor and earlier != 0 else None
    if mdc is None:
        real, verdict = None, UNKNOWN
    elif abs(delta) > mdc:
        real = True
        verdict = (IMPROVED if delta < 0 else WORSENED) if severity else CHANGED
    else:
        real, verdict = False, NO_REAL_CHANGE
    undated = dt.date.min
    return Change(earlier, later, delta, pct, mdc, real, verdict, earlier_date or undated, later_date or undated)


# --------------------------------------------------------------------------- series


@dataclass(frozen=True)
class Series:
    """One measure across visits. ``values[i]`` belongs to ``dates[i]`` (None: not measured).

    ``kind``: "score" (whole face), "region_score" or "metric". ``region``: ``"face"`` for whole-face
    series. ``mdc``: MDC95 in the measure's unit (None: unknown). ``severity``: higher is worse.
    ``measured``: indices of the visits with a value. ``since_baseline`` / ``since_previous``:
    the latest value's change from the baseline and from the value before it. ``from_baseline[i]``
    and ``from_previous[i]``: the changes at every visit i (None where there is no value or nothing
    to compare with); worked out on first use, since listing progress needs only the latest.
    """

    key: str
    kind: str
    family: str
    region: str
    name: str
    dates: tuple[dt.date, ...]
    visit_ids: tuple[int | None, ...]
    values: tuple[float | None, ...]
    mdc: float | None
    measured: tuple[int, ...]
    severity: bool = True
    pct_floor: float = PCT_FLOOR_SCORE

    @property
    def baseline(self) -> float | None:
        m = self.measured
        return self.values[m[0]] if m else None

    @property
    def latest(self) -> float | None:
        m = self.measured
        return self.values[m[-1]] if m else None

    def _judge(self, i: int, j: int) -> Change:
        return judge_change(self.values[i], self.values[j], self.mdc, severity=self.severity,
                            pct_floor=self.pct_floor, earlier_date=self.dates[i], later_date=self.dates[j])

    @cached_property
    def since_baseline(self) -> Change | None:
        m = self.measured
        return self._judge(m[0], m[-1]) if len(m) >= 2 else None

    @cached_property
    def since_previous(self) -> Change | None:
        m = self.measured
        return self._judge(m[-2], m[-1]) if len(m) >= 2 else None

    @cached_property
    def from_baseline(self) -> tuple[Change | None, ...]:
        m = self.measured
        return self._changes([(m[0], j) for j in m[1:]])

    @cached_property
    def from_previous(self) -> tuple[Change | None, ...]:
        m = self.measured
        return self._changes(list(zip(m, m[1:])))

    def _changes(self, pairs: list[tuple[int, int]]) -> tuple[Change | None, ...]:
        """judge_change over (earlier, later) index pairs, inlined (thousands per patient)."""
        out: list[Change | None] = [None] * len(self.values)
        vals, dates, mdc, floor = self.values, self.dates, self.mdc, self.pct_floor
        down, up = (IMPROVED, WORSENED) if self.severity else (CHANGED, CHANGED)
        for i, j in pairs:
            e, v = vals[i], vals[j]
            delta = v - e
            pct = 100.0 * delta / e if e != 0 and abs(e) >= floor else None
            if mdc is None:
                real, verdict = None, UNKNOWN
            elif abs(delta) > mdc:
                real, verdict = True, (down if delta < 0 else up)
            else:
                real, verdict = False, NO_REAL_CHANGE
            out[j] = Change(e, v, delta, pct, mdc, real, verdict, dates[i], dates[j])
        return tuple(out)

    @property
    def any_real_change(self) -> bool:
        """Some visit differs really from the baseline or from the visit before it."""
        return any(c is not None and c.real for c in (*self.from_baseline, *self.from_previous))

    def to_dict(self, *, points: bool = True) -> dict:
        """JSON-ready, columnar: ``values[i]`` (and with ``points`` the per-visit
        ``from_baseline[i]`` / ``from_previous[i]``, each ``{delta, pct, real, verdict}`` or null)
        belong to the progress document's ``visits[i]``. ``points=False`` leaves the per-visit
        changes out: a 50-visit patient has some 5000 of them."""
        out = {
            "key": self.key, "kind": self.kind, "family": self.family, "region": self.region,
            "name": self.name, "mdc95": self.mdc, "values": list(self.values),
            "baseline": self.baseline, "latest": self.latest,
            "since_baseline": self.since_baseline.to_dict() if self.since_baseline else None,
            "since_previous": self.since_previous.to_dict() if self.since_previous else None,
        }
        if points:
            out["from_baseline"] = [c.brief() if c else None for c in self.from_baseline]
            out["from_previous"] = [c.brief() if c else None for c in self.from_previous]
        return out


def build_series(key: str, kind: str, family: str, region: str, name: str, dates: Sequence[dt.date],
                 values: Sequence[float | None], mdc: float | None, *,
                 visit_ids: Sequence[int | None] | None = None, severity: bool = True,
                 pct_floor: float = PCT_FLOOR_SCORE) -> Series:
    """A :class:`Series` of ``values`` (non-finite and non-numbers become None) at ``dates``."""
    if len(dates) != len(values):
        raise InvalidInput(f"{key}: {len(dates)} dates but {len(values)} values", field=key)
    vals = tuple(_finite(v) for v in values)
    ids = tuple(visit_ids) if visit_ids is not None else (None,) * len(vals)
    measured = tuple(i for i, v in enumerate(vals) if v is not None)
    return Series(key, kind, family, region, name, tuple(dates), ids, vals, mdc, measured, severity, pct_floor)


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Concern:
    """What a summary line is about: a score ``family`` in a ``region`` ("face" = whole face);
    ``label`` is the plan's name for it (e.g. "Fine lines"), if any."""

    family: str
    region: str = FACE
    label: str | None = None


@dataclass(frozen=True)
class Summary:
    key: str
    family: str
    region: str
    label: str | None
    verdict: str
    text: str
    change: Change | None

    def to_dict(self) -> dict:
        return {"key": self.key, "family": self.family, "region": self.region, "label": self.label,
                "verdict": self.verdict, "text": self.text,
                "change": self.change.to_dict() if self.change else None}


def _default_region_label(region: str) -> str:
    try:
        from pipelines.knowledge import load_knowledge

        return load_knowledge().region_label(region)
    except Exception:   # noqa: BLE001 - a label is cosmetic; never fail a report on it
        return region.replace("_", " ")


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def summarize(series: Series, *, label: str | None = None,
              region_label: Callable[[str], str] = _default_region_label) -> Summary:
    """One line on a series, e.g. ``forehead wrinkles -18 % since baseline (44 -> 36),
    beyond measurement noise``."""
    what = f"{region_label(series.region)} {FAMILY_LABELS.get(series.name, series.name)}"
    if series.kind == "metric":
        what = f"{region_label(series.region)} {series.family} {series.name.replace('_', ' ')}"
    if label:
        what += f" ({label})"
    change = series.since_baseline
    if not series.measured:
        return Summary(series.key, series.family, series.region, label, INSUFFICIENT, f"{what}: not measured", None)
    if change is None:
        text = f"{what} {_fmt(series.latest)} at baseline; no follow-up visit yet"
        return Summary(series.key, series.family, series.region, label, INSUFFICIENT, text, None)
    amount = f"{change.pct:+.0f} %" if change.pct is not None else f"{change.delta:+.1f} points"
    visits = len(series.measured)
    text = f"{what} {amount} since baseline ({_fmt(change.earlier)} -> {_fmt(change.later)} over {visits} visits), "
    if change.real is None:
        text += "measurement noise unknown"
    elif change.real:
        text += "beyond measurement noise"
    else:
        text += "within measurement noise"
    return Summary(series.key, series.family, series.region, label, change.verdict, text, change)


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class VisitPoint:
    date: dt.date
    visit_id: int | None
    analysis_id: int | None
    pipeline_version: str | None


@dataclass(frozen=True)
class Progress:
    """A patient's progress. ``series`` is keyed by ``scores.<family>``,
    ``regions.<region>.scores.<family>`` and ``metrics.<family>.<name>``, in that order."""

    visits: tuple[VisitPoint, ...]
    series: Mapping[str, Series]
    summaries: tuple[Summary, ...]
    noise_provisional: bool
    noise_pipeline_version: str
    notes: tuple[str, ...] = ()

    def get(self, family: str, region: str = FACE) -> Series | None:
        """The score series of ``family`` in ``region`` ("face" = whole face)."""
        key = f"scores.{family}" if region == FACE else f"regions.{region}.scores.{family}"
        return self.series.get(key)

    def metric(self, key: str) -> Series | None:
        return self.series.get(f"metrics.{key}")

    @property
    def real_changes(self) -> list[Series]:
        return [s for s in self.series.values() if s.since_baseline is not None and s.since_baseline.real]

    def to_dict(self, *, points: bool = True) -> dict:
        """JSON-ready (schema ``mesoscan.progress/1``); see :meth:`Series.to_dict` for ``points``."""
        return {
            "schema": "mesoscan.progress/1",
            "visits": [{"date": v.date.isoformat(), "visit_id": v.visit_id, "analysis_id": v.analysis_id,
                        "pipeline_version": v.pipeline_version} for v in self.visits],
            "noise": {"provisional": self.noise_provisional, "pipeline_version": self.noise_pipeline_version},
            "summaries": [s.to_dict() for s in self.summaries],
            "series": {k: s.to_dict(points=points) for k, s in self.series.items()},
            "notes": list(self.notes),
        }


def _ordered_regions(observations: Iterable[Observation]) -> list[str]:
    seen = {r for o in observations for r in o.region_scores}
    known = [r for r in REGION_NAMES if r in seen]
    return known + sorted(seen - set(known))


def compute_progress(observations: Sequence[Observation], noise: Repeatability, *,
                     concerns: Sequence[Concern] | None = None, with_metrics: bool = True,
                     region_label: Callable[[str], str] = _default_region_label) -> Progress:
    """Series, changes and summaries of a patient's visits (any order; sorted by date, then
    visit id). Summaries: every whole-face score, then ``concerns`` (e.g. the baseline plan's,
    see :func:`concerns_from_plan`) or by default each region score that was a concern at
    baseline (>= 40) or has really changed since."""
    obs = sorted(observations, key=lambda o: (o.date, o.visit_id if o.visit_id is not None else -1))
    dates = [o.date for o in obs]
    ids = [o.visit_id for o in obs]
    series: dict[str, Series] = {}
    for fam in SCORE_FAMILIES:
        values = [o.scores.get(fam) for o in obs]
        if any(_finite(v) is not None for v in values):
            series[f"scores.{fam}"] = build_series(f"scores.{fam}", "score", fam, FACE, fam, dates, values,
                                                   noise.score_mdc(fam), visit_ids=ids)
    for region in _ordered_regions(obs):
        fams = [f for f in REGION_FAMILIES if any(f in o.region_scores.get(region, {}) for o in obs)]
        fams += sorted({f for o in obs for f in o.region_scores.get(region, {})} - set(fams))
        for fam in fams:
            values = [o.region_scores.get(region, {}).get(fam) for o in obs]
            if any(_finite(v) is not None for v in values):
                key = f"regions.{region}.scores.{fam}"
                series[key] = build_series(key, "region_score", fam, region, fam, dates, values,
                                           noise.region_score_mdc(fam), visit_ids=ids)
    if with_metrics:
        keys = sorted({k for o in obs for k in o.metrics})
        for mkey in keys:
            values = [o.metrics.get(mkey) for o in obs]
            if any(_finite(v) is not None for v in values):
                family, _, name = mkey.partition(".")
                series[f"metrics.{mkey}"] = build_series(f"metrics.{mkey}", "metric", family, FACE, name, dates,
                                                         values, noise.metric_mdc(mkey), visit_ids=ids,
                                                         severity=False, pct_floor=1e-9)
    summaries = _summaries(series, concerns, region_label)
    notes = []
    versions = sorted({o.pipeline_version for o in obs if o.pipeline_version})
    if len(versions) > 1:
        notes.append(f"visits were analysed by different pipeline versions ({', '.join(versions)}): "
                     "scores may not be comparable; re-score the archive")
    references = {o.colour_reference for o in obs if o.colour_reference}
    if "colour_card" in references and len(references) > 1:
        notes.append("some visits took white balance and exposure from a colour card, others did not: "
                     "pigmentation and colour values are not comparable across them; photograph every "
                     "visit the same way")
    if noise.provisional:
        notes.append("measurement noise is provisional (not yet measured by the repeatability harness)")
    elif versions and noise.pipeline_version and noise.pipeline_version not in versions:
        notes.append(f"measurement noise was measured on pipeline {noise.pipeline_version}, "
                     f"the analyses are of {', '.join(versions)}")
    visits = tuple(VisitPoint(o.date, o.visit_id, o.analysis_id, o.pipeline_version) for o in obs)
    return Progress(visits, series, summaries, noise.provisional, noise.pipeline_version, tuple(notes))


def _summaries(series: Mapping[str, Series], concerns: Sequence[Concern] | None,
               region_label: Callable[[str], str]) -> tuple[Summary, ...]:
    """Every whole-face score first; then the given concerns, or by default each region score
    that was a concern at baseline (>= ``CONCERN_SCORE``) or has really changed since."""
    face_order = ("overall", *REGION_FAMILIES)
    labels: dict[str, str | None] = {f"scores.{f}": None for f in face_order if f"scores.{f}" in series}
    if concerns is None:
        for key, s in series.items():
            change = s.since_baseline
            if s.kind == "region_score" and ((s.baseline is not None and s.baseline >= CONCERN_SCORE)
                                             or (change is not None and change.real)):
                labels[key] = None
    else:
        for c in concerns:
            key = f"scores.{c.family}" if c.region == FACE else f"regions.{c.region}.scores.{c.family}"
            if key in series and labels.get(key) is None:
                labels[key] = c.label
    return tuple(summarize(series[k], label=label, region_label=region_label) for k, label in labels.items())


def concerns_from_plan(plan: Mapping[str, Any]) -> list[Concern]:
    """The (family, region) pairs of a plan document's detected concerns (``Plan.to_dict()``),
    with the family taken from the concern's severity score in the knowledge base."""
    from pipelines.knowledge import load_knowledge

    kb = load_knowledge()
    out: list[Concern] = []
    for c in plan.get("concerns") or ():
        spec = kb.concerns.concerns.get(c.get("id"))
        severity = getattr(spec, "severity", None) or ""
        family = severity.split(".", 1)[1] if severity.startswith("scores.") else None
        if family is None:
            continue
        for region in c.get("regions") or ():
            concern = Concern(family, region, c.get("label"))
            if concern not in out:
                out.append(concern)
    return out
