"""Patients, their intake, and erasure.

    POST   /api/v1/patients                    create (code unique in the clinic, name optional)
    GET    /api/v1/patients?q=&limit=&cursor=  list, search in code and name, paginated
    GET    /api/v1/patients/{id}               one patient
    PATCH  /api/v1/patients/{id}               change (or clear) the name
    DELETE /api/v1/patients/{id}               erasure: the patient and everything of theirs
    PUT    /api/v1/patients/{id}/intake        record an intake (validated by parse_intake)
    GET    /api/v1/patients/{id}/intake        the latest intake
    GET    /api/v1/patients/{id}/analyses      the patient's analyses (summaries), paginated

Progress, charts and before/after of a patient are in ``service/api/progress.py``.
"""
from __future__ import annotations

import logging

from flask import g, request, url_for

from pipelines.planning import parse_intake
from pipelines.planning.intake import INTAKE_SCHEMA
from service.api.common import api_blueprint, decode_cursor, json_response, page_response, paginate, problem_ref
from service.api.schemas import (
    AnalysisPage, ErasureOut, IntakeOut, PatientCreate, PatientListQuery, PatientOut, PatientPage,
    PatientPath, PatientUpdate, PageQuery,
)
from service.auth import clinic_id
from service.errors import ApiError, not_found
from service.extensions import db_session, state
from service.overlays import forget_photo
from service.storage import repository as repo

log = logging.getLogger("mesoscan.api.patients")

INTAKE_VERSION = 1   # intake.version for documents of schema mesoscan.intake/1

bp = api_blueprint("patients", __name__, "patients", "Patients, intake and erasure (right to be forgotten)")


def patient_out(p) -> dict:
    return PatientOut(id=p.id, code=p.code, name=p.name, created_at=p.created_at).model_dump(mode="json")


def require_patient(patient_id: int):
    patient = repo.get_patient(db_session(), clinic_id(), patient_id)
    if patient is None:
        raise not_found("patient")
    return patient


@bp.post("/patients", responses={201: PatientOut, 409: problem_ref("a patient with this code exists")})
def create_patient(body: PatientCreate):
    """Create a patient"""
    try:
        patient = repo.create_patient(db_session(), clinic_id(), body.code, body.name)
    except repo.Conflict:
        raise ApiError(409, "patient_code_taken", "A patient with this code already exists in your clinic.",
                       field="code") from None
    location = url_for("patients.get_patient", patient_id=patient.id)
    return json_response(patient_out(patient), 201, {"Location": location})


@bp.get("/patients", responses={200: PatientPage})
def list_patients(query: PatientListQuery):
    """List patients (search with q; ordered by code)"""
    after = decode_cursor(query.cursor, 2)
    if after is not None and not (isinstance(after[0], str) and isinstance(after[1], int)):
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.", field="cursor")
    rows = repo.list_patients(db_session(), clinic_id(), limit=query.limit + 1, search=query.q or None,
                              after=tuple(after) if after else None)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return page_response([patient_out(p) for p in rows], (rows[-1].code, rows[-1].id) if more else None)


@bp.get("/patients/<int:patient_id>", responses={200: PatientOut, 404: problem_ref("no such patient")})
def get_patient(path: PatientPath):
    """Get a patient"""
    return json_response(patient_out(require_patient(path.patient_id)))


@bp.patch("/patients/<int:patient_id>", responses={200: PatientOut, 404: problem_ref("no such patient")})
def update_patient(path: PatientPath, body: PatientUpdate):
    """Change a patient's name"""
    require_patient(path.patient_id)
    patient = repo.update_patient(db_session(), clinic_id(), path.patient_id, name=body.name)
    return json_response(patient_out(patient))


@bp.delete("/patients/<int:patient_id>", responses={200: ErasureOut, 404: problem_ref("no such patient")})
def erase_patient(path: PatientPath):
    """Erase a patient with all their photos, analyses, plans, visits and intakes

    Irreversible. Recorded in the audit log (ids only). Cached overlays of their photos are
    deleted too."""
    s = db_session()
    require_patient(path.patient_id)
    shas = {p.sha256 for p in repo.list_photos(s, clinic_id(), patient_id=path.patient_id)}
    report = repo.erase_patient(s, state().storage.blobs, clinic_id(), path.patient_id,
                                actor_id=g.principal.actor_id)
    for sha in shas:
        forget_photo(state().overlay_cache, sha)
    log.info("patient erased", extra={"patient_id": path.patient_id, "audit_id": report.audit_id})
    return json_response(ErasureOut(**vars(report)).model_dump(mode="json"))


# --- intake --------------------------------------------------------------------------------


def intake_out(row) -> dict:
    return {"id": row.id, "patient_id": row.patient_id, "version": row.version,
            "created_at": row.created_at.isoformat(), "document": row.document}


@bp.put("/patients/<int:patient_id>/intake",
        responses={200: IntakeOut, 404: problem_ref("no such patient")},
        openapi_extensions={"requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Intake"}}},
            "description": "the intake (schema mesoscan.intake/1, see README.md); unknown fields "
                           "and wrong types are refused naming the field"}})
def put_intake(path: PatientPath):
    """Record the patient's intake (the newest one counts; older ones stay as history)"""
    require_patient(path.patient_id)
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the intake as application/json.")
    if request.get_json(silent=True) is None:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.")
    intake = parse_intake(request.get_data(), source="intake")
    document = intake.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["schema"] = INTAKE_SCHEMA
    row = repo.add_intake(db_session(), clinic_id(), path.patient_id, document, INTAKE_VERSION)
    return json_response(intake_out(row))


@bp.get("/patients/<int:patient_id>/intake", responses={200: IntakeOut, 404: problem_ref("no patient or no intake")})
def get_intake(path: PatientPath):
    """The patient's latest intake"""
    require_patient(path.patient_id)
    row = repo.latest_intake(db_session(), clinic_id(), path.patient_id)
    if row is None:
        raise ApiError(404, "no_intake", "This patient has no intake yet.")
    return json_response(intake_out(row))


# --- the patient's analyses ----------------------------------------------------------------


def analysis_summary(a, photo) -> dict:
    doc = a.document or {}
    return {"id": a.id, "photo_id": a.photo_id, "visit_id": photo.visit_id if photo else None,
            "pipeline_version": a.pipeline_version, "created_at": a.created_at.isoformat(),
            "quality_status": (doc.get("quality") or {}).get("status"),
            "scores": {"pigmentation": a.score_pigmentation, "texture": a.score_texture,
                       "wrinkles": a.score_wrinkles, "overall": a.score_overall}}


@bp.get("/patients/<int:patient_id>/analyses", responses={200: AnalysisPage, 404: problem_ref("no such patient")})
def list_patient_analyses(path: PatientPath, query: PageQuery):
    """The patient's analyses, oldest first (summaries: scores and quality status)"""
    require_patient(path.patient_id)
    s = db_session()
    photos = {p.id: p for p in repo.list_photos(s, clinic_id(), patient_id=path.patient_id)}
    rows = sorted(repo.list_analyses(s, clinic_id(), patient_id=path.patient_id), key=lambda a: a.id)
    page, next_key = paginate(rows, lambda a: (a.id,), query.limit, query.cursor, 1)
    return page_response([analysis_summary(a, photos.get(a.photo_id)) for a in page], next_key)
