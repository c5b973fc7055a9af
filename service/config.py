"""The HTTP service's configuration: environment variables with embedded defaults.

Every setting has a default that works on a laptop; production sets a few variables.

=============================  =================================================================
``MESOSCAN_DATA_DIR``          data directory (default ``./data``): SQLite database, photos,
                               overlay cache, the generated secret key
``DATABASE_URL``               SQLAlchemy URL (default SQLite in the data directory); plain
                               ``postgresql://`` URLs use psycopg 3
``MESOSCAN_SECRET_KEY``        signs session cookies and CSRF tokens. When unset, a random key
                               is generated once and kept in ``<data dir>/secret_key`` (mode
                               0600), so sessions survive restarts. Several servers behind one
                               address must share the key (set it, or share the data directory).
``MESOSCAN_MAX_UPLOAD_MB``     largest request body in MiB (default 40): bigger is a 413
``MESOSCAN_SESSION_HOURS``     absolute session lifetime in hours (default 12)
``MESOSCAN_SESSION_IDLE_MINUTES``  a session unused this long ends (default 60)
``MESOSCAN_COOKIE_SECURE``     ``1``/``0``: send cookies over HTTPS only (default 1; the
                               development server ``mesoscan serve`` defaults to 0)
``MESOSCAN_PROXY_FIX``         number of reverse proxies in front whose ``X-Forwarded-*``
                               headers are trusted (default 0)
``MESOSCAN_PRELOAD_MODEL``     ``1``/``0``: load the face model when the app starts (default 1)
``MESOSCAN_OVERLAY_CACHE_MB``  on-disk cache of rendered overlays (default 512; 0 disables)
``MESOSCAN_LOGIN_RATE_LIMIT``  failed password logins allowed per client address and, separately,
                               per e-mail address (default ``10 per minute;50 per hour``;
                               ``limits`` notation, ``;`` between limits): see service/throttle.py
``MESOSCAN_RATELIMIT_STORAGE_URI``  where those counters live (default ``memory://``: per process,
                               so per gunicorn worker; ``redis://host:6379`` shares them)
``MESOSCAN_LOG_LEVEL``         log level (default INFO)
``MESOSCAN_LOG_FORMAT``        ``json`` (default: one JSON object per line) or ``text``
=============================  =================================================================

``create_app(config)`` takes the same settings as a dict with the Flask-style names below
(``DATA_DIR``, ``DATABASE_URL``, ``SECRET_KEY``, ...); a dict entry wins over the environment.
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from service.storage.config import DEFAULT_DATA_DIR, StorageConfig, normalise_database_url

SECRET_KEY_FILENAME = "secret_key"
DEFAULT_LOGIN_RATE_LIMIT = "10 per minute;50 per hour"
DEFAULT_RATELIMIT_STORAGE_URI = "memory://"


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _rate_limits(value: Any, name: str) -> str:
    """A ``limits`` rate string (``10 per minute;50 per hour``), checked now: Flask-Limiter would
    only log a bad one at the first login and then not throttle at all."""
    from limits import parse_many

    text = str(value or "").strip()
    try:
        if not parse_many(text):
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} must be rate limits like '10 per minute;50 per hour', not {value!r}") from None
    return text


def load_or_create_secret_key(data_dir: Path) -> str:
    """The secret key kept in ``<data_dir>/secret_key``; created (mode 0600) when missing.

    Created with O_EXCL, so two processes starting together agree on one key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_KEY_FILENAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise RuntimeError(f"{path} holds no usable secret key: delete it to generate a new one") from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings read from the environment (no secret key generated yet: see ``finalize``)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("MESOSCAN_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().absolute()
    return {
        "DATA_DIR": data_dir,
        "DATABASE_URL": env.get("DATABASE_URL") or None,
        "SECRET_KEY": env.get("MESOSCAN_SECRET_KEY") or None,
        "MAX_UPLOAD_MB": _number(env, "MESOSCAN_MAX_UPLOAD_MB", 40),
        "SESSION_HOURS": _number(env, "MESOSCAN_SESSION_HOURS", 12),
        "SESSION_IDLE_MINUTES": _number(env, "MESOSCAN_SESSION_IDLE_MINUTES", 60),
        "COOKIE_SECURE": _flag(env.get("MESOSCAN_COOKIE_SECURE"), True),
        "PROXY_FIX": int(_number(env, "MESOSCAN_PROXY_FIX", 0)),
        "PRELOAD_MODEL": _flag(env.get("MESOSCAN_PRELOAD_MODEL"), True),
        "OVERLAY_CACHE_MB": _number(env, "MESOSCAN_OVERLAY_CACHE_MB", 512),
        "LOGIN_RATE_LIMIT": env.get("MESOSCAN_LOGIN_RATE_LIMIT") or DEFAULT_LOGIN_RATE_LIMIT,
        "RATELIMIT_STORAGE_URI": env.get("MESOSCAN_RATELIMIT_STORAGE_URI") or DEFAULT_RATELIMIT_STORAGE_URI,
        "LOG_LEVEL": (env.get("MESOSCAN_LOG_LEVEL") or "INFO").upper(),
        "LOG_FORMAT": (env.get("MESOSCAN_LOG_FORMAT") or "json").lower(),
    }


def finalize(settings: dict[str, Any]) -> dict[str, Any]:
    """Fill derived values: the database URL default, the secret key (generated and persisted
    when unset), Flask's own names (MAX_CONTENT_LENGTH, session cookie flags, lifetimes)."""
    s = dict(settings)
    s["DATA_DIR"] = Path(s["DATA_DIR"]).expanduser().absolute()
    s["DATABASE_URL"] = normalise_database_url(s.get("DATABASE_URL") or StorageConfig.for_data_dir(s["DATA_DIR"]).database_url)
    if not s.get("SECRET_KEY"):
        s["SECRET_KEY"] = load_or_create_secret_key(s["DATA_DIR"])
    s["LOGIN_RATE_LIMIT"] = _rate_limits(s.get("LOGIN_RATE_LIMIT") or DEFAULT_LOGIN_RATE_LIMIT,
                                         "MESOSCAN_LOGIN_RATE_LIMIT")
    s["RATELIMIT_STORAGE_URI"] = s.get("RATELIMIT_STORAGE_URI") or DEFAULT_RATELIMIT_STORAGE_URI
    testing_or_debug = bool(s.get("TESTING") or s.get("DEBUG"))
    absolute = dt.timedelta(hours=float(s["SESSION_HOURS"]))
    s.setdefault("MAX_CONTENT_LENGTH", int(float(s["MAX_UPLOAD_MB"]) * 2**20))
    s.setdefault("PERMANENT_SESSION_LIFETIME", absolute)
    s.setdefault("SESSION_IDLE", dt.timedelta(minutes=float(s["SESSION_IDLE_MINUTES"])))
    s.setdefault("SESSION_COOKIE_NAME", "mesoscan_session")
    s.setdefault("SESSION_COOKIE_HTTPONLY", True)
    s.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    s.setdefault("SESSION_COOKIE_SECURE", bool(s["COOKIE_SECURE"]) and not testing_or_debug)
    # CSRF (Flask-WTF): checked by service.auth for cookie-authenticated writes only, so
    # bearer-token clients are not asked for a token; valid as long as the session can be.
    s.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    s.setdefault("WTF_CSRF_TIME_LIMIT", int(absolute.total_seconds()))
    s.setdefault("WTF_CSRF_HEADERS", ["X-CSRF-Token", "X-CSRFToken"])
    s.setdefault("JSON_SORT_KEYS", False)
    return s


def storage_config(settings: Mapping[str, Any]) -> StorageConfig:
    return StorageConfig.for_data_dir(settings["DATA_DIR"], settings["DATABASE_URL"])
