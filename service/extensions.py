"""Extensions and per-app shared objects, set up in one place (``init_app``).

* ``csrf``: Flask-WTF's CSRF protection (tokens in forms and in the ``X-CSRF-Token`` header);
  checked explicitly by ``service.auth`` for cookie-authenticated writes.
* the storage (engine, sessions, blob store), opened and migrated when the app is created;
* the analyzer: ONE per process (it holds the ONNX face model), loaded when the app starts
  (``PRELOAD_MODEL``) or on first use, shared by every app in the process;
* the password hasher (argon2id).

Views reach them through :func:`state` (``current_app.extensions["mesoscan"]``) and
:func:`db_session` (one SQLAlchemy session per request, closed at teardown).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from flask import Flask, current_app, g
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from service.storage import Storage, open_storage

csrf = CSRFProtect()

_analyzer_lock = threading.Lock()
_process_analyzer: Any = None


class BoundedAnalyzer:
    """An analyzer that runs only while it holds one of ``slots`` (service/slots.py).

    An analysis is CPU-bound: more at once than there are cores only thrash the caches and
    memory. Request threads wait here for a slot, which leaves the worker's other threads free
    to answer reads (lists, documents, overlays from the cache) while uploads queue.
    """

    def __init__(self, analyzer: Any, slots):
        self._analyzer = analyzer
        self._slots = slots

    def analyze(self, data: bytes):
        with self._slots.hold():
            return self._analyzer.analyze(data)

    def __getattr__(self, name: str):
        return getattr(self._analyzer, name)


def process_analyzer():
    """The process-wide :class:`pipelines.analysis.Analyzer` (created on first call), bounded by
    :func:`service.slots.slots_from_env`: under gunicorn one slot per core shared by all
    workers, otherwise one analysis at a time in this process."""
    global _process_analyzer
    if _process_analyzer is None:
        with _analyzer_lock:
            if _process_analyzer is None:
                from pipelines.analysis import Analyzer
                from service.slots import slots_from_env

                _process_analyzer = BoundedAnalyzer(Analyzer(), slots_from_env())
    return _process_analyzer


def analyzer_loaded() -> bool:
    return _process_analyzer is not None


@dataclass
class State:
    storage: Storage
    hasher: PasswordHasher
    analyzer: Any = None                 # injected (tests) or the process analyzer
    overlay_cache: Any = None            # service.overlays.OverlayCache
    extra: dict = field(default_factory=dict)

    def get_analyzer(self):
        if self.analyzer is None:
            self.analyzer = process_analyzer()
        return self.analyzer

    @property
    def analyzer_ready(self) -> bool:
        return self.analyzer is not None or analyzer_loaded()


def make_hasher(settings: dict) -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile); tests may pass
    ``PASSWORD_HASH_PARAMS`` for speed."""
    return PasswordHasher(**(settings.get("PASSWORD_HASH_PARAMS") or {}))


def init_app(app: Flask) -> State:
    from service.overlays import OverlayCache

    csrf.init_app(app)
    storage = app.config.get("STORAGE") or open_storage(_storage_config(app))
    cache_mb = float(app.config.get("OVERLAY_CACHE_MB") or 0)
    state = State(
        storage=storage,
        hasher=make_hasher(app.config),
        analyzer=app.config.get("ANALYZER"),
        overlay_cache=OverlayCache(app.config["DATA_DIR"] / "cache" / "overlays", int(cache_mb * 2**20)),
    )
    app.extensions["mesoscan"] = state
    if app.config.get("PRELOAD_MODEL") and state.analyzer is None:
        state.get_analyzer()

    @app.teardown_appcontext
    def _close_session(exc):
        s = g.pop("db_session", None)
        if s is not None:
            s.close()

    return state


def _storage_config(app: Flask):
    from service.config import storage_config

    return storage_config(app.config)


def state() -> State:
    return current_app.extensions["mesoscan"]


def db_session() -> Session:
    """The request's database session (opened on first use, closed at teardown)."""
    s = g.get("db_session")
    if s is None:
        s = g.db_session = state().storage.session()
    return s


def release_db_connection() -> None:
    """End the request session's transaction, which hands its pooled connection back, before
    long CPU work: an upload waits seconds for an analysis slot, and uploads holding
    connections meanwhile left reads waiting for the pool (GET p99 of an analysis's length).
    Loaded objects stay readable (``expire_on_commit=False``); the next query takes a
    connection again."""
    s = g.get("db_session")
    if s is not None:
        s.commit()
