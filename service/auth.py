"""Who is calling, and for which clinic.

Two ways in:

* **Session cookie** (practitioners in a browser): ``POST /api/v1/session`` with email and
  password (argon2id hashes) sets a signed, HttpOnly, SameSite=Lax cookie (Secure outside
  development). A session ends 12 h after login (absolute) or after 1 h without a request
  (idle), and when the user's password changes. Every state-changing request made with the
  cookie must carry the CSRF token (``X-CSRF-Token`` header, or ``csrf_token`` form field),
  returned by the session endpoints.
* **Bearer token** (the clinic's tablets): ``Authorization: Bearer msk_...`` from
  ``mesoscan token create``; only its SHA-256 is stored; revoked tokens stop at once. No CSRF
  token is needed (browsers never attach it on their own).

Either way the request gets ``g.principal`` with its ``clinic_id``, and every query the views
make is scoped to that clinic (``service.storage.repository``).

For the web pages: a login form calls :func:`check_password` then :func:`login`; views call
:func:`authenticate` (it enforces the CSRF token on cookie-authenticated writes, so forms
must carry ``csrf_token()``), or use :func:`require_api_auth` as a ``before_request``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, g, request, session
from flask_wtf.csrf import generate_csrf

from service.errors import ApiError
from service.extensions import csrf, db_session, state
from service.storage import repository as repo

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_ROLES = frozenset({"admin", "practitioner"})

# A valid hash of a random password: verifying against it for unknown emails makes a failed
# login take the same time whether or not the email exists.
_DUMMY_HASHES: dict[int, str] = {}


@dataclass(frozen=True)
class Principal:
    kind: str                # "session" | "token"
    clinic_id: int
    role: str
    user_id: int | None = None
    token_id: int | None = None
    email: str | None = None

    @property
    def actor_id(self) -> int | None:
        """The audit log's actor: the user (token calls have none)."""
        return self.user_id


def hash_password(password: str) -> str:
    return state().hasher.hash(password)


def _password_tag(password_hash: str) -> str:
    """A short fingerprint of the stored hash, kept in the session: a password change
    (new hash) ends every session made with the old one."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def check_password(email: str, password: str):
    """The user for ``email`` when ``password`` is right, else None (constant-ish time)."""
    hasher = state().hasher
    user = repo.get_user_by_email(db_session(), email)
    if user is None:
        key = id(hasher)
        if key not in _DUMMY_HASHES:
            _DUMMY_HASHES[key] = hasher.hash("not-a-real-password-" + str(time.time()))
        try:
            hasher.verify(_DUMMY_HASHES[key], password)
        except VerificationError:
            pass
        return None
    try:
        hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def _now() -> float:
    return time.time()


def login(user) -> dict:
    """Start a cookie session for ``user``; returns the session description."""
    session.clear()
    now = _now()
    session.permanent = True
    session.update({"uid": user.id, "cid": user.clinic_id, "auth_at": now, "seen_at": now,
                    "pwd": _password_tag(user.password_hash)})
    g.principal = Principal("session", user.clinic_id, user.role, user_id=user.id, email=user.email)
    return describe_session()


def logout() -> None:
    session.clear()


def describe_session() -> dict:
    p: Principal = g.principal
    clinic = repo.get_clinic(db_session(), p.clinic_id)
    absolute = current_app.config["PERMANENT_SESSION_LIFETIME"]
    out = {
        "kind": p.kind,
        "user": {"id": p.user_id, "email": p.email, "role": p.role} if p.user_id else None,
        "clinic": {"id": clinic.id, "name": clinic.name} if clinic else None,
    }
    if p.kind == "session":
        out["csrf_token"] = generate_csrf()
        out["expires_at"] = (dt.datetime.fromtimestamp(session["auth_at"], dt.timezone.utc) + absolute).isoformat()
        out["idle_timeout_s"] = int(current_app.config["SESSION_IDLE"].total_seconds())
    return out


def _unauthorized(code: str, detail: str, *, bearer_error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="mesoscan"' + (f', error="{bearer_error}"' if bearer_error else "")
    return ApiError(401, code, detail, headers={"WWW-Authenticate": challenge})


def _from_token(value: str) -> Principal:
    row = repo.authenticate_api_token(db_session(), value)
    if row is None:
        raise _unauthorized("invalid_token", "The API token is unknown or has been revoked.", bearer_error="invalid_token")
    return Principal("token", row.clinic_id, "practitioner", token_id=row.id)


def _from_session() -> Principal | None:
    uid, cid = session.get("uid"), session.get("cid")
    if uid is None or cid is None:
        return None
    now = _now()
    absolute = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    idle = current_app.config["SESSION_IDLE"].total_seconds()
    if now - float(session.get("auth_at", 0)) > absolute or now - float(session.get("seen_at", 0)) > idle:
        session.clear()
        raise _unauthorized("session_expired", "The session has expired: log in again.")
    user = repo.get_user(db_session(), cid, uid)
    if user is None or session.get("pwd") != _password_tag(user.password_hash):
        session.clear()
        raise _unauthorized("session_expired", "The session is no longer valid: log in again.")
    session["seen_at"] = now
    return Principal("session", cid, user.role, user_id=user.id, email=user.email)


def authenticate(*, optional: bool = False) -> Principal | None:
    """Set ``g.principal`` from the bearer token or the session cookie; raise 401 without one
    (unless ``optional``). Cookie-authenticated writes must pass the CSRF check."""
    header = request.headers.get("Authorization", "")
    principal: Principal | None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("invalid_token", "Send the API token as 'Authorization: Bearer <token>'.",
                                bearer_error="invalid_request")
        principal = _from_token(value.strip())
    else:
        principal = _from_session()
        if principal is not None and request.method not in SAFE_METHODS:
            csrf.protect()
    if principal is None:
        if optional:
            return None
        raise _unauthorized("unauthorized", "Log in (POST /api/v1/session) or send an API token.")
    g.principal = principal
    return principal


def require_api_auth():
    """``before_request`` of the API blueprints: authenticated, and writes need a writer role."""
    principal = authenticate()
    if request.method not in SAFE_METHODS and principal.role not in WRITE_ROLES:
        raise ApiError(403, "forbidden", f"The role '{principal.role}' may only read.")


def clinic_id() -> int:
    return g.principal.clinic_id
