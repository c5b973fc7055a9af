"""Health endpoints for load balancers and orchestrators (no authentication, no personal data).

    GET /healthz   200 while the process serves requests (liveness)
    GET /readyz    200 when the database answers and the face model is loaded, else 503
                   with what is missing (readiness)
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, jsonify

from pipelines import PIPELINE_VERSION
from service.extensions import state

bp = Blueprint("ops", __name__)
log = logging.getLogger("mesoscan.ops")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        with state().storage.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:   # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    checks["model"] = "ok" if state().analyzer_ready else "not_loaded"
    ready = all(v == "ok" for v in checks.values())
    resp = jsonify(status="ready" if ready else "not_ready", checks=checks, pipeline_version=PIPELINE_VERSION)
    resp.status_code = 200 if ready else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp
