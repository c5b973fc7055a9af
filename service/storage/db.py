"""Engine and session set-up.

SQLite (the embedded default) gets, on every connection:

* ``journal_mode=WAL``: readers never block the writer nor the writer the readers;
* ``synchronous=FULL``: a commit that returned survives a power cut (WAL + NORMAL could lose
  the last commits, which would leave blobs without rows: harmless, but not what we promise);
* ``foreign_keys=ON``: SQLite ignores foreign keys unless told;
* ``busy_timeout``: a writer waits for the write lock instead of failing at once;
* ``secure_delete=ON``: deleted rows are overwritten with zeros in the file, so an erased
  patient does not linger in free pages.

The pysqlite driver is left in its default transaction mode: ``BEGIN`` is sent just before the
first INSERT/UPDATE/DELETE of a transaction, so a write transaction takes the write lock with its
first statement (waiting up to the busy timeout) and never fails with "database is locked"
while upgrading a read snapshot. Reads before the first write see the latest committed data,
as under PostgreSQL's READ COMMITTED. Migrations, which need transactional DDL, set up their
own transaction (see ``migrations.upgrade_to_head``).
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from service.storage.config import normalise_database_url

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    cur = dbapi_connection.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA secure_delete = ON")
    finally:
        cur.close()


def make_engine(url: str | sa.URL, **kwargs) -> Engine:
    """Create an engine for ``url`` with mesoscan's connection settings.

    PostgreSQL URLs without a driver are pointed at psycopg 3; for a SQLite file URL the
    parent directory is created. Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    if isinstance(url, str):
        url = make_url(normalise_database_url(url))
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (repository functions commit, and
    callers still read the objects they got back)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def sqlite_journal_mode(engine: Engine) -> str | None:
    """The journal mode of a SQLite database (``"wal"``), or None for other databases."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()
