"""Progress across visits, before/after comparisons and the printable visit report.

    GET /api/v1/patients/{id}/progress?points=&metrics=&pipeline_version=
                                            the progress document (schema mesoscan.progress/1)
    GET /api/v1/patients/{id}/progress/chart.png   the progress chart (PNG)
    GET /api/v1/patients/{id}/progress/chart.svg   the same as SVG
    GET /api/v1/patients/{id}/compare?before=&after=&region=&panel=&max_de=
                                            before | after (aligned) | CIEDE2000 heat map, PNG
    GET /api/v1/patients/{id}/compare.json?before=&after=&region=
                                            alignment and the difference per region
    GET /api/v1/visits/{id}/report.html?compare=&download=
                                            the printable visit report (self-contained HTML)

``before`` and ``after`` name a visit of the patient by id or by date (YYYY-MM-DD; the first
visit recorded on that day). Either may be left out: ``before`` is then the first analysed visit
and ``after`` the last. Another clinic's patient or visit, and a visit of another patient, are
answered exactly like an id that does not exist (404).

Caching: every answer carries a weak ``ETag`` and ``Cache-Control: private, no-cache``;
``If-None-Match`` answers 304. Charts and comparisons compute their ETag from what they are
drawn from (the progress data; the two analyses and the parameters) *before* drawing, so a 304
costs a query, not a rendering. The last few comparisons are kept in memory per process, so the
PNG, its panels and the JSON of one pair cost one alignment.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

import numpy as np
import sqlalchemy as sa
from flask import Response, request, url_for
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pipelines import PIPELINE_VERSION
from pipelines.errors import InvalidInput
from service.api.common import api_blueprint, json_response, problem_ref
from service.api.patients import require_patient
from service.api.schemas import PatientPath, Slug, Strict, VisitPath
from service.auth import clinic_id
from service.errors import ApiError, not_found
from service.extensions import db_session, state
from service.storage import repository as repo
from service.storage.models import Analysis, Photo

bp = api_blueprint("progress", __name__, "progress",
                   "Progress across visits, charts, before/after comparisons and the visit report")

CACHE_CONTROL = "private, no-cache"
CHART_REVISION = "chart/1"        # bump when service/charts.py draws differently
COMPARE_REVISION = "compare/1"    # bump when pipelines/compare.py measures or draws differently
PANELS = ("all", "before", "after", "difference")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------- models


def _visit_ref(value: Any) -> Any:
    """A visit id (digits) or a date (YYYY-MM-DD), as int or date. flask-openapi3 may already
    have JSON-decoded "12" to 12."""
    if isinstance(value, bool):
        raise ValueError("a visit id or a date (YYYY-MM-DD)")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) < 19:
            return int(text)
        if _DATE.match(text):
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a valid date") from None
    raise ValueError("a visit id or a date (YYYY-MM-DD)")


VisitRef = Annotated[Annotated[int, Field(ge=1, le=2**63 - 1)] | dt.date, BeforeValidator(_visit_ref)]


class ProgressQuery(Strict):
    points: bool = Field(False, description="include each visit's change from baseline and previous "
                                            "(from_baseline, from_previous: about 4x the size)")
    metrics: bool = Field(False, description="also follow the whole-face metrics")
    pipeline_version: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="use analyses of this pipeline version (default: the one covering most visits)")


class ChartQuery(Strict):
    pipeline_version: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="use analyses of this pipeline version (default: the one covering most visits)")


class CompareJsonQuery(Strict):
    before: VisitRef | None = Field(
        None, description="visit id or date (YYYY-MM-DD); default: the first analysed visit")
    after: VisitRef | None = Field(
        None, description="visit id or date (YYYY-MM-DD); default: the last analysed visit")
    region: Slug | None = Field(None, description="only this region")


class CompareQuery(CompareJsonQuery):
    panel: Literal["all", "before", "after", "difference"] = Field(
        "all", description="all: before | after (aligned) | heat map with a colour bar; or one panel alone "
                           "at the view's resolution (before and after share pixels: a slider can stack them)")
    max_de: float = Field(10.0, gt=0, le=100, description="top of the colour scale (CIEDE2000)")


class ReportQuery(Strict):
    compare: bool = Field(True, description="include the before/after against the baseline visit")
    download: bool = Field(False, description="Content-Disposition: attachment instead of inline")


class ProgressDocument(BaseModel):
    """Schema ``mesoscan.progress/1`` (README.md, section "Progress across visits") with the patient and links."""

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", examples=["mesoscan.progress/1"])
    patient: str
    patient_id: int
    pipeline_version: str | None
    visits: list[dict[str, Any]]
    noise: dict[str, Any]
    concerns_from: str
    summaries: list[dict[str, Any]]
    series: dict[str, Any]
    notes: list[str]
    links: dict[str, str]


class ComparedVisit(BaseModel):
    visit_id: int
    date: dt.date
    photo_id: int
    analysis_id: int
    pipeline_version: str


class RegionDifferenceOut(BaseModel):
    name: str
    pixels: int
    mean_delta_e: float = Field(description="mean CIEDE2000, after vs before")
    p95_delta_e: float
    mean_delta_l: float = Field(description="mean after - before L* (negative: darker after)")
    changed_pct: float = Field(description="share of pixels over changed_de")


class ComparisonOut(BaseModel):
    patient_id: int
    before: ComparedVisit
    after: ComparedVisit
    alignment: dict[str, Any]
    px_per_mm: float
    view_size: list[int]
    exposure_gains: list[float]
    refined: bool
    refinement: dict[str, float]
    changed_de: float
    regions: dict[str, RegionDifferenceOut]
    links: dict[str, str]


def _image(mime: str, description: str) -> dict:
    return {"description": description, "content": {mime: {"schema": {"type": "string", "format": "binary"}}}}


NOT_MODIFIED = {"description": "not modified (If-None-Match)"}


# --------------------------------------------------------------------------- helpers


def _etag(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _not_modified(etag: str) -> Response | None:
    if request.if_none_match and request.if_none_match.contains_weak(etag):
        resp = Response(status=304)
        resp.set_etag(etag, weak=True)
        resp.headers["Cache-Control"] = CACHE_CONTROL
        return resp
    return None


def _binary(data: bytes, mime: str, etag: str | None = None) -> Response:
    resp = Response(data, mimetype=mime)
    if etag:
        resp.set_etag(etag, weak=True)
    resp.headers["Cache-Control"] = CACHE_CONTROL
    return resp


def _progress(patient_id: int, pipeline_version: str | None, *, with_metrics: bool = False):
    from service.progress import patient_progress

    return patient_progress(db_session(), clinic_id(), patient_id, pipeline_version=pipeline_version,
                            with_metrics=with_metrics)


# --------------------------------------------------------------------------- progress


@bp.get("/patients/<int:patient_id>/progress", responses={
    200: ProgressDocument, 304: NOT_MODIFIED, 404: problem_ref("no such patient")})
def get_progress(path: PatientPath, query: ProgressQuery):
    """The patient's progress across visits (schema mesoscan.progress/1)

    Every score per visit, the change since the baseline and the previous visit, judged
    against the measurement noise (MDC95), and one summary per concern of the baseline plan.
    The series are columnar: `values[i]` belongs to `visits[i]`."""
    patient = require_patient(path.patient_id)
    pp = _progress(patient.id, query.pipeline_version, with_metrics=query.metrics)
    doc = pp.to_dict(points=query.points)
    doc["patient"] = patient.code
    doc["patient_id"] = patient.id
    doc["links"] = {
        "self": url_for("progress.get_progress", patient_id=patient.id),
        "chart_png": url_for("progress.progress_chart_png", patient_id=patient.id),
        "chart_svg": url_for("progress.progress_chart_svg", patient_id=patient.id),
        "compare": url_for("progress.compare_png", patient_id=patient.id),
        "compare_json": url_for("progress.compare_json", patient_id=patient.id),
    }
    resp = json_response(doc)   # the blueprint adds a weak ETag (content hash) and answers 304
    resp.headers["Cache-Control"] = CACHE_CONTROL
    return resp


def _chart(patient_id: int, query: ChartQuery, fmt: str) -> Response:
    from service.charts import render_progress_chart

    patient = require_patient(patient_id)
    pp = _progress(patient.id, query.pipeline_version)
    title = f"Patient {patient.code}"
    # the per-visit changes follow from the values and the noise: points=False is enough
    etag = _etag(CHART_REVISION, PIPELINE_VERSION, fmt, title, pp.to_dict(points=False))
    cached = _not_modified(etag)
    if cached is not None:
        return cached
    data = render_progress_chart(pp.progress, fmt, title=title)
    resp = _binary(data, "image/png" if fmt == "png" else "image/svg+xml", etag)
    if fmt == "svg":   # opened on its own, an SVG is a document: no scripts, ever
        resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp


@bp.get("/patients/<int:patient_id>/progress/chart.png", responses={
    200: _image("image/png", "the progress chart"), 304: NOT_MODIFIED, 404: problem_ref("no such patient")})
def progress_chart_png(path: PatientPath, query: ChartQuery):
    """The progress chart as PNG: one panel per score family, whole face and regions, with
    the measurement-noise band around the baseline"""
    return _chart(path.patient_id, query, "png")


@bp.get("/patients/<int:patient_id>/progress/chart.svg", responses={
    200: _image("image/svg+xml", "the progress chart"), 304: NOT_MODIFIED, 404: problem_ref("no such patient")})
def progress_chart_svg(path: PatientPath, query: ChartQuery):
    """The progress chart as SVG"""
    return _chart(path.patient_id, query, "svg")


# --------------------------------------------------------------------------- before/after


def _analysed_visits(patient_id: int) -> list[tuple[int, dt.date]]:
    """(visit id, date) of the patient's visits with an analysed photo, in date order (one query)."""
    from service.progress import load_visit_scores

    out: dict[int, dt.date] = {}
    for row in load_visit_scores(db_session(), clinic_id(), patient_id):
        if row.analysis_id is not None:
            out.setdefault(row.visit_id, row.visit_date)
    return list(out.items())


def _resolve_visit(patient, ref: int | dt.date, name: str):
    """The patient's visit named by id or date; 404 like a missing id otherwise."""
    from service.progress import visit_on

    s, cid = db_session(), clinic_id()
    if isinstance(ref, dt.date):
        visit = visit_on(s, cid, patient.id, ref)
        if visit is None:
            raise ApiError(404, "not_found", f"This patient has no visit on {ref.isoformat()}.", field=name)
        return visit
    visit = repo.get_visit(s, cid, ref)
    if visit is None or visit.patient_id != patient.id:
        raise ApiError(404, "not_found", "No visit with this id for this patient in your clinic.", field=name)
    return visit


def _visit_record(patient, visit):
    """The visit with its first analysed photo and that photo's newest analysis (as
    ``service.progress.load_visit``, but by visit id: two visits may share a date)."""
    from service.progress import VisitRecord

    s, cid = db_session(), clinic_id()
    q = (sa.select(Photo, Analysis)
         .join(Analysis, sa.and_(Analysis.clinic_id == Photo.clinic_id, Analysis.photo_id == Photo.id))
         .where(Photo.clinic_id == cid, Photo.patient_id == patient.id, Photo.visit_id == visit.id)
         .order_by(Photo.id, Analysis.created_at.desc(), Analysis.id.desc()).limit(1))
    row = s.execute(q).first()
    photo, analysis = (row[0], row[1]) if row is not None else (None, None)
    return VisitRecord(patient, visit, photo, analysis, None)


def _pair(patient, query: CompareJsonQuery):
    """The two visit records to compare, after every check (404, 409, 422)."""
    before = _resolve_visit(patient, query.before, "before") if query.before is not None else None
    after = _resolve_visit(patient, query.after, "after") if query.after is not None else None
    analysed = _analysed_visits(patient.id)
    if len(analysed) < 2:
        raise ApiError(409, "not_enough_visits",
                       f"A before/after needs two visits with an analysed photo; this patient has {len(analysed)}.")
    s, cid = db_session(), clinic_id()
    if before is None:
        before = repo.get_visit(s, cid, analysed[0][0])
    if after is None:
        after = repo.get_visit(s, cid, analysed[-1][0])
    if before.id == after.id:
        raise ApiError(422, "invalid_input", "Choose two different visits to compare.",
                       field="after" if query.after is not None else "before")
    records = []
    for name, visit in (("before", before), ("after", after)):
        rec = _visit_record(patient, visit)
        if rec.analysis is None:
            raise ApiError(409, "no_analysis", f"The {name} visit ({visit.visit_date.isoformat()}) has no analysed "
                           "photo: upload one for it first.", field=name)
        records.append(rec)
    return records[0], records[1]


def _key(rec) -> list:
    a = rec.analysis
    return [rec.visit.id, rec.photo.id, a.id, a.created_at.isoformat() if a.created_at else None]


class _ComparisonCache:
    """The last few comparisons of this process (a view of a face is a few MB), so the image,
    its panels and the JSON of one pair are aligned once."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


comparisons = _ComparisonCache()


def _comparison(before, after):
    from service.report import compare_records

    cid = clinic_id()
    key = (id(state()), cid, COMPARE_REVISION, *_key(before), *_key(after))
    cmp = comparisons.get(key)
    if cmp is None:
        try:
            cmp = compare_records(db_session(), state().storage.blobs, cid, before, after)
        except InvalidInput as exc:
            raise ApiError(422, "not_comparable", f"The photos cannot be compared: {exc.message}",
                           title="Photos cannot be compared") from None
        comparisons.put(key, cmp)
    return cmp


def _check_region_name(region: str | None) -> None:
    from pipelines.regions import REGION_NAMES

    if region is not None and region not in REGION_NAMES:
        raise ApiError(422, "invalid_input", f"Unknown region; choose one of {', '.join(REGION_NAMES)}.",
                       field="region")


def _check_region(region: str | None, known) -> None:
    """``region`` must have been compared (measurable in the before photo)."""
    if region is not None and region not in known:
        raise ApiError(422, "invalid_input", f"The region {region} is not measurable in the before photo; "
                       f"compared regions: {', '.join(known) or 'none'}.", field="region")


def _crop_box(cmp, region: str | None) -> tuple[int, int, int, int]:
    h, w = cmp.before.shape[:2]
    if region is None:
        return 0, 0, w, h
    p = np.asarray(cmp.polygons[region])
    margin = 5.0 * cmp.px_per_mm
    x0, y0 = (np.floor(p.min(axis=0) - margin)).astype(int).clip(0)
    x1, y1 = np.ceil(p.max(axis=0) + margin).astype(int)
    return int(x0), int(y0), min(int(x1), w), min(int(y1), h)


def _panel_image(cmp, panel: str, region: str | None, max_de: float) -> np.ndarray:
    """One panel alone (``before``, ``after`` or ``difference``) at the view's resolution,
    cropped to ``region`` with a 5 mm margin as :func:`pipelines.compare.render_comparison`."""
    import cv2

    from pipelines.compare import heat_map

    x0, y0, x1, y1 = _crop_box(cmp, region)
    if panel == "difference":
        img = heat_map(cmp, max_de=max_de)
        polys = cmp.polygons if region is None else {region: cmp.polygons[region]}
        for poly in polys.values():
            cv2.polylines(img, [np.round(np.asarray(poly) * 4).astype(np.int32)], True, (255, 255, 255), 1,
                          cv2.LINE_AA, shift=2)
    else:
        img = cmp.before if panel == "before" else cmp.after
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def _visit_out(rec) -> dict:
    return {"visit_id": rec.visit.id, "date": rec.visit.visit_date.isoformat(), "photo_id": rec.photo.id,
            "analysis_id": rec.analysis.id, "pipeline_version": rec.analysis.pipeline_version}


@bp.get("/patients/<int:patient_id>/compare", responses={
    200: _image("image/png", "before | after (aligned) | colour-difference heat map, or one panel"),
    304: NOT_MODIFIED, 404: problem_ref("no such patient, or no such visit of the patient"),
    409: problem_ref("fewer than two analysed visits (not_enough_visits), or a visit without an analysed "
                     "photo (no_analysis)"),
    422: problem_ref("invalid input (visit reference, region, panel), the same visit twice, or photos "
                     "that cannot be aligned (not_comparable)"),
})
def compare_png(path: PatientPath, query: CompareQuery):
    """Before/after of two visits as PNG

    The after photo is aligned onto the before photo by its landmarks (similarity transform,
    refined on the image), exposure is matched, and the CIEDE2000 difference is mapped.
    `before` and `after` are visit ids or dates (YYYY-MM-DD); by default the first and the last
    analysed visits."""
    from service.report import encode_image

    patient = require_patient(path.patient_id)
    _check_region_name(query.region)
    before, after = _pair(patient, query)
    etag = _etag(COMPARE_REVISION, "png", _key(before), _key(after), query.region, query.panel, query.max_de)
    cached = _not_modified(etag)
    if cached is not None:
        return cached
    cmp = _comparison(before, after)
    _check_region(query.region, list(cmp.polygons))
    labels = (f"before {before.visit.visit_date.isoformat()}", f"after {after.visit.visit_date.isoformat()}")
    if query.panel == "all":
        from pipelines.compare import render_comparison

        img = render_comparison(cmp, region=query.region, labels=labels, max_de=query.max_de)
    else:
        img = _panel_image(cmp, query.panel, query.region, query.max_de)
    resp = _binary(encode_image(img, "png"), "image/png", etag)
    resp.headers["X-Before-Visit"] = str(before.visit.id)
    resp.headers["X-After-Visit"] = str(after.visit.id)
    return resp


@bp.get("/patients/<int:patient_id>/compare.json", responses={
    200: ComparisonOut, 304: NOT_MODIFIED, 404: problem_ref("no such patient, or no such visit of the patient"),
    409: problem_ref("fewer than two analysed visits (not_enough_visits), or a visit without an analysed "
                     "photo (no_analysis)"),
    422: problem_ref("invalid input, the same visit twice, or photos that cannot be aligned (not_comparable)"),
})
def compare_json(path: PatientPath, query: CompareJsonQuery):
    """Before/after of two visits: the alignment and the colour difference per region

    Per region: mean and 95th-percentile CIEDE2000, mean delta L* (negative: darker at the
    after visit) and the share of pixels over `changed_de`."""
    patient = require_patient(path.patient_id)
    _check_region_name(query.region)
    before, after = _pair(patient, query)
    etag = _etag(COMPARE_REVISION, "json", _key(before), _key(after), query.region)
    cached = _not_modified(etag)
    if cached is not None:
        return cached
    cmp = _comparison(before, after)
    _check_region(query.region, list(cmp.regions))
    doc = cmp.to_dict()
    if query.region is not None:
        doc["regions"] = {query.region: doc["regions"][query.region]}
    args = {"before": before.visit.id, "after": after.visit.id}
    if query.region is not None:
        args["region"] = query.region
    body = {"patient_id": patient.id, "before": _visit_out(before), "after": _visit_out(after), **doc,
            "links": {"image": url_for("progress.compare_png", patient_id=patient.id, **args),
                      **{f"panel_{p}": url_for("progress.compare_png", patient_id=patient.id, panel=p, **args)
                         for p in PANELS[1:]}}}
    resp = json_response(body)
    resp.set_etag(etag, weak=True)
    resp.headers["Cache-Control"] = CACHE_CONTROL
    return resp


# --------------------------------------------------------------------------- visit report


REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")


@bp.get("/visits/<int:visit_id>/report.html", responses={
    200: {"description": "the report: one self-contained HTML file (images embedded), made for A4 printing",
          "content": {"text/html": {"schema": {"type": "string"}}}},
    404: problem_ref("no such visit"),
    409: problem_ref("another visit of the patient on the same day was recorded first (ambiguous_visit_date)"),
})
def visit_report(path: VisitPath, query: ReportQuery):
    """The printable visit report (HTML)

    The photo with its regions, a severity overlay per score family, the scores with their
    change since the baseline, the progress summaries and chart, the before/after against the
    baseline visit, and the plan. Print it from a browser for a PDF."""
    from service.progress import visit_on
    from service.report import build_visit_report

    s, cid = db_session(), clinic_id()
    visit = repo.get_visit(s, cid, path.visit_id)
    if visit is None:
        raise not_found("visit")
    patient = repo.get_patient(s, cid, visit.patient_id)
    if patient is None:   # pragma: no cover - a visit always has its patient
        raise not_found("visit")
    first = visit_on(s, cid, patient.id, visit.visit_date)
    if first is not None and first.id != visit.id:
        # the report is built by date (service.report); it would show the other visit
        raise ApiError(409, "ambiguous_visit_date",
                       f"Another visit of this patient on {visit.visit_date.isoformat()} (id {first.id}) was "
                       "recorded first; the report of that day is that visit's.", visit_id=first.id)
    html = build_visit_report(s, state().storage.blobs, cid, patient.id, visit.visit_date, compare=query.compare)
    resp = Response(html, mimetype="text/html")
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Content-Security-Policy"] = REPORT_CSP
    safe_code = re.sub(r"[^A-Za-z0-9._-]+", "_", patient.code)[:64] or "patient"
    disposition = "attachment" if query.download else "inline"
    resp.headers["Content-Disposition"] = (f'{disposition}; filename="mesoscan-{safe_code}-'
                                           f'{visit.visit_date.isoformat()}.html"')
    return resp
