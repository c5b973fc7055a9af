"""Login throttling (brute-force protection) with Flask-Limiter.

The two password logins, ``POST /api/v1/session`` and the web form ``POST /login``, share two
sets of counters:

* per client address (``request.remote_addr``, which ``MESOSCAN_PROXY_FIX`` makes the real
  client behind trusted proxies; IPv6 counted per /64, what one host usually gets), so one
  address cannot try passwords on many accounts;
* per submitted e-mail address (stripped, lower-cased, kept only as an HMAC under the secret
  key), so many addresses cannot try passwords on one account.

Only **failed** logins (answered 401) use up the budget ``LOGIN_RATE_LIMIT`` (default
``10 per minute;50 per hour``, each counter on its own, moving windows): a clinic whose staff
share one public address is not locked out by its own successful logins. Once either counter is
full, the next attempt is refused before the password is checked, even a right one: 429
``too_many_login_attempts`` with ``Retry-After`` (problem+json from the API, the login form with
the message on the web). Nothing else is throttled.

Counters live in ``RATELIMIT_STORAGE_URI`` (default ``memory://``: per process, so with several
gunicorn workers each worker counts on its own and a recycled worker starts from zero;
``redis://host:6379`` shares them between workers and servers, with per-process memory as the
fallback while Redis is down).

Known limits: a failure is counted when its answer goes out, so attempts already in flight
when the budget runs out still get their answer (the overshoot is at most the requests served
at once); and anyone can lock an account out of password logins by failing on purpose (the
per-e-mail counter), which is the price of stopping many addresses on one account.

Each app gets its own :class:`~flask_limiter.Limiter` (``init_app``, after the blueprints are
registered): apps in one process (tests) never share counters or settings.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded

from service.errors import ApiError

# The password logins (their POSTs: GET /login only shows the form).
LOGIN_ENDPOINTS = ("session.create_session", "web.login")
EXTENSION_KEY = "mesoscan_login_limiter"
KEY_PREFIX = "mesoscan-login"

log = logging.getLogger("mesoscan.auth")


class LoginThrottled(ApiError):
    """Too many failed logins for this client address or e-mail address."""

    def __init__(self, retry_after: int):
        super().__init__(429, "too_many_login_attempts",
                         f"Too many failed logins from this address or for this account. "
                         f"Try again in {_wait_words(retry_after)}.",
                         headers={"Retry-After": str(retry_after)}, retry_after=retry_after)
        self.retry_after = retry_after


def _wait_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def client_key() -> str:
    """The client address (IPv6: its /64)."""
    addr = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return "ip:" + (addr or "unknown")
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return "ip:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return f"ip:{ip}"


def submitted_email() -> str:
    """The e-mail address of the login attempt (JSON body or form), stripped and lower-cased."""
    email = None
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            email = body.get("email")
    else:
        email = request.form.get("email")
    return email.strip().lower() if isinstance(email, str) else ""


def email_key() -> str:
    """The submitted e-mail address as an HMAC: no address in the counter store or its logs."""
    digest = hmac.new(str(current_app.config["SECRET_KEY"]).encode(), submitted_email().encode(),
                      hashlib.sha256).hexdigest()
    return "email:" + digest[:32]


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _retry_after(limiter: Limiter) -> int:
    """Seconds until every breached counter has room again."""
    now = time.time()
    resets = [lim.window[0] for lim in limiter.current_limits if lim.breached]   # (reset time, remaining)
    return max(1, math.ceil(max(resets, default=now + 60) - now))


def _refuse_when_throttled(limiter: Limiter, limited_view):
    @functools.wraps(limited_view)
    def view(*args, **kwargs):
        try:
            return limited_view(*args, **kwargs)
        except RateLimitExceeded:
            retry_after = _retry_after(limiter)
            log.warning("login throttled", extra={"endpoint": request.endpoint, "retry_after": retry_after})
            raise LoginThrottled(retry_after) from None

    return view


def init_app(app: Flask) -> Limiter:
    """Throttle the login endpoints registered on ``app`` (call after registering blueprints)."""
    limit = app.config["LOGIN_RATE_LIMIT"]
    limiter = Limiter(
        key_func=client_key,
        storage_uri=app.config["RATELIMIT_STORAGE_URI"],
        strategy="moving-window",
        key_prefix=KEY_PREFIX,
        headers_enabled=False,            # no X-RateLimit-Remaining telling a guesser its budget
        fail_on_first_breach=False,       # see every breached counter: Retry-After is the longest wait
        in_memory_fallback_enabled=True,  # Redis down: count in this process rather than fail
    )
    limiter.init_app(app)
    # shared: the API and the web form draw on the same counters
    per_client = limiter.shared_limit(limit, scope="login-client", key_func=client_key, methods=["POST"],
                                      deduct_when=_failed)
    per_email = limiter.shared_limit(limit, scope="login-email", key_func=email_key, methods=["POST"],
                                     deduct_when=_failed)
    for endpoint in LOGIN_ENDPOINTS:
        view = app.view_functions.get(endpoint)
        if view is None:   # no web pages in this build
            continue
        app.view_functions[endpoint] = _refuse_when_throttled(limiter, per_client(per_email(view)))
    app.extensions[EXTENSION_KEY] = limiter
    return limiter


def limiter_for(app: Flask) -> Limiter:
    return app.extensions[EXTENSION_KEY]
