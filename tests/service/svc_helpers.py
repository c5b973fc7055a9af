"""Helpers of the service tests (fixtures in conftest.py): the isolated databases of the
storage tests, the seeded world (clinics A and B, users, tokens), clients, uploads, and
the checks of the problem+json shape and of "another clinic's id looks missing"."""
from __future__ import annotations

import importlib.util
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_images" / "astronaut_render.jpg"

# tests/storage/conftest.py knows how to make an isolated database (SQLite file or a fresh
# PostgreSQL schema); load it by path (tests/ is not a package).
_spec = importlib.util.spec_from_file_location("_mesoscan_storage_fixtures", ROOT / "tests" / "storage" / "conftest.py")
storage_fixtures = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("_mesoscan_storage_fixtures", storage_fixtures)
_spec.loader.exec_module(storage_fixtures)
database = storage_fixtures.database
BACKENDS = storage_fixtures.BACKENDS

FAST_HASH = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}   # argon2id, test speed only
PASSWORD_A = "correct horse battery"
PASSWORD_VIEWER = "viewer password 1"


@dataclass
class World:
    backend: str
    app: object
    clinic_a: int
    clinic_b: int
    token_a: str
    token_b: str
    token_a_id: int
    email_a: str = "pat@clinic-a.example"
    email_viewer: str = "viewer@clinic-a.example"
    data_dir: Path | None = None
    shared: dict = field(default_factory=dict)   # per-module memo (e.g. the analysed upload)

    def client(self):
        return self.app.test_client()

    def a(self):
        """A client of clinic A authenticated by its API token."""
        return TokenClient(self.app.test_client(), self.token_a)

    def b(self):
        return TokenClient(self.app.test_client(), self.token_b)

    def login(self, email: str | None = None, password: str = PASSWORD_A):
        c = self.app.test_client()
        r = c.post("/api/v1/session", json={"email": email or self.email_a, "password": password})
        assert r.status_code == 200, r.get_data(as_text=True)
        return c, r.get_json()["csrf_token"]


class TokenClient:
    """A test client that sends ``Authorization: Bearer`` on every request."""

    def __init__(self, client, token: str):
        self.c = client
        self.token = token

    def _h(self, kw):
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Authorization", f"Bearer {self.token}")
        kw["headers"] = headers
        return kw

    def get(self, url, **kw):
        return self.c.get(url, **self._h(kw))

    def post(self, url, **kw):
        return self.c.post(url, **self._h(kw))

    def put(self, url, **kw):
        return self.c.put(url, **self._h(kw))

    def patch(self, url, **kw):
        return self.c.patch(url, **self._h(kw))

    def delete(self, url, **kw):
        return self.c.delete(url, **self._h(kw))


def upload(client, data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg", **fields):
    form = {"image": (io.BytesIO(data), filename, content_type), **{k: str(v) for k, v in fields.items()}}
    return client.post("/api/v1/analyses", data=form, content_type="multipart/form-data")


def make_app(data_dir: Path, url: str, analyzer, **extra):
    from service.app import create_app

    config = {"TESTING": True, "DATA_DIR": data_dir, "DATABASE_URL": url, "SECRET_KEY": "test-secret-key-" + "x" * 32,
              "PASSWORD_HASH_PARAMS": FAST_HASH, "PRELOAD_MODEL": False, "ANALYZER": analyzer}
    config.update(extra)
    return create_app(config)


def seed(app) -> dict:
    from service.storage import repository as repo

    st = app.extensions["mesoscan"]
    with st.storage.session() as s:
        a = repo.create_clinic(s, "Clinic A")
        b = repo.create_clinic(s, "Clinic B")
        repo.create_user(s, a.id, "pat@clinic-a.example", st.hasher.hash(PASSWORD_A), "practitioner")
        repo.create_user(s, a.id, "viewer@clinic-a.example", st.hasher.hash(PASSWORD_VIEWER), "viewer")
        repo.create_user(s, b.id, "sam@clinic-b.example", st.hasher.hash("clinic b password"), "practitioner")
        ta_row, ta = repo.create_api_token(s, a.id, "tablet-a")
        _, tb = repo.create_api_token(s, b.id, "tablet-b")
    return {"clinic_a": a.id, "clinic_b": b.id, "token_a": ta, "token_b": tb, "token_a_id": ta_row.id}


def assert_problem(resp, status: int, code: str | None = None) -> dict:
    """The response is RFC 9457 problem+json with mesoscan's members."""
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/problem+json", resp.mimetype
    body = resp.get_json(force=True)
    for key in ("type", "title", "status", "detail", "instance", "code", "retake", "request_id"):
        assert key in body, f"{key} missing from {body}"
    assert body["status"] == status
    assert body["type"] == f"urn:mesoscan:problem:{body['code']}"
    assert body["request_id"] == resp.headers["X-Request-ID"]
    if code is not None:
        assert body["code"] == code, body
    text = resp.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return body


def same_as_missing(resp_other, resp_missing) -> None:
    """Another clinic's id is answered exactly like an id that does not exist."""
    assert resp_other.status_code == resp_missing.status_code == 404
    a, b = resp_other.get_json(force=True), resp_missing.get_json(force=True)
    for body in (a, b):
        body.pop("request_id", None)
        body.pop("instance", None)
    assert a == b
