"""App factory, configuration, operations endpoints, OpenAPI/docs, the error format, request
ids and structured logs (SQLite only: none of this depends on the database)."""
from __future__ import annotations

import io
import json
import logging
import os
import stat

import pytest

from svc_helpers import assert_problem


# --- configuration -------------------------------------------------------------------------


def test_secret_key_generated_once_with_mode_0600(tmp_path):
    from service.config import finalize, from_env

    s1 = finalize(from_env({"MESOSCAN_DATA_DIR": str(tmp_path)}))
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    s2 = finalize(from_env({"MESOSCAN_DATA_DIR": str(tmp_path)}))
    assert s1["SECRET_KEY"] == s2["SECRET_KEY"] and len(s1["SECRET_KEY"]) >= 32
    s3 = finalize(from_env({"MESOSCAN_DATA_DIR": str(tmp_path), "MESOSCAN_SECRET_KEY": "k" * 40}))
    assert s3["SECRET_KEY"] == "k" * 40


def test_config_defaults_and_environment(tmp_path):
    from service.config import finalize, from_env

    s = finalize(from_env({"MESOSCAN_DATA_DIR": str(tmp_path)}))
    assert s["MAX_CONTENT_LENGTH"] == 40 * 2**20
    assert s["DATABASE_URL"] == f"sqlite:///{tmp_path / 'mesoscan.db'}"
    assert s["SESSION_COOKIE_SECURE"] is True and s["SESSION_COOKIE_HTTPONLY"] is True
    assert s["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert s["PERMANENT_SESSION_LIFETIME"].total_seconds() == 12 * 3600
    assert s["SESSION_IDLE"].total_seconds() == 3600
    s = finalize(from_env({"MESOSCAN_DATA_DIR": str(tmp_path), "MESOSCAN_MAX_UPLOAD_MB": "5",
                           "DATABASE_URL": "postgresql://u@h/db", "MESOSCAN_COOKIE_SECURE": "0"}))
    assert s["MAX_CONTENT_LENGTH"] == 5 * 2**20
    assert s["DATABASE_URL"] == "postgresql+psycopg://u@h/db"
    assert s["SESSION_COOKIE_SECURE"] is False
    with pytest.raises(ValueError, match="MESOSCAN_MAX_UPLOAD_MB"):
        from_env({"MESOSCAN_MAX_UPLOAD_MB": "lots"})


# --- operations ----------------------------------------------------------------------------


def test_healthz_and_readyz(sqlite_world):
    c = sqlite_world.client()
    r = c.get("/healthz")
    assert r.get_json() == {"status": "ok"} and r.headers["X-Content-Type-Options"] == "nosniff"
    r = c.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"] == {"database": "ok", "model": "ok"}


def test_readyz_reports_database_down(sqlite_world, monkeypatch):
    engine = sqlite_world.app.extensions["mesoscan"].storage.engine

    def broken(*a, **k):
        raise OSError("connection refused")

    monkeypatch.setattr(engine, "connect", broken)
    r = sqlite_world.client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["database"] == "unreachable"


def test_readyz_not_ready_until_model_loaded(sqlite_world, monkeypatch):
    from service import extensions

    st = sqlite_world.app.extensions["mesoscan"]
    monkeypatch.setattr(st, "analyzer", None)
    monkeypatch.setattr(extensions, "_process_analyzer", None)
    r = sqlite_world.client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["model"] == "not_loaded"


def test_metrics_expose_request_latency(sqlite_world):
    c = sqlite_world.client()
    c.get("/healthz")
    text = c.get("/metrics").get_data(as_text=True)
    assert 'mesoscan_http_request_duration_seconds_bucket{endpoint="ops.healthz",le="0.005",method="GET",status="200"}' in text \
        or 'endpoint="ops.healthz"' in text
    assert "mesoscan_analyses_total" in text or "# HELP mesoscan_analyses_total" in text
    assert "mesoscan_image_rejections_total" in text


# --- OpenAPI and docs ----------------------------------------------------------------------


def test_openapi_document(sqlite_world):
    r = sqlite_world.client().get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for p, methods in {
        "/api/v1/analyses": {"post"}, "/api/v1/analyses/{analysis_id}": {"get"},
        "/api/v1/analyses/{analysis_id}/overlays/{layer}.png": {"get"},
        "/api/v1/patients": {"get", "post"}, "/api/v1/patients/{patient_id}": {"get", "patch", "delete"},
        "/api/v1/patients/{patient_id}/intake": {"get", "put"},
        "/api/v1/patients/{patient_id}/visits": {"get", "post"}, "/api/v1/visits/{visit_id}": {"get"},
        "/api/v1/patients/{patient_id}/plan": {"get", "post"}, "/api/v1/plans/{plan_id}": {"get"},
        "/api/v1/session": {"get", "post", "delete"},
    }.items():
        assert methods <= set(paths[p]), (p, set(paths[p]))
    upload = paths["/api/v1/analyses"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = doc["components"]["schemas"][upload.rsplit("/", 1)[1]]
    assert form["properties"]["image"]["type"] == "string" and form["properties"]["image"]["format"] == "binary"
    assert "image" in form["required"]
    schemas = doc["components"]["schemas"]
    assert {"Problem", "Intake", "PatientCreate", "VisitCreate", "PlanCreate"} <= set(schemas)
    assert schemas["PatientCreate"]["required"] == ["code"]
    intake_body = paths["/api/v1/patients/{patient_id}/intake"]["put"]["requestBody"]
    assert intake_body["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Intake"
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "cookieAuth"}
    err = paths["/api/v1/patients"]["get"]["responses"]["401"]["content"]
    assert err["application/problem+json"]["schema"]["$ref"] == "#/components/schemas/Problem"
    # every $ref resolves
    text = json.dumps(doc)
    import re
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in schemas, ref


def test_request_model_schema_is_built_once_and_handed_out_as_a_copy(monkeypatch):
    from pydantic import BaseModel

    from service.api import schemas

    built = []
    original = BaseModel.model_json_schema.__func__
    monkeypatch.setattr(schemas, "_SCHEMAS", {})
    monkeypatch.setattr(BaseModel, "model_json_schema",
                        classmethod(lambda cls, *a, **k: built.append(cls) or original(cls, *a, **k)))
    first = schemas.PatientListQuery.model_json_schema()
    first["properties"].clear()                     # a caller editing its copy
    second = schemas.PatientListQuery.model_json_schema()
    assert built == [schemas.PatientListQuery]
    assert {"limit", "q"} <= set(second["properties"])
    schemas.PatientListQuery.model_json_schema(mode="serialization")   # other arguments: their own entry
    assert len(built) == 2


def test_docs_page_works_offline(sqlite_world):
    c = sqlite_world.client()
    r = c.get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    import re
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert srcs and all(s.startswith("/api/v1/docs/assets/") for s in srcs), srcs
    for s in srcs:
        assert c.get(s).status_code == 200, s
    assert "/api/v1/openapi.json" in html
    assert c.get("/").status_code == 302


# --- errors --------------------------------------------------------------------------------


def test_unauthenticated_is_401_problem(sqlite_world):
    r = sqlite_world.client().get("/api/v1/patients")
    assert_problem(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_route_and_method(sqlite_world):
    c = sqlite_world.a()
    assert_problem(c.get("/api/v1/nothing-here"), 404, "not_found")
    r = c.c.put("/api/v1/patients")
    body = assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"] and body["title"]


def test_internal_error_never_leaks_a_traceback(sqlite_world, monkeypatch, caplog):
    from service.api import patients

    def boom(*a, **k):
        raise RuntimeError("secret-internal-detail in /srv/mesoscan/service.py")

    monkeypatch.setattr(patients.repo, "list_patients", boom)
    with caplog.at_level(logging.ERROR, logger="mesoscan.errors"):
        r = sqlite_world.a().get("/api/v1/patients", headers={"X-Request-ID": "trace-me-42"})
    body = assert_problem(r, 500, "internal_error")
    text = r.get_data(as_text=True)
    assert "secret-internal-detail" not in text and "RuntimeError" not in text and ".py" not in text
    assert body["request_id"] == "trace-me-42"
    # ...but the log has it, under the request id
    rec = [x for x in caplog.records if x.name == "mesoscan.errors"][-1]
    assert rec.exc_info and "secret-internal-detail" in str(rec.exc_info[1])
    assert rec.request_id == "trace-me-42"


def test_request_id_accepted_or_generated(sqlite_world):
    c = sqlite_world.client()
    r = c.get("/healthz", headers={"X-Request-ID": "abc-123_x.y:z"})
    assert r.headers["X-Request-ID"] == "abc-123_x.y:z"
    r = c.get("/healthz", headers={"X-Request-ID": "bad id <script>" + "x" * 200})
    assert len(r.headers["X-Request-ID"]) == 32 and "<" not in r.headers["X-Request-ID"]
    r1, r2 = c.get("/healthz"), c.get("/healthz")
    assert r1.headers["X-Request-ID"] != r2.headers["X-Request-ID"]


def test_413_is_problem_json(sqlite_world, monkeypatch):
    monkeypatch.setitem(sqlite_world.app.config, "MAX_CONTENT_LENGTH", 50_000)
    data = {"image": (io.BytesIO(b"\xff\xd8\xff" + b"0" * 60_000), "big.jpg", "image/jpeg")}
    r = sqlite_world.a().post("/api/v1/analyses", data=data, content_type="multipart/form-data")
    body = assert_problem(r, 413, "payload_too_large")
    assert "MiB" in body["detail"]


def test_json_body_that_is_not_json(sqlite_world):
    r = sqlite_world.a().post("/api/v1/patients", data="{not json", content_type="application/json")
    assert_problem(r, 400, "invalid_json")


# --- logs ----------------------------------------------------------------------------------


def test_access_log_is_one_json_object_per_line(sqlite_world):
    from service.logs import make_handler

    stream = io.StringIO()
    handler = make_handler("json", stream)
    logger = logging.getLogger("mesoscan.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        sqlite_world.a().get("/api/v1/patients?limit=3", headers={"X-Request-ID": "log-check-1"})
        sqlite_world.client().get("/api/v1/patients")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["request_id"] == "log-check-1"
    assert first["method"] == "GET" and first["path"] == "/api/v1/patients" and first["status"] == 200
    assert isinstance(first["duration_ms"], float) and first["clinic_id"] == sqlite_world.clinic_a
    assert lines[1]["status"] == 401 and lines[1]["request_id"]
    assert {"ts", "level", "logger", "message"} <= set(first)


def test_json_formatter_includes_exception(sqlite_world):
    from service.logs import JsonFormatter

    try:
        raise ValueError("x")
    except ValueError:
        import sys
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    out = json.loads(JsonFormatter().format(rec))
    assert out["message"] == "failed here" and "ValueError" in out["exc_info"] and out["request_id"] is None


def test_create_app_reads_environment(tmp_path, monkeypatch, analyzer):
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MESOSCAN_MAX_UPLOAD_MB", "3")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    from service.app import create_app

    app = create_app({"TESTING": True, "PRELOAD_MODEL": False, "ANALYZER": analyzer})
    try:
        assert app.config["MAX_CONTENT_LENGTH"] == 3 * 2**20
        assert (tmp_path / "mesoscan.db").exists() and (tmp_path / "secret_key").exists()
        assert os.stat(tmp_path / "secret_key").st_mode & 0o077 == 0
    finally:
        app.extensions["mesoscan"].storage.close()
