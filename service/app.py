"""The Flask application factory.

    from service.app import create_app
    app = create_app()                      # configuration from the environment
    app = create_app({"DATA_DIR": tmp, "TESTING": True})

Production: ``gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'``.
Development: ``mesoscan serve [--demo]``.

Layout: ``service/api/`` holds the JSON API v1 (one blueprint per resource), ``service/ops.py``
``/healthz`` and ``/readyz``, ``service/metrics.py`` ``/metrics``. The practitioner web pages
go in a ``web`` blueprint (``service/web``, exposing ``bp``), registered here when present;
until then ``/`` points at the API docs.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from flask import redirect, url_for
from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from pipelines import PIPELINE_VERSION
from service import config as config_mod


def create_app(config: dict[str, Any] | None = None) -> OpenAPI:
    settings = config_mod.from_env()
    settings.update(config or {})
    settings = config_mod.finalize(settings)

    from service import errors, extensions, logs, metrics, ops, throttle
    from service.api import register as register_api

    app = OpenAPI(
        __name__,
        info=Info(title="mesoscan API", version="1", description=(
            "Skin analysis for mesotherapy clinics. Authenticate with an API token "
            "(`Authorization: Bearer ...`, from `mesoscan token create`) or a session cookie "
            "(POST /api/v1/session; writes then need the X-CSRF-Token header). Every error is "
            f"RFC 9457 application/problem+json. Pipeline version {PIPELINE_VERSION}.")),
        doc_ui=False,
        validation_error_status=422,
        validation_error_callback=errors.openapi_validation_callback,
    )
    app.config.update(settings)
    app.json.sort_keys = False
    if int(settings.get("PROXY_FIX") or 0) > 0:
        n = int(settings["PROXY_FIX"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)

    logs.init_app(app)            # first: the request id exists before anything can fail
    errors.register_error_handlers(app)
    extensions.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(ops.bp)
    register_api(app)
    _register_web(app)
    throttle.init_app(app)        # after the blueprints: it wraps the two login views

    @app.after_request
    def _security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    return app


def _register_web(app: OpenAPI) -> None:
    if importlib.util.find_spec("service.web") is not None:
        web = importlib.import_module("service.web")
        app.register_blueprint(web.bp)
        return

    def index():
        return redirect(url_for("apidocs.docs"))

    app.add_url_rule("/", "index", index)
