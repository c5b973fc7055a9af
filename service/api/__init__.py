"""JSON API v1 under ``/api/v1``: one blueprint per resource (``RESOURCES``), registered by
:func:`register`. Progress, charts, before/after and visit reports live in ``progress.py``.
"""
from __future__ import annotations

import importlib
import importlib.util

from flask_openapi3 import OpenAPI

from pipelines.planning.intake import Intake
from service.api.common import SECURITY_SCHEMES
from service.api.schemas import Problem

RESOURCES = ("session", "patients", "visits", "analyses", "plans", "progress")


def register(app: OpenAPI) -> None:
    from flask_openapi3.models import Schema

    from service.api import docs

    for name in RESOURCES:
        if importlib.util.find_spec(f"service.api.{name}") is None:
            continue   # a resource still being written
        module = importlib.import_module(f"service.api.{name}")
        app.register_api(module.bp)
    app.register_blueprint(docs.bp)
    # Schemas referenced by hand-written parts of the document (problems, the intake body).
    for model in (Problem, Intake):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            app.components_schemas.setdefault(name, Schema(**sub))
        app.components_schemas[model.__name__] = Schema(**schema)
    app.security_schemes = SECURITY_SCHEMES
