"""A patient's timeline in storage: record a visit (photo -> analysis -> plan) and read the
progress across visits efficiently.

    from service.progress import record_visit, patient_progress
    rec = record_visit(session, storage.blobs, clinic_id, patient_id, date(2025, 3, 3), jpeg_bytes)
    pp = patient_progress(session, clinic_id, patient_id)
    pp.progress.summaries[0].text

Reading progress costs **one query** for the series (plus one small one for the baseline plan's
concerns): the visits of the patient joined to their photos and analyses, returning the
indexed score columns and, extracted inside the database, only the ``scores`` object of each
region (``json_each``/``json_group_object`` on SQLite, ``jsonb_each``/``jsonb_object_agg`` on
PostgreSQL). The full documents (polygons, metrics, quality, tens of kB each) never cross the
wire, so 50 visits cost about as much as a handful. See ``bench/progress.py``.

Which analysis: a photo may have been analysed by several pipeline versions (batch
re-scoring adds rows beside the old ones). Scores of different versions are not comparable, so
one version is used for the whole series: the one that has analysed the most of the patient's
visits (the most recently used on ties), unless the caller names one. For each visit the first
photo (lowest id) with an analysis of that version counts.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.calibration import Repeatability, load_repeatability
from pipelines.errors import InvalidInput, MesoscanError
from pipelines.progress import Concern, Observation, Progress, compute_progress, concerns_from_plan
from service.storage import repository as repo
from service.storage.blobstore import BlobStore, sha256_hex
from service.storage.models import Analysis, Clinic, Patient, Photo, Plan, Visit

DEFAULT_CLINIC = "default"
INTAKE_VERSION = 1
PLAN_VERSION = 1

Analyze = Callable[[bytes], dict]


# --------------------------------------------------------------------------- clinic and patient


def default_clinic(session: Session, name: str = DEFAULT_CLINIC, *, create: bool = True) -> Clinic:
    """The clinic called ``name`` (the lowest id if several), created on first use. The embedded
    single-clinic case (the CLI) keeps everything in the clinic "default"."""
    clinic = session.scalar(sa.select(Clinic).where(Clinic.name == name).order_by(Clinic.id).limit(1))
    if clinic is None:
        if not create:
            raise repo.NotFound(f"no clinic called {name!r}")
        clinic = repo.create_clinic(session, name)
    return clinic


def require_patient(session: Session, clinic_id: int, code: str) -> Patient:
    patient = repo.get_patient_by_code(session, clinic_id, code)
    if patient is None:
        raise repo.NotFound(f"no patient with code {code!r} in this clinic")
    return patient


def visit_on(session: Session, clinic_id: int, patient_id: int, visit_date: dt.date) -> Visit | None:
    """The patient's visit on ``visit_date`` (the first recorded, if several)."""
    return session.scalar(sa.select(Visit).where(Visit.clinic_id == clinic_id, Visit.patient_id == patient_id,
                                                 Visit.visit_date == visit_date).order_by(Visit.id).limit(1))


# --------------------------------------------------------------------------- recording a visit


@dataclass
class RecordedVisit:
    visit: Visit
    photo: Photo
    analysis: Analysis
    plan: Plan | None
    document: dict
    plan_document: dict | None


def _default_analyze(data: bytes) -> dict:
    from pipelines.analysis import analyze_bytes

    return analyze_bytes(data)


def json_safe(value: Any, where: str = "analysis") -> Any:
    """``value`` as plain JSON: numpy scalars and arrays become Python numbers and lists,
    non-finite floats become null (PostgreSQL's JSONB has no NaN). Raises
    :class:`MesoscanError` (``analysis_not_json``) for anything else that JSON cannot hold."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, where) for v in value]
    if type(value).__module__ == "numpy":
        return json_safe(value.tolist() if hasattr(value, "tolist") else value.item(), where)
    raise MesoscanError(f"{where}: {type(value).__name__} is not JSON", code="analysis_not_json")


def record_visit(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, visit_date: dt.date,
                 photo: bytes, *, analyze: Analyze | None = None, intake: Mapping[str, Any] | bytes | None = None,
                 ingredients: Sequence[str] = (), device: str | None = None, regions: Sequence[str] = (),
                 notes: str | None = None, plan: bool = True) -> RecordedVisit:
    """Record a treatment session with its photo: analyse, then store the visit, the photo (its
    metadata stripped), the analysis and a suggested plan.

    Everything that can refuse the input runs before the first write: the analysis (raises
    ``ImageRejected`` for a photo the quality gate refuses), the intake (``InvalidInput``), a
    photo already stored (``repository.Conflict``), a second visit on the same date
    (``Conflict``) and the plan. ``intake``: a new intake to record first (JSON bytes or a
    mapping); otherwise the patient's latest intake is used, or an empty one (the plan then says
    what is unknown). ``plan=False`` skips the plan.

    The rows are written by the repository, each in its own transaction; if a later write fails
    (database or disk error) the rows already written for this visit are deleted again, and the
    photo blob, if it was written, is left for ``mesoscan fsck --remove``.
    """
    from pipelines.planning import make_plan, parse_intake

    if repo.get_patient(session, clinic_id, patient_id) is None:
        raise repo.NotFound(f"patient {patient_id} not found")
    if visit_on(session, clinic_id, patient_id, visit_date) is not None:
        raise repo.Conflict(f"the patient already has a visit on {visit_date.isoformat()}")
    existing = repo.find_photo_by_source(session, clinic_id, sha256_hex(photo))
    if existing is not None:
        raise repo.Conflict("this photo was already stored" +
                            (" for this patient" if existing.patient_id == patient_id else " for another patient"))
    parsed_intake = parse_intake(intake, source="intake") if intake is not None else None
    if parsed_intake is None:
        latest = repo.latest_intake(session, clinic_id, patient_id)
        plan_intake = parse_intake(latest.document if latest else {}, source="stored intake")
    else:
        plan_intake = parsed_intake
    session.commit()                            # end the read transaction before the slow part
    document = json_safe((analyze or _default_analyze)(photo))
    plan_doc = json_safe(make_plan(document, plan_intake, start=visit_date).to_dict()) if plan else None

    if parsed_intake is not None:
        intake_doc = parsed_intake.model_dump(mode="json", by_alias=True, exclude_none=True)
        repo.add_intake(session, clinic_id, patient_id, intake_doc, INTAKE_VERSION)
    visit = repo.add_visit(session, clinic_id, patient_id, visit_date, ingredients=ingredients, device=device,
                           regions=regions, notes=notes)
    written: list[tuple[type, int]] = [(Visit, visit.id)]
    try:
        stored, _created = repo.add_photo(session, blobs, clinic_id, patient_id, photo, visit_id=visit.id)
        written.append((Photo, stored.id))
        analysis = repo.add_analysis(session, clinic_id, stored.id,
                                     str(document.get("pipeline_version") or "unknown"), document)
        written.append((Analysis, analysis.id))
        plan_row = None
        if plan_doc is not None:
            plan_row = repo.add_plan(session, clinic_id, patient_id, plan_doc, PLAN_VERSION, analysis_id=analysis.id)
    except BaseException:
        _undo(session, clinic_id, written)
        raise
    return RecordedVisit(visit, stored, analysis, plan_row, document, plan_doc)


def _undo(session: Session, clinic_id: int, written: list[tuple[type, int]]) -> None:
    """Delete the rows of a half-recorded visit, newest first (best effort)."""
    try:
        session.rollback()
        for model, row_id in reversed(written):
            session.execute(sa.delete(model).where(model.clinic_id == clinic_id, model.id == row_id))
        session.commit()
    except Exception:   # noqa: BLE001 - the original error is the one to report
        session.rollback()


# --------------------------------------------------------------------------- reading the series


@dataclass(frozen=True)
class VisitScores:
    """One (visit, photo, analysis) row of :func:`load_visit_scores`. ``photo_id`` and the
    analysis fields are None for a visit without an analysed photo."""

    visit_id: int
    visit_date: dt.date
    ingredients: tuple[str, ...]
    device: str | None
    photo_id: int | None
    analysis_id: int | None
    pipeline_version: str | None
    analysed_at: dt.datetime | None
    scores: Mapping[str, float | None]
    region_scores: Mapping[str, Mapping[str, float | None]]
    metrics: Mapping[str, Any] | None = None


_SCORE_COLUMNS = ("pigmentation", "texture", "wrinkles", "overall")

_SQL = """
SELECT v.id AS visit_id, v.visit_date, v.ingredients, v.device,
       p.id AS photo_id, a.id AS analysis_id, a.pipeline_version, a.created_at AS analysed_at,
       a.score_pigmentation, a.score_texture, a.score_wrinkles, a.score_overall,
       {region_scores} AS region_scores{metrics}
FROM visit v
LEFT JOIN photo p ON p.clinic_id = v.clinic_id AND p.patient_id = v.patient_id AND p.visit_id = v.id
LEFT JOIN analysis a ON a.clinic_id = p.clinic_id AND a.photo_id = p.id
WHERE v.clinic_id = :clinic_id AND v.patient_id = :patient_id
ORDER BY v.visit_date, v.id, p.id, a.created_at, a.id
"""

_DIALECT = {
    "sqlite": {
        "region_scores": "(SELECT json_group_object(r.key, json_extract(r.value, '$.scores')) "
                         "FROM json_each(a.document, '$.regions') AS r "
                         "WHERE json_extract(r.value, '$.measurable') IS NOT 0 "
                         "AND json_type(r.value, '$.scores') = 'object')",
        "metrics": "json_extract(a.document, '$.metrics')",
    },
    "postgresql": {
        "region_scores": "(SELECT jsonb_object_agg(r.key, r.value -> 'scores') "
                         "FROM jsonb_each(a.document -> 'regions') AS r(key, value) "
                         "WHERE COALESCE(r.value -> 'measurable', 'true'::jsonb) <> 'false'::jsonb "
                         "AND jsonb_typeof(r.value -> 'scores') = 'object')",
        "metrics": "a.document -> 'metrics'",
    },
}


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    return json.loads(value)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def progress_query(dialect: str, *, with_metrics: bool = False, pipeline_version: str | None = None) -> sa.TextClause:
    """The one query behind :func:`load_visit_scores` for ``dialect`` (sqlite or postgresql)."""
    if dialect not in _DIALECT:
        raise RuntimeError(f"unsupported database {dialect}")
    d = _DIALECT[dialect]
    sql = _SQL.format(region_scores=d["region_scores"],
                      metrics=f", {d['metrics']} AS metrics" if with_metrics else "")
    if pipeline_version is not None:   # in the join condition: visits without it stay, as gaps
        sql = sql.replace("AND a.photo_id = p.id", "AND a.photo_id = p.id AND a.pipeline_version = :version")
    return sa.text(sql)


def load_visit_scores(session: Session, clinic_id: int, patient_id: int, *, with_metrics: bool = False,
                      pipeline_version: str | None = None) -> list[VisitScores]:
    """Every visit of the patient with each of its photos' analyses (all pipeline versions, or
    only ``pipeline_version``), in date order, in one query. ``with_metrics`` also brings the
    whole-face ``metrics`` object of each document."""
    dialect = session.get_bind().dialect.name
    params = {"clinic_id": clinic_id, "patient_id": patient_id}
    if pipeline_version is not None:
        params["version"] = pipeline_version
    rows = session.execute(progress_query(dialect, with_metrics=with_metrics, pipeline_version=pipeline_version),
                           params).mappings().all()
    out = []
    for r in rows:
        region_scores = _json(r["region_scores"]) or {}
        analysed_at = r["analysed_at"]
        if isinstance(analysed_at, str):
            analysed_at = dt.datetime.fromisoformat(analysed_at)
        out.append(VisitScores(
            visit_id=r["visit_id"], visit_date=_date(r["visit_date"]),
            ingredients=tuple(_json(r["ingredients"]) or ()), device=r["device"],
            photo_id=r["photo_id"], analysis_id=r["analysis_id"], pipeline_version=r["pipeline_version"],
            analysed_at=analysed_at,
            scores={k: r[f"score_{k}"] for k in _SCORE_COLUMNS},
            region_scores={k: v for k, v in region_scores.items() if isinstance(v, dict)},
            metrics=_json(r["metrics"]) if with_metrics else None,
        ))
    return out


def choose_pipeline_version(rows: Sequence[VisitScores]) -> str | None:
    """The version that analysed the most visits; on ties the one used most recently."""
    visits: dict[str, set[int]] = {}
    latest: dict[str, dt.datetime] = {}
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    for r in rows:
        if r.pipeline_version is None:
            continue
        visits.setdefault(r.pipeline_version, set()).add(r.visit_id)
        at = r.analysed_at or floor
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
        latest[r.pipeline_version] = max(latest.get(r.pipeline_version, floor), at)
    if not visits:
        return None
    return max(visits, key=lambda v: (len(visits[v]), latest[v], v))


@dataclass(frozen=True)
class PatientProgress:
    """:class:`pipelines.progress.Progress` plus what storage knows about each visit."""

    progress: Progress
    pipeline_version: str | None
    visits: tuple[VisitScores, ...]       # one per visit, in date order (analysis fields None: no analysis)
    concerns_from: str                    # "plan" (the baseline plan's concerns) or "default"

    def to_dict(self, *, points: bool = True) -> dict:
        """The progress document (see :meth:`pipelines.progress.Progress.to_dict`) with what
        storage knows of each visit (photo, what was given)."""
        out = self.progress.to_dict(points=points)
        out["pipeline_version"] = self.pipeline_version
        out["concerns_from"] = self.concerns_from
        for v, row in zip(out["visits"], self.visits):
            v["photo_id"] = row.photo_id
            v["ingredients"] = list(row.ingredients)
            v["device"] = row.device
        return out


def baseline_plan(session: Session, clinic_id: int, patient_id: int) -> dict | None:
    """The document of the patient's first plan (the one made at the baseline), or None."""
    return session.scalar(sa.select(Plan.document).where(Plan.clinic_id == clinic_id, Plan.patient_id == patient_id)
                          .order_by(Plan.created_at, Plan.id).limit(1))


def patient_progress(session: Session, clinic_id: int, patient_id: int, *, noise: Repeatability | None = None,
                     concerns: Sequence[Concern] | str | None = "plan", pipeline_version: str | None = None,
                     with_metrics: bool = False) -> PatientProgress:
    """The patient's progress. ``concerns``: "plan" summarises the concerns of the baseline plan
    (falling back to the default choice when there is no plan), None the default choice (see
    :func:`pipelines.progress.compute_progress`), or a list. ``noise`` defaults to the shipped
    repeatability file. Raises ``repository.NotFound`` for a patient not of this clinic."""
    if repo.get_patient(session, clinic_id, patient_id) is None:
        raise repo.NotFound(f"patient {patient_id} not found")
    rows = load_visit_scores(session, clinic_id, patient_id, with_metrics=with_metrics,
                             pipeline_version=pipeline_version)
    version = pipeline_version or choose_pipeline_version(rows)
    per_visit: dict[int, VisitScores] = {}
    for r in rows:
        current = per_visit.get(r.visit_id)
        usable = r.analysis_id is not None and r.pipeline_version == version
        if current is None or (usable and (current.analysis_id is None or current.pipeline_version != version)):
            per_visit[r.visit_id] = r
    visits = []
    for r in per_visit.values():
        if r.pipeline_version != version:          # keep the visit as a gap
            r = VisitScores(r.visit_id, r.visit_date, r.ingredients, r.device, None, None, None, None, {}, {}, None)
        visits.append(r)
    visits.sort(key=lambda r: (r.visit_date, r.visit_id))
    observations = [_observation(r) for r in visits]
    source = "default"
    chosen: Sequence[Concern] | None = None
    if concerns == "plan":
        plan_doc = baseline_plan(session, clinic_id, patient_id)
        if plan_doc:
            chosen, source = concerns_from_plan(plan_doc), "plan"
    elif concerns is not None and not isinstance(concerns, str):
        chosen, source = list(concerns), "given"
    elif isinstance(concerns, str):
        raise InvalidInput(f"concerns must be 'plan', None or a list, not {concerns!r}", field="concerns")
    progress = compute_progress(observations, noise or load_repeatability(), concerns=chosen,
                                with_metrics=with_metrics)
    return PatientProgress(progress, version, tuple(visits), source)


def _observation(r: VisitScores) -> Observation:
    from pipelines.progress import flatten_metrics

    return Observation(date=r.visit_date, visit_id=r.visit_id, analysis_id=r.analysis_id,
                       pipeline_version=r.pipeline_version,
                       scores={k: v for k, v in r.scores.items() if v is not None},
                       region_scores=r.region_scores,
                       metrics=flatten_metrics(r.metrics) if r.metrics else {})


# --------------------------------------------------------------------------- one visit's data


@dataclass
class VisitRecord:
    """Everything stored about one visit, for reports and comparisons."""

    patient: Patient
    visit: Visit
    photo: Photo | None
    analysis: Analysis | None
    plan: Plan | None
    extra: dict = field(default_factory=dict)


def load_visit(session: Session, clinic_id: int, patient_id: int, visit_date: dt.date, *,
               pipeline_version: str | None = None) -> VisitRecord:
    """The visit of ``visit_date`` with its first analysed photo (of ``pipeline_version``, or
    the newest analysis) and the plan made from that analysis. Raises ``repository.NotFound``."""
    patient = repo.get_patient(session, clinic_id, patient_id)
    if patient is None:
        raise repo.NotFound(f"patient {patient_id} not found")
    visit = visit_on(session, clinic_id, patient_id, visit_date)
    if visit is None:
        raise repo.NotFound(f"no visit on {visit_date.isoformat()}")
    q = (sa.select(Photo, Analysis).join(Analysis, sa.and_(Analysis.clinic_id == Photo.clinic_id,
                                                           Analysis.photo_id == Photo.id), isouter=True)
         .where(Photo.clinic_id == clinic_id, Photo.patient_id == patient_id, Photo.visit_id == visit.id))
    if pipeline_version is not None:
        q = q.where(Analysis.pipeline_version == pipeline_version)
    rows = session.execute(q.order_by(Photo.id, Analysis.created_at.desc(), Analysis.id.desc())).all()
    photo = analysis = None
    for p, a in rows:
        if a is not None:
            photo, analysis = p, a
            break
    if photo is None and rows:
        photo = rows[0][0]
    plan = None
    if analysis is not None:
        plan = session.scalar(sa.select(Plan).where(Plan.clinic_id == clinic_id, Plan.analysis_id == analysis.id)
                              .order_by(Plan.created_at.desc(), Plan.id.desc()).limit(1))
    return VisitRecord(patient, visit, photo, analysis, plan)
