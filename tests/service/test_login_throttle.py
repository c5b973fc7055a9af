"""Login throttling (service/throttle.py): failed logins per client address and per e-mail,
shared by the API and the web form; 429 problem+json (or the form) with Retry-After.

One SQLite app for the module with a small limit ("2 per minute"); the counters are cleared
before each test. The limiter does not depend on the database, so PostgreSQL adds nothing here."""
from __future__ import annotations

import re
import uuid

import pytest

from svc_helpers import PASSWORD_A, PASSWORD_VIEWER, assert_problem, make_app, seed

LIMIT = 2   # failed logins a minute, per address and per e-mail


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("throttle")
    app = make_app(tmp, f"sqlite:///{tmp / 'mesoscan.db'}", None, LOGIN_RATE_LIMIT=f"{LIMIT} per minute")
    app.seeded = seed(app)
    yield app
    app.extensions["mesoscan"].storage.close()


@pytest.fixture(autouse=True)
def fresh_counters(app):
    from service.throttle import limiter_for

    limiter_for(app).reset()


EMAIL_A = "pat@clinic-a.example"
EMAIL_VIEWER = "viewer@clinic-a.example"


def api_login(client, email, password, ip):
    return client.post("/api/v1/session", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def assert_throttled(resp) -> int:
    body = assert_problem(resp, 429, "too_many_login_attempts")
    assert body["title"] == "Too many login attempts"
    assert "Too many failed logins" in body["detail"]
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 60           # the window is a minute
    assert body["retry_after"] == retry_after
    assert "mesoscan_session=" not in resp.headers.get("Set-Cookie", "")
    return retry_after


def test_failed_logins_from_one_address_are_throttled_even_with_the_right_password(app):
    c = app.test_client()
    for _ in range(LIMIT):
        assert_problem(api_login(c, EMAIL_A, "wrong password", "10.0.0.1"), 401, "invalid_credentials")
    assert_throttled(api_login(c, EMAIL_A, PASSWORD_A, "10.0.0.1"))
    assert_problem(c.get("/api/v1/session"), 401, "unauthorized")          # not logged in
    # per address: another account from the same address is refused too, before its password is checked
    assert_throttled(api_login(c, EMAIL_VIEWER, PASSWORD_VIEWER, "10.0.0.1"))
    # another account from another address is unaffected
    r = api_login(app.test_client(), EMAIL_VIEWER, PASSWORD_VIEWER, "10.0.0.2")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["user"]["email"] == EMAIL_VIEWER


def test_failed_logins_for_one_email_are_throttled_across_addresses(app):
    c = app.test_client()
    assert_problem(api_login(c, EMAIL_A, "wrong password", "10.0.1.1"), 401, "invalid_credentials")
    assert_problem(api_login(c, EMAIL_A.upper(), "wrong password", "10.0.1.2"), 401, "invalid_credentials")
    # a third, fresh address; the address written differently is the same account
    assert_throttled(api_login(c, "  Pat@Clinic-A.example ", PASSWORD_A, "10.0.1.3"))
    # that address used none of its own budget (a refused attempt does not count)
    r = api_login(app.test_client(), EMAIL_VIEWER, PASSWORD_VIEWER, "10.0.1.3")
    assert r.status_code == 200, r.get_data(as_text=True)


def test_successful_logins_do_not_use_up_the_budget(app):
    for _ in range(LIMIT + 3):
        r = api_login(app.test_client(), EMAIL_A, PASSWORD_A, "10.0.2.1")
        assert r.status_code == 200, r.get_data(as_text=True)
    c = app.test_client()
    assert_problem(api_login(c, EMAIL_A, "wrong password", "10.0.2.1"), 401, "invalid_credentials")
    r = api_login(c, EMAIL_A, PASSWORD_A, "10.0.2.1")              # under the limit: logs in
    assert r.status_code == 200, r.get_data(as_text=True)
    assert c.get("/api/v1/session").get_json()["user"]["email"] == EMAIL_A


def test_invalid_requests_do_not_count(app):
    c = app.test_client()
    for _ in range(LIMIT + 2):      # no password checked: 422, not a failed login
        assert_problem(c.post("/api/v1/session", json={"email": EMAIL_A},
                              environ_base={"REMOTE_ADDR": "10.0.3.1"}), 422, "invalid_input")
    assert api_login(c, EMAIL_A, PASSWORD_A, "10.0.3.1").status_code == 200


def test_ipv6_clients_are_counted_per_64(app):
    c = app.test_client()
    assert api_login(c, "x1@nowhere.example", "wrong", "2001:db8:1:2::1").status_code == 401
    assert api_login(c, "x2@nowhere.example", "wrong", "2001:db8:1:2::ffff").status_code == 401
    assert_throttled(api_login(c, EMAIL_VIEWER, PASSWORD_VIEWER, "2001:db8:1:2:abcd::7"))
    assert api_login(app.test_client(), EMAIL_VIEWER, PASSWORD_VIEWER, "2001:db8:1:3::1").status_code == 200


def test_other_traffic_is_not_throttled(app):
    c = app.test_client()
    for _ in range(LIMIT):
        api_login(c, EMAIL_A, "wrong password", "10.0.4.1")
    assert_throttled(api_login(c, EMAIL_A, PASSWORD_A, "10.0.4.1"))
    ip = {"REMOTE_ADDR": "10.0.4.1"}
    token = app.seeded["token_a"]
    for _ in range(LIMIT + 2):
        assert c.get("/healthz", environ_base=ip).status_code == 200
        r = c.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"}, environ_base=ip)
        assert r.status_code == 200
        assert c.get("/login", environ_base=ip).status_code == 200        # the form is shown
        assert c.get("/api/v1/session", environ_base=ip).status_code == 401


# --- the web form ---------------------------------------------------------------------------


def _csrf(client, ip) -> str:
    r = client.get("/login", environ_base={"REMOTE_ADDR": ip})
    assert r.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', r.get_data(as_text=True)).group(1)


def web_login(client, email, password, ip):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": _csrf(client, ip)},
                       environ_base={"REMOTE_ADDR": ip})


def _error_text(resp) -> str:
    m = re.search(r'id="login-error">([^<]*)<', resp.get_data(as_text=True))
    return m.group(1) if m else ""


def test_web_form_is_throttled_with_a_message(app):
    c = app.test_client()
    r = web_login(c, EMAIL_A, PASSWORD_A, "10.0.5.1")     # the form works
    assert r.status_code == 302 and r.headers["Location"].endswith("/patients")
    c = app.test_client()
    for _ in range(LIMIT):
        r = web_login(c, EMAIL_A, "wrong password", "10.0.5.1")
        assert r.status_code == 401 and _error_text(r) == "Wrong email or password."
    r = web_login(c, EMAIL_A, PASSWORD_A, "10.0.5.1")
    assert r.status_code == 429
    assert r.mimetype == "text/html"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert _error_text(r).startswith("Too many failed logins") and "Try again in" in _error_text(r)
    html = r.get_data(as_text=True)
    assert 'name="password"' in html and f'value="{EMAIL_A}"' in html   # the form again, email kept
    assert "Traceback" not in html
    r = c.get("/patients", environ_base={"REMOTE_ADDR": "10.0.5.1"})      # not logged in
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_web_form_and_api_share_the_counters(app):
    c = app.test_client()
    assert web_login(c, EMAIL_A, "wrong password", "10.0.6.1").status_code == 401
    assert api_login(c, EMAIL_A, "wrong password", "10.0.6.2").status_code == 401
    assert_throttled(api_login(c, EMAIL_A, PASSWORD_A, "10.0.6.3"))          # per e-mail
    assert web_login(c, EMAIL_A, PASSWORD_A, "10.0.6.4").status_code == 429
    c2 = app.test_client()
    assert api_login(c2, "y@nowhere.example", "wrong", "10.0.6.5").status_code == 401
    assert web_login(c2, "z@nowhere.example", "wrong", "10.0.6.5").status_code == 401
    assert web_login(c2, EMAIL_VIEWER, PASSWORD_VIEWER, "10.0.6.5").status_code == 429   # per address


# --- configuration --------------------------------------------------------------------------


def test_settings_from_the_environment(tmp_path):
    from service.config import finalize, from_env

    s = finalize({**from_env({}), "DATA_DIR": tmp_path, "SECRET_KEY": "s" * 40})
    assert s["LOGIN_RATE_LIMIT"] == "10 per minute;50 per hour"
    assert s["RATELIMIT_STORAGE_URI"] == "memory://"
    env = {"MESOSCAN_LOGIN_RATE_LIMIT": "5/minute; 20/hour", "MESOSCAN_RATELIMIT_STORAGE_URI": "redis://r:6379"}
    s = finalize({**from_env(env), "DATA_DIR": tmp_path, "SECRET_KEY": "s" * 40})
    assert s["LOGIN_RATE_LIMIT"] == "5/minute; 20/hour"
    assert s["RATELIMIT_STORAGE_URI"] == "redis://r:6379"
    with pytest.raises(ValueError, match="MESOSCAN_LOGIN_RATE_LIMIT"):
        finalize({**from_env({"MESOSCAN_LOGIN_RATE_LIMIT": "ten a minute"}), "DATA_DIR": tmp_path,
                  "SECRET_KEY": "s" * 40})


def test_default_limit_allows_ten_failures_a_minute(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'mesoscan.db'}", None)
    try:
        seed(app)
        c = app.test_client()
        for _ in range(10):
            assert api_login(c, EMAIL_A, "wrong password", "10.0.7.1").status_code == 401
        assert_throttled(api_login(c, EMAIL_A, PASSWORD_A, "10.0.7.1"))
    finally:
        app.extensions["mesoscan"].storage.close()


def _redis_url() -> str:
    pytest.importorskip("redis")
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except Exception:
        pytest.skip("no Redis at 127.0.0.1:6379")
    return url


def test_redis_counters_are_shared_between_processes(tmp_path):
    """Two apps (as two gunicorn workers) on one Redis count together; random keys, nothing reset."""
    url = _redis_url()
    apps = [make_app(tmp_path / str(i), f"sqlite:///{tmp_path / 'mesoscan.db'}", None, RATELIMIT_STORAGE_URI=url,
                     LOGIN_RATE_LIMIT=f"{LIMIT} per minute") for i in range(2)]
    try:
        ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"
        email = f"{uuid.uuid4().hex}@nowhere.example"
        assert api_login(apps[0].test_client(), email, "wrong", ip).status_code == 401
        assert api_login(apps[1].test_client(), email, "wrong", ip).status_code == 401
        assert_throttled(api_login(apps[0].test_client(), email, "wrong", ip))
        assert_throttled(api_login(apps[1].test_client(), email, "wrong", ip))
    finally:
        for a in apps:
            a.extensions["mesoscan"].storage.close()
