"""Logins, cookie sessions (expiry, CSRF), API tokens (revocation), roles."""
from __future__ import annotations

import pytest

from svc_helpers import PASSWORD_A, PASSWORD_VIEWER, assert_problem


def test_login_sets_a_hardened_cookie_and_returns_csrf(world):
    c = world.client()
    r = c.post("/api/v1/session", json={"email": world.email_a.upper(), "password": PASSWORD_A})
    assert r.status_code == 200
    body = r.get_json()
    assert body["kind"] == "session" and body["user"]["email"] == world.email_a
    assert body["clinic"] == {"id": world.clinic_a, "name": "Clinic A"}
    assert body["csrf_token"] and body["expires_at"] and body["idle_timeout_s"] == 3600
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("mesoscan_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie            # testing; production: see test_secure_cookie_outside_testing
    r = c.get("/api/v1/session")
    assert r.status_code == 200 and r.get_json()["user"]["email"] == world.email_a
    assert c.get("/api/v1/patients").status_code == 200


def test_secure_cookie_outside_testing(world):
    from service.config import finalize, from_env

    s = finalize({**from_env({}), "DATA_DIR": world.data_dir, "SECRET_KEY": "s" * 40})
    assert s["SESSION_COOKIE_SECURE"] is True


def test_wrong_password_and_unknown_email_look_the_same(world):
    c = world.client()
    r1 = c.post("/api/v1/session", json={"email": world.email_a, "password": "wrong password"})
    r2 = c.post("/api/v1/session", json={"email": "nobody@nowhere.example", "password": "wrong password"})
    b1 = assert_problem(r1, 401, "invalid_credentials")
    b2 = assert_problem(r2, 401, "invalid_credentials")
    assert b1["detail"] == b2["detail"]
    assert "Set-Cookie" not in r1.headers or "mesoscan_session=;" in r1.headers.get("Set-Cookie", "")
    assert_problem(c.get("/api/v1/session"), 401, "unauthorized")


def test_login_needs_json(world):
    r = world.client().post("/api/v1/session", data={"email": world.email_a, "password": PASSWORD_A})
    body = assert_problem(r, 422, "invalid_input")
    assert body["errors"]


def test_cookie_writes_need_the_csrf_token(world):
    c, token = world.login()
    r = c.post("/api/v1/patients", json={"code": "CSRF-1"})
    assert_problem(r, 403, "csrf_failed")
    r = c.post("/api/v1/patients", json={"code": "CSRF-1"}, headers={"X-CSRF-Token": "forged"})
    assert_problem(r, 403, "csrf_failed")
    r = c.post("/api/v1/patients", json={"code": "CSRF-1"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201
    # another session's token does not work here
    c2, token2 = world.login()
    pid = r.get_json()["id"]
    assert_problem(c.patch(f"/api/v1/patients/{pid}", json={"name": "X"}, headers={"X-CSRF-Token": token2}),
                   403, "csrf_failed")
    # reads need no token
    assert c.get(f"/api/v1/patients/{pid}").status_code == 200


def test_bearer_writes_need_no_csrf_token(world):
    r = world.a().post("/api/v1/patients", json={"code": "BEARER-1"})
    assert r.status_code == 201


def test_token_revocation_is_immediate(world):
    from service.storage import repository as repo

    st = world.app.extensions["mesoscan"]
    with st.storage.session() as s:
        row, token = repo.create_api_token(s, world.clinic_a, "tablet-to-revoke")
    from svc_helpers import TokenClient

    c = TokenClient(world.client(), token)
    assert c.get("/api/v1/patients").status_code == 200
    with st.storage.session() as s:
        repo.revoke_api_token(s, world.clinic_a, row.id)
        assert repo.list_api_tokens(s, world.clinic_a)[-1].last_used_at is not None
    r = c.get("/api/v1/patients")
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize("header", ["Bearer", "Basic dXNlcjpwYXNz", "Bearer msk_not-a-real-token", "Token abc"])
def test_bad_authorization_headers(world, header):
    r = world.client().get("/api/v1/patients", headers={"Authorization": header})
    assert_problem(r, 401, "invalid_token")


def test_viewer_may_only_read(world):
    c, token = world.login(world.email_viewer, PASSWORD_VIEWER)
    assert c.get("/api/v1/patients").status_code == 200
    r = c.post("/api/v1/patients", json={"code": "VIEW-1"}, headers={"X-CSRF-Token": token})
    assert_problem(r, 403, "forbidden")


def test_session_idle_and_absolute_expiry(world, monkeypatch):
    import service.auth as auth

    real = auth._now()
    c, _ = world.login()
    monkeypatch.setattr(auth, "_now", lambda: real + 50 * 60)         # 50 min later: still fine
    assert c.get("/api/v1/patients").status_code == 200
    monkeypatch.setattr(auth, "_now", lambda: real + 50 * 60 + 61 * 60)   # idle 61 min
    assert_problem(c.get("/api/v1/patients"), 401, "session_expired")
    assert_problem(c.get("/api/v1/patients"), 401, "unauthorized")        # the session was cleared

    monkeypatch.setattr(auth, "_now", lambda: real)
    c, _ = world.login()
    t = real
    for _ in range(25):                                                   # active every 30 min ...
        t += 30 * 60
        monkeypatch.setattr(auth, "_now", lambda t=t: t)
        r = c.get("/api/v1/session")
        if r.status_code != 200:
            break
    assert_problem(r, 401, "session_expired")                             # ... ends after 12 h
    assert t - real > 12 * 3600 - 3600


def test_logout_needs_csrf_and_ends_the_session(world):
    c, token = world.login()
    assert_problem(c.delete("/api/v1/session"), 403, "csrf_failed")
    assert c.get("/api/v1/session").status_code == 200
    r = c.delete("/api/v1/session", headers={"X-CSRF-Token": token})
    assert r.status_code == 204
    assert_problem(c.get("/api/v1/patients"), 401, "unauthorized")
    assert world.client().delete("/api/v1/session").status_code == 204     # idempotent


def test_password_change_ends_sessions(world):
    from service.storage import repository as repo

    c, _ = world.login()
    st = world.app.extensions["mesoscan"]
    with st.storage.session() as s:
        user = repo.get_user_by_email(s, world.email_a)
        repo.set_user_password(s, user.clinic_id, user.id, st.hasher.hash("a brand new password"))
    try:
        assert_problem(c.get("/api/v1/patients"), 401, "session_expired")
    finally:
        with st.storage.session() as s:
            repo.set_user_password(s, user.clinic_id, user.id, st.hasher.hash(PASSWORD_A))


def test_token_session_description(world):
    r = world.a().get("/api/v1/session")
    assert r.status_code == 200
    body = r.get_json()
    assert body["kind"] == "token" and body["clinic"]["id"] == world.clinic_a and body.get("csrf_token") is None


def test_passwords_are_stored_as_argon2id(world):
    from service.storage import repository as repo

    with world.app.extensions["mesoscan"].storage.session() as s:
        assert repo.get_user_by_email(s, world.email_a).password_hash.startswith("$argon2id$")
