"""The practitioner pages (see the package docstring for the URL map)."""
from __future__ import annotations

import datetime as dt
import json
import logging
from urllib.parse import urlsplit

from flask import (
    current_app, flash, g, redirect, render_template, request, url_for,
)
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from service.api.schemas import PatientCreate
from service.auth import WRITE_ROLES, authenticate, check_password, login, logout
from service.errors import ApiError
from service.extensions import csrf, db_session
from service.storage import repository as repo
from service.throttle import LoginThrottled
from service.web import bp, present

log = logging.getLogger("mesoscan.web")

PUBLIC_ENDPOINTS = frozenset({"web.login", "web.static"})
PAGE_SIZE = 50

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


# --- authentication, errors, headers -------------------------------------------------------


def _safe_next(target: str | None) -> str | None:
    """A local path to go back to after logging in (never another site)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _here() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


@bp.before_request
def _require_login():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    try:
        principal = authenticate(optional=True)   # cookie writes are CSRF-checked here
    except ApiError as exc:
        if exc.status != 401:
            raise
        flash(exc.detail, "error")
        principal = None
    if principal is None:
        nxt = _here() if request.method == "GET" else None
        return redirect(url_for("web.login", next=nxt))
    return None


def _require_writer() -> None:
    if g.principal.role not in WRITE_ROLES:
        raise ApiError(403, "forbidden", f"Your role ({g.principal.role}) may only read.")


@bp.app_template_filter("when")
def _when(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M") + " UTC"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@bp.app_template_filter("region")
def _region(name: str) -> str:
    return present.region_label(name)


@bp.app_template_filter("score")
def _score(value) -> str:
    return "–" if value is None else f"{value:.0f}"


@bp.context_processor
def _page_context() -> dict:
    principal = g.get("principal")
    clinic = None
    if principal is not None:
        try:
            clinic = repo.get_clinic(db_session(), principal.clinic_id)
        except Exception:   # the error page must render even when the database does not answer
            log.exception("clinic lookup failed")
    return {
        "principal": principal,
        "clinic_name": clinic.name if clinic is not None else None,
        "can_write": principal is not None and principal.role in WRITE_ROLES,
        "as_json": lambda value: Markup(json.dumps(value).replace("<", "\\u003c")
                                        .replace(">", "\\u003e").replace("&", "\\u0026")),
    }


@bp.after_request
def _headers(resp):
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers["Cache-Control"] = "no-store"   # patient data: never kept by the browser's cache
    return resp


@bp.errorhandler(CSRFError)   # the app registers CSRFError under its status code: outrank it here
@bp.errorhandler(Exception)
def _error_page(exc: Exception):
    """Every error in a page: a message on an HTML page, never a traceback."""
    if isinstance(exc, CSRFError):
        status, title = 400, "This page has expired"
        detail = "The form was open too long or the session changed. Go back, reload the page and try again."
    elif isinstance(exc, ApiError):
        status, title, detail = exc.status, exc.title or _ERROR_TITLES.get(exc.status, "Error"), exc.detail
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        title = _ERROR_TITLES.get(status, exc.name)
        detail = "No such page or record in your clinic." if status == 404 else (exc.description or exc.name)
    else:
        log.exception("unhandled error on %s %s", request.method, request.path,
                      extra={"request_id": g.get("request_id")})
        status, title = 500, "Something went wrong"
        detail = "An unexpected error stopped this page. Quote the request id below when you report it."
    try:
        html = render_template("web/error.html", status=status, title=title, detail=detail,
                               request_id=g.get("request_id"))
    except Exception:   # pragma: no cover - the error page itself failed: plain text
        log.exception("error page failed")
        html = f"{status} {title}. Request id: {g.get('request_id')}"
    return html, status


_ERROR_TITLES = {400: "Bad request", 401: "Please log in", 403: "Not allowed", 404: "Not found",
                 405: "Not allowed", 409: "Conflict", 413: "Upload too large", 422: "Invalid input",
                 500: "Something went wrong", 503: "Service unavailable"}


# --- login ---------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login_page():
    nxt = _safe_next(request.values.get("next"))
    if request.method == "GET":
        try:
            if authenticate(optional=True) is not None:
                return redirect(nxt or url_for("web.patients"))
        except ApiError:
            pass   # an expired session: the flash message says so, show the form
        return render_template("web/login.html", next=nxt, email="")
    email = (request.form.get("email") or "").strip()
    password = request.form.get("password") or ""
    try:
        csrf.protect()
    except CSRFError:
        return render_template("web/login.html", next=nxt, email=email,
                               error="The login form expired. Please try again."), 400
    user = check_password(email, password) if email and password else None
    if user is None:
        log.info("web login failed")
        return render_template("web/login.html", next=nxt, email=email,
                               error="Wrong email or password."), 401
    login(user)
    repo.record_audit(db_session(), user.clinic_id, user.id, "session.login", "user", user.id)
    return redirect(nxt or url_for("web.patients"))


@bp.errorhandler(LoginThrottled)   # raised around login_page by service/throttle.py
def _login_throttled(exc: LoginThrottled):
    """Too many failed logins: the form again, saying how long to wait (429, Retry-After)."""
    return (render_template("web/login.html", next=_safe_next(request.values.get("next")),
                            email=(request.form.get("email") or "").strip(), error=exc.detail),
            429, exc.headers)


@bp.post("/logout")
def logout_page():
    logout()
    flash("You are logged out.", "info")
    return redirect(url_for("web.login"))


# --- patients ------------------------------------------------------------------------------


@bp.get("/")
def index():
    return redirect(url_for("web.patients"))


@bp.get("/patients")
def patients():
    return _patients_page()


def _patients_page(form: dict | None = None, error: str | None = None, status: int = 200):
    q = (request.args.get("q") or "").strip()[:100]
    try:
        page = max(1, int(request.args.get("page", 1)))
    except ValueError:
        page = 1
    rows = repo.list_patients(db_session(), g.principal.clinic_id, search=q or None,
                              limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    more = len(rows) > PAGE_SIZE
    return render_template("web/patients.html", patients=rows[:PAGE_SIZE], q=q, page=page, more=more,
                           form=form or {}, error=error), status


@bp.post("/patients")
def create_patient():
    _require_writer()
    form = {"code": (request.form.get("code") or "").strip(), "name": (request.form.get("name") or "").strip()}
    try:
        body = PatientCreate(code=form["code"], name=form["name"] or None)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = {"code": "Code", "name": "Name"}.get(str(err["loc"][0]) if err["loc"] else "", "Input")
        limit = "64" if field == "Code" else "200"
        msg = "is required" if err["type"] == "string_too_short" else f"must be at most {limit} characters"
        return _patients_page(form, f"{field} {msg}.", 422)
    try:
        patient = repo.create_patient(db_session(), g.principal.clinic_id, body.code, body.name)
    except repo.Conflict:
        return _patients_page(form, f"A patient with the code “{body.code}” already exists in your clinic.", 409)
    flash(f"Patient {patient.code} created.", "info")
    return redirect(url_for("web.patient", patient_id=patient.id))


def _patient_or_404(patient_id: int):
    patient = repo.get_patient(db_session(), g.principal.clinic_id, patient_id)
    if patient is None:
        raise ApiError(404, "not_found", "No patient with this id in your clinic.", title="Patient not found")
    return patient


def _timeline(patient_id: int) -> tuple[list, list[dict]]:
    """The patient's visits and analyses (newest first), each analysis with its photo's visit."""
    s, cid = db_session(), g.principal.clinic_id
    visits = repo.list_visits(s, cid, patient_id)
    by_visit = {v.id: v for v in visits}
    photos = {p.id: p for p in repo.list_photos(s, cid, patient_id=patient_id)}
    analyses = []
    for a in repo.list_analyses(s, cid, patient_id=patient_id):
        photo = photos.get(a.photo_id)
        visit = by_visit.get(photo.visit_id) if photo is not None and photo.visit_id else None
        doc = a.document or {}
        analyses.append({
            "id": a.id, "created_at": a.created_at, "visit": visit, "pipeline_version": a.pipeline_version,
            "verdict": present.quality_verdict(doc.get("quality")),
            "scores": {"pigmentation": a.score_pigmentation, "texture": a.score_texture,
                       "wrinkles": a.score_wrinkles, "overall": a.score_overall},
        })
    analyses.reverse()
    counts: dict[int, int] = {}
    for p in photos.values():
        if p.visit_id:
            counts[p.visit_id] = counts.get(p.visit_id, 0) + 1
    visit_rows = [{"visit": v, "photos": counts.get(v.id, 0)} for v in reversed(visits)]
    return visit_rows, analyses


def _progress_links(patient_id: int, analyses: list[dict]) -> dict:
    """URLs of the progress API for the page (when this server has it): the chart, the progress
    document, the before/after panels (``BEFORE``/``AFTER`` stand for visit ids) and the visits
    that have an analysed photo, which are the ones a before/after can use."""
    views = current_app.view_functions
    if "progress.progress_chart_png" not in views:
        return {"available": False}
    out = {"available": True,
           "chart_url": url_for("progress.progress_chart_png", patient_id=patient_id),
           "json_url": url_for("progress.get_progress", patient_id=patient_id)}
    if "progress.compare_png" in views:
        for panel in ("before", "after"):
            out[f"compare_{panel}"] = url_for("progress.compare_png", patient_id=patient_id, before="BEFORE",
                                              after="AFTER", panel=panel)
        visits = {a["visit"].id: a["visit"] for a in analyses if a["visit"] is not None}
        out["choices"] = [{"value": v.id, "label": v.visit_date.isoformat()}
                          for v in sorted(visits.values(), key=lambda v: (v.visit_date, v.id))]
    if "progress.visit_report" in views:
        out["report_url"] = url_for("progress.visit_report", visit_id=0).replace("/0/", "/VISIT/")
    return out


@bp.get("/patients/<int:patient_id>")
def patient(patient_id: int):
    p = _patient_or_404(patient_id)
    visits, analyses = _timeline(p.id)
    s, cid = db_session(), g.principal.clinic_id
    intake = repo.latest_intake(s, cid, p.id)
    plans = repo.list_plans(s, cid, p.id)
    plan = plans[-1] if plans else None
    return render_template("web/patient.html", patient=p, visits=visits, analyses=analyses, intake=intake,
                           plan=plan, plan_status=present.PLAN_STATUS.get((plan.document or {}).get("status"))
                           if plan else None, fields=present.intake_fields(), today=dt.date.today(),
                           progress=_progress_links(p.id, analyses))


@bp.get("/patients/<int:patient_id>/upload")
def upload(patient_id: int):
    p = _patient_or_404(patient_id)
    visits = repo.list_visits(db_session(), g.principal.clinic_id, p.id)
    today = dt.date.today()
    todays = [v for v in visits if v.visit_date == today]
    return render_template("web/upload.html", patient=p, visits=list(reversed(visits)), today=today,
                           todays_visit=todays[-1] if todays else None,
                           quality_words={k: {"words": w, "advice": a} for k, (w, a) in present.QUALITY_WORDS.items()})


@bp.get("/analyses/<int:analysis_id>")
def analysis(analysis_id: int):
    s, cid = db_session(), g.principal.clinic_id
    a = repo.get_analysis(s, cid, analysis_id)
    photo = repo.get_photo(s, cid, a.photo_id) if a is not None else None
    if a is None or photo is None:
        raise ApiError(404, "not_found", "No analysis with this id in your clinic.", title="Analysis not found")
    p = repo.get_patient(s, cid, photo.patient_id)
    visit = repo.get_visit(s, cid, photo.visit_id) if photo.visit_id else None
    doc = a.document or {}
    return render_template("web/analysis.html", analysis=a, patient=p, visit=visit, doc=doc,
                           verdict=present.quality_verdict(doc.get("quality")),
                           colour_note=present.colour_reference(doc),
                           rows=present.score_rows(doc), families=present.FAMILIES,
                           family_labels=present.FAMILY_LABELS, layers=present.LAYERS,
                           regions=present.region_names(doc), view_boxes=present.view_boxes(doc))


@bp.get("/patients/<int:patient_id>/plan")
def plan(patient_id: int):
    p = _patient_or_404(patient_id)
    s, cid = db_session(), g.principal.clinic_id
    intake = repo.latest_intake(s, cid, p.id)
    plans = repo.list_plans(s, cid, p.id)
    plan_row = plans[-1] if plans else None
    analyses = repo.list_analyses(s, cid, patient_id=p.id)
    latest = max(analyses, key=lambda a: (a.created_at, a.id)) if analyses else None
    doc = (intake.document if intake else None) or {}
    return render_template("web/plan.html", patient=p, intake=intake, intake_doc=doc, plan=plan_row,
                           plan_doc=(plan_row.document if plan_row else None) or {},
                           plan_status=present.PLAN_STATUS.get(((plan_row.document or {}) if plan_row else {}).get("status")),
                           latest_analysis=latest, fields=present.intake_fields(), tri_state=present.tri_state,
                           ingredient_names=present.ingredient_names(),
                           today=dt.date.today())
