"""Treatment plans: suggestions from the latest analysis and the intake.

    POST /api/v1/patients/{id}/plan   make a plan (start, template, optional analysis_id)
    GET  /api/v1/patients/{id}/plan   the latest plan
    GET  /api/v1/plans/{id}           one plan
"""
from __future__ import annotations

import datetime as dt

from flask import url_for

from pipelines.planning import make_plan, parse_intake
from service.api.common import api_blueprint, json_response, problem_ref
from service.api.patients import require_patient
from service.api.schemas import PatientPath, PlanCreate, PlanOut, PlanPath
from service.auth import clinic_id
from service.errors import ApiError, not_found
from service.extensions import db_session
from service.storage import repository as repo

PLAN_VERSION = 1   # plan.version for documents of schema mesoscan.plan/1

bp = api_blueprint("plans", __name__, "plans", "Suggested treatment plans (the practitioner decides)")


def plan_out(p) -> dict:
    return PlanOut(id=p.id, patient_id=p.patient_id, analysis_id=p.analysis_id, version=p.version,
                   created_at=p.created_at, document=p.document).model_dump(mode="json")


@bp.post("/patients/<int:patient_id>/plan", responses={
    201: PlanOut, 404: problem_ref("no such patient or analysis"),
    409: problem_ref("no analysis or no intake yet (code no_analysis / no_intake)"),
})
def create_plan(path: PatientPath, body: PlanCreate):
    """Make a plan from the patient's latest analysis (or `analysis_id`) and latest intake"""
    require_patient(path.patient_id)
    s, cid = db_session(), clinic_id()
    if body.analysis_id is not None:
        analysis = repo.get_analysis(s, cid, body.analysis_id)
        photo = repo.get_photo(s, cid, analysis.photo_id) if analysis is not None else None
        if analysis is None or photo is None or photo.patient_id != path.patient_id:
            raise not_found("analysis")
    else:
        analyses = repo.list_analyses(s, cid, patient_id=path.patient_id)
        if not analyses:
            raise ApiError(409, "no_analysis", "This patient has no analysed photo yet: upload one first.")
        analysis = max(analyses, key=lambda a: (a.created_at, a.id))
    intake_row = repo.latest_intake(s, cid, path.patient_id)
    if intake_row is None:
        raise ApiError(409, "no_intake", "This patient has no intake yet: PUT /api/v1/patients/{id}/intake first.")
    intake = parse_intake(intake_row.document, source="stored intake")
    plan = make_plan(analysis.document, intake, start=body.start or dt.date.today(), template=body.template)
    row = repo.add_plan(s, cid, path.patient_id, plan.to_dict(), PLAN_VERSION, analysis_id=analysis.id)
    return json_response(plan_out(row), 201, {"Location": url_for("plans.get_plan", plan_id=row.id)})


@bp.get("/patients/<int:patient_id>/plan", responses={200: PlanOut, 404: problem_ref("no patient or no plan")})
def latest_plan(path: PatientPath):
    """The patient's latest plan"""
    require_patient(path.patient_id)
    plans = repo.list_plans(db_session(), clinic_id(), path.patient_id)
    if not plans:
        raise ApiError(404, "no_plan", "This patient has no plan yet.")
    return json_response(plan_out(plans[-1]))


@bp.get("/plans/<int:plan_id>", responses={200: PlanOut, 404: problem_ref("no such plan")})
def get_plan(path: PlanPath):
    """Get a plan"""
    plan = repo.get_plan(db_session(), clinic_id(), path.plan_id)
    if plan is None:
        raise not_found("plan")
    return json_response(plan_out(plan))
