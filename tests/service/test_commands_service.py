"""`mesoscan token`, `mesoscan user` and `mesoscan serve --demo` (without serving)."""
from __future__ import annotations

import io

import pytest

from svc_helpers import TokenClient, assert_problem, make_app


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MESOSCAN_PRELOAD_MODEL", "0")
    return tmp_path


def cli(*args, stdin: str | None = None, monkeypatch=None):
    from service.cli import main

    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(args))


def test_token_create_list_revoke(env, monkeypatch, capsys, analyzer):
    assert cli("token", "create", "--clinic", "Rose Clinic", "--name", "tablet-1") == 2
    assert "--create-clinic" in capsys.readouterr().err
    assert cli("token", "create", "--clinic", "Rose Clinic", "--name", "tablet-1", "--create-clinic") == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("msk_") and "shown only now" in out.err
    assert cli("token", "list") == 0
    listing = capsys.readouterr().out
    assert "tablet-1" in listing and "Rose Clinic" in listing and "active" in listing and token not in listing

    app = make_app(env, f"sqlite:///{env / 'mesoscan.db'}", analyzer)
    try:
        c = TokenClient(app.test_client(), token)
        assert c.get("/api/v1/patients").status_code == 200
        assert cli("token", "revoke", "1") == 0
        assert "revoked" in capsys.readouterr().out
        assert_problem(c.get("/api/v1/patients"), 401, "invalid_token")
        assert cli("token", "revoke", "99") == 2
    finally:
        app.extensions["mesoscan"].storage.close()


def test_user_create_and_login(env, monkeypatch, capsys, analyzer):
    assert cli("user", "create", "--clinic", "Rose Clinic", "--email", "Dr.Who@Example.org", "--password-stdin",
               "--create-clinic", stdin="a long enough password\n", monkeypatch=monkeypatch) == 0
    assert "created" in capsys.readouterr().out
    assert cli("user", "create", "--clinic", "Rose Clinic", "--email", "short@example.org", "--password-stdin",
               stdin="short\n", monkeypatch=monkeypatch) == 2
    assert "at least" in capsys.readouterr().err
    assert cli("user", "create", "--clinic", "Rose Clinic", "--email", "dr.who@example.org", "--password-stdin",
               stdin="another long password\n", monkeypatch=monkeypatch) == 2
    assert "exists" in capsys.readouterr().err
    assert cli("user", "list") == 0
    assert "dr.who@example.org" in capsys.readouterr().out

    # the CLI's hash (argon2 defaults) verifies in the app
    app = make_app(env, f"sqlite:///{env / 'mesoscan.db'}", analyzer)
    try:
        c = app.test_client()
        r = c.post("/api/v1/session", json={"email": "dr.who@example.org", "password": "a long enough password"})
        assert r.status_code == 200 and r.get_json()["clinic"]["name"] == "Rose Clinic"
        assert cli("user", "passwd", "--email", "dr.who@example.org", "--password-stdin",
                   stdin="the next long password\n", monkeypatch=monkeypatch) == 0
        assert_problem(c.get("/api/v1/patients"), 401, "session_expired")
    finally:
        app.extensions["mesoscan"].storage.close()


def test_serve_demo_prints_working_credentials(env, monkeypatch, capsys, analyzer):
    import waitress

    from service import extensions

    served = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: served.update(app=app, **kw))
    monkeypatch.setattr(extensions, "_process_analyzer", analyzer)     # no second model load
    assert cli("serve", "--port", "8123") == 0                        # empty database: demo set up
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/" in out and "demo@mesoscan.local" in out
    password = out.split("password:")[1].split()[0]
    token = out.split("API token:")[1].split()[0]
    app = served["app"]
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert app.config["SESSION_COOKIE_SECURE"] is False          # plain-HTTP development server
    c = app.test_client()
    assert c.post("/api/v1/session", json={"email": "demo@mesoscan.local", "password": password}).status_code == 200
    assert TokenClient(app.test_client(), token).get("/api/v1/patients").status_code == 200

    assert cli("serve", "--port", "8123") == 0                        # a clinic exists, no --demo: nothing
    assert "demo@mesoscan.local" not in capsys.readouterr().out
    assert cli("serve", "--demo") == 0                                # --demo renews password and token
    out2 = capsys.readouterr().out
    assert "renewed" in out2 and out2.split("password:")[1].split()[0] != password
    app2 = served["app"]
    assert_problem(TokenClient(app2.test_client(), token).get("/api/v1/patients"), 401, "invalid_token")
    for a in (app, app2):
        a.extensions["mesoscan"].storage.close()
