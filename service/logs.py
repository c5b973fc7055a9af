"""Structured logs: one JSON object per line on stderr, each with the request id.

Every request gets an id: the client's ``X-Request-ID`` when it is a sane token (letters,
digits, ``-_.:``; at most 128 characters), else a new random one. It is echoed in the
``X-Request-ID`` response header, put in every problem body, and added to every log line
written while the request is handled. One access line per request (logger
``mesoscan.access``) carries ``method``, ``path``, ``status``, ``duration_ms``,
``request_id``, ``endpoint`` and, once authenticated, ``clinic_id``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_HANDLER_MARK = "_mesoscan_handler"
# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}

access_log = logging.getLogger("mesoscan.access")


def current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra, "exc_info"}``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return super().format(record)


def make_handler(fmt: str = "json", stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to one mesoscan handler (idempotent: replaces an earlier one)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    root.addHandler(make_handler(fmt))
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def init_app(app: Flask) -> None:
    if not app.config.get("TESTING") and app.config.get("CONFIGURE_LOGGING", True):
        configure_logging(app.config.get("LOG_LEVEL", "INFO"), app.config.get("LOG_FORMAT", "json"))

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            resp.headers[REQUEST_ID_HEADER] = rid
        started = g.get("started")
        duration = (time.perf_counter() - started) if started else 0.0
        g.duration_s = duration
        principal = g.get("principal")
        access_log.info(
            "%s %s %s", request.method, request.path, resp.status_code,
            extra={"method": request.method, "path": request.path, "status": resp.status_code,
                   "duration_ms": round(duration * 1000, 2), "endpoint": request.endpoint,
                   "clinic_id": getattr(principal, "clinic_id", None),
                   "bytes_in": request.content_length},
        )
        return resp
