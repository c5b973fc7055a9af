"""Every error as RFC 9457 problem details (``application/problem+json``), mapped in one place.

A problem has ``type`` (``urn:mesoscan:problem:<code>``), ``title``, ``status``, ``detail``,
``instance`` (the request path), and mesoscan's members: ``code`` (the machine-readable reason:
the pipeline's reason code for a rejected photo), ``retake`` (would a new photo help?),
``request_id``, and where they apply ``field`` and ``errors`` (invalid input), ``quality`` and
``face`` (a photo the quality gate refused).

Mapping: :class:`ApiError` as raised (also ``service.throttle.LoginThrottled``: 429 with
``Retry-After``); ``ImageRejected`` 422 (415 when the bytes are no
supported image, decided by the upload view); ``InvalidInput`` 422; storage ``NotFound`` 404,
``Conflict`` 409; ``ModelUnavailable`` 503; any other ``MesoscanError`` 422; HTTP errors with
their status (413 for a body over ``MAX_CONTENT_LENGTH``); anything else 500 with a generic
detail: the traceback goes to the log under the request id, never to the client.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, current_app, g, json, request
from flask_wtf.csrf import CSRFError
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from pipelines.errors import ImageRejected, InvalidInput, MesoscanError, ModelUnavailable
from service.storage.repository import BlobMissing, Conflict, NotFound

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:mesoscan:problem:"

log = logging.getLogger("mesoscan.errors")


class ApiError(Exception):
    """An error the API answers with on purpose."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.headers = headers or {}
        self.extra = extra


def not_found(kind: str) -> ApiError:
    """The one answer for a missing row and for another clinic's row (same body)."""
    return ApiError(404, "not_found", f"No {kind} with this id in your clinic.")


_TITLES = {
    "invalid_input": "Invalid input",
    "not_found": "Not found",
    "conflict": "Conflict",
    "unauthorized": "Authentication required",
    "invalid_token": "Invalid or revoked token",
    "invalid_credentials": "Wrong email or password",
    "session_expired": "Session expired",
    "too_many_login_attempts": "Too many login attempts",
    "forbidden": "Forbidden",
    "csrf_failed": "CSRF token missing or invalid",
    "payload_too_large": "Upload too large",
    "unsupported_media_type": "Unsupported media type",
    "internal_error": "Internal server error",
    "model_unavailable": "Analysis model unavailable",
}


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def problem_response(status: int, code: str, detail: str, *, title: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title or _TITLES.get(code) or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": request.path if request else None,
        "code": code,
        "retake": bool(extra.pop("retake", False)),
        "request_id": g.get("request_id"),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _field_of(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p != "__root__"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


def validation_problem(exc: ValidationError, where: str = "body") -> Response:
    """A pydantic error on a request part as a 422 naming every offending field."""
    errors = [{"field": _field_of(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": None, "message": "invalid"}
    detail = f"{where}: field '{first['field']}': {first['message']}" if first["field"] else f"{where}: {first['message']}"
    return problem_response(422, "invalid_input", detail, field=first["field"], errors=errors)


def openapi_validation_callback(exc: ValidationError) -> Response:
    """flask-openapi3's hook: request parts that fail their pydantic model."""
    where = "request"
    if request.mimetype == "application/json" and request.get_data() and request.get_json(silent=True) is None:
        return problem_response(400, "invalid_json", "The request body is not valid JSON.")
    return validation_problem(exc, where)


def _http_problem(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        detail = (f"The request body exceeds the limit of {limit / 2**20:.0f} MiB." if limit
                  else "The request body is too large.")
        return problem_response(413, "payload_too_large", detail)
    code = _snake(exc.name or "error")
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    detail = exc.description or exc.name
    if status == 404:
        detail = "No such resource."
    return problem_response(status, code, detail, title=_TITLES.get(code, exc.name), headers=headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return problem_response(exc.status, exc.code, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return problem_response(403, "csrf_failed", f"{exc.description} Send the token from the session "
                                "response in the X-CSRF-Token header.")

    @app.errorhandler(ImageRejected)
    def _rejected(exc: ImageRejected):
        details = dict(exc.details or {})
        return problem_response(422, exc.code, exc.message, title="Photo rejected", retake=exc.retake, **details)

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput):
        return problem_response(422, "invalid_input", exc.message, field=exc.field, reason=exc.code
                                if exc.code != "invalid_input" else None)

    @app.errorhandler(NotFound)
    def _nf(exc: NotFound):
        return problem_response(404, "not_found", "No such object in your clinic.")

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return problem_response(409, "conflict", exc.message)

    @app.errorhandler(ModelUnavailable)
    def _model(exc: ModelUnavailable):
        log.error("model unavailable: %s", exc.message)
        return problem_response(503, "model_unavailable", "The analysis model is not available on this server.")

    @app.errorhandler(BlobMissing)
    def _blob(exc: BlobMissing):
        log.error("blob missing: %s", exc.message)
        return problem_response(500, "blob_missing", "The stored photo is missing; an administrator "
                                "should run `mesoscan fsck`.")

    @app.errorhandler(MesoscanError)
    def _mesoscan(exc: MesoscanError):
        return problem_response(422, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _http_problem(exc)

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        if isinstance(exc, HTTPException):   # pragma: no cover - handled above
            return _http_problem(exc)
        log.exception("unhandled error on %s %s", request.method, request.path,
                      extra={"request_id": g.get("request_id")})
        return problem_response(500, "internal_error", "Something went wrong on the server. Quote the "
                                "request id when you report it.")
