"""Alembic migrations, run from code (no alembic.ini needed in the working directory).

``upgrade_to_head(engine)`` is what the app start-up, the CLI and the tests call. On SQLite the
whole upgrade runs in one ``BEGIN IMMEDIATE`` transaction with foreign keys off (SQLite's own
recipe for table rebuilds), then ``PRAGMA foreign_key_check`` must come back empty before the
commit. On PostgreSQL it runs in one transaction holding an advisory lock, so several processes
starting at once migrate one after the other.

New migration: ``alembic -x ... revision`` is not wired; copy the newest file in ``versions/``,
set ``revision``/``down_revision``, keep every released revision file forever (the tests upgrade
from each of them), and use ``op.batch_alter_table`` for changes SQLite cannot ALTER.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent
_PG_LOCK_KEY = 0x6D65736F  # "meso": advisory lock id for migrations


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {heads}")
    return heads[0]


def revisions_oldest_first() -> list[str]:
    return [s.revision for s in reversed(list(script_directory().walk_revisions()))]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction suitable for DDL on this database."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                yield conn
            return
        raw = conn.connection.driver_connection
        saved = raw.isolation_level
        raw.isolation_level = None        # pysqlite stops sending BEGIN/COMMIT on its own
        raw.execute("PRAGMA foreign_keys = OFF")   # a no-op inside a transaction, so before BEGIN

        def begin_immediate(c: Connection) -> None:
            c.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(conn, "begin", begin_immediate)
        try:
            with conn.begin():
                yield conn
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration left foreign key violations: {problems[:10]}")
        finally:
            event.remove(conn, "begin", begin_immediate)
            raw.execute("PRAGMA foreign_keys = ON")
            raw.isolation_level = saved


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _migration_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _migration_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database schema to the newest revision (creating it in an empty database)."""
    upgrade(engine, "head")
