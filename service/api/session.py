"""Cookie sessions for the web front end (JSON equivalents of the login form).

    POST   /api/v1/session   log in with email + password: sets the session cookie, returns the
                             CSRF token to send as X-CSRF-Token on later writes
    GET    /api/v1/session   who am I (session or token), with a fresh CSRF token for sessions
    DELETE /api/v1/session   log out (needs the CSRF token, like every cookie-authenticated write)

Login takes ``application/json`` only: a cross-site HTML form cannot send that without a
CORS preflight, which this API never grants, so login needs no CSRF token of its own.

Login is throttled (service/throttle.py, wrapped around ``create_session`` by the app): after
too many failed logins from one client address or for one e-mail address, a 429
``too_many_login_attempts`` with ``Retry-After``, before the password is checked.
"""
from __future__ import annotations

import logging

from flask import Response, session

from service.api.common import api_blueprint, json_response, problem_ref
from service.api.schemas import LoginBody, SessionOut
from service.auth import authenticate, check_password, describe_session, login, logout
from service.errors import ApiError
from service.storage import repository as repo
from service.extensions import db_session

log = logging.getLogger("mesoscan.auth")

bp = api_blueprint("session", __name__, "session", "Log in and out (cookie sessions for the web front end)",
                   auth=False)


@bp.post("/session", responses={200: SessionOut, 401: problem_ref("wrong email or password"),
                                422: problem_ref("invalid input"),
                                429: problem_ref("too many failed logins from this address or for this "
                                                 "email: wait the Retry-After seconds")})
def create_session(body: LoginBody):
    """Log in: sets the session cookie and returns the CSRF token"""
    user = check_password(body.email, body.password)
    if user is None:
        log.info("login failed")
        raise ApiError(401, "invalid_credentials", "Wrong email or password.")
    out = login(user)
    repo.record_audit(db_session(), user.clinic_id, user.id, "session.login", "user", user.id)
    return json_response(out)


@bp.get("/session", security=[{"cookieAuth": []}, {"bearerAuth": []}],
        responses={200: SessionOut, 401: problem_ref("not logged in or session expired")})
def get_session():
    """Who am I: the session (with a fresh CSRF token) or the token's clinic"""
    authenticate()
    return json_response(describe_session())


@bp.delete("/session", security=[{"cookieAuth": []}], responses={204: None, 403: problem_ref("CSRF token missing")})
def delete_session():
    """Log out (idempotent)"""
    if session.get("uid") is not None:
        try:
            authenticate()
        except ApiError as exc:
            if exc.status != 401:
                raise
    logout()
    return Response(status=204)
