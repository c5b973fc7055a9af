"""Treatment sessions: the date and what was given.

    POST /api/v1/patients/{id}/visits   record a visit (date, ingredients, device, regions, notes)
    GET  /api/v1/patients/{id}/visits   the patient's visits by date, paginated
    GET  /api/v1/visits/{id}            one visit
"""
from __future__ import annotations

from flask import url_for

from service.api.common import api_blueprint, json_response, page_response, paginate, problem_ref
from service.api.patients import require_patient
from service.api.schemas import PageQuery, PatientPath, VisitCreate, VisitOut, VisitPage, VisitPath
from service.auth import clinic_id
from service.errors import not_found
from service.extensions import db_session
from service.storage import repository as repo

bp = api_blueprint("visits", __name__, "visits", "Treatment sessions: date, ingredients, device, regions, notes")


def visit_out(v) -> dict:
    return VisitOut(id=v.id, patient_id=v.patient_id, date=v.visit_date, ingredients=list(v.ingredients or []),
                    device=v.device, regions=list(v.regions or []), notes=v.notes,
                    created_at=v.created_at).model_dump(mode="json")


@bp.post("/patients/<int:patient_id>/visits", responses={201: VisitOut, 404: problem_ref("no such patient")})
def create_visit(path: PatientPath, body: VisitCreate):
    """Record a treatment session"""
    require_patient(path.patient_id)
    visit = repo.add_visit(db_session(), clinic_id(), path.patient_id, body.date, ingredients=body.ingredients,
                           device=body.device, regions=body.regions, notes=body.notes)
    return json_response(visit_out(visit), 201, {"Location": url_for("visits.get_visit", visit_id=visit.id)})


@bp.get("/patients/<int:patient_id>/visits", responses={200: VisitPage, 404: problem_ref("no such patient")})
def list_visits(path: PatientPath, query: PageQuery):
    """The patient's visits, oldest first"""
    require_patient(path.patient_id)
    rows = repo.list_visits(db_session(), clinic_id(), path.patient_id)
    page, next_key = paginate(rows, lambda v: (v.visit_date, v.id), query.limit, query.cursor, 2)
    return page_response([visit_out(v) for v in page], next_key)


@bp.get("/visits/<int:visit_id>", responses={200: VisitOut, 404: problem_ref("no such visit")})
def get_visit(path: VisitPath):
    """Get a visit"""
    visit = repo.get_visit(db_session(), clinic_id(), path.visit_id)
    if visit is None:
        raise not_found("visit")
    return json_response(visit_out(visit))
