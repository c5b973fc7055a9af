"""Alembic environment: uses the connection handed over by ``service.storage.migrations``;
without one (the ``alembic`` command line) it connects to the configured database."""
from __future__ import annotations

from alembic import context

from service.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,        # SQLite needs table rebuilds for most ALTERs
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    from service.storage import migrations
    from service.storage.config import StorageConfig
    from service.storage.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or StorageConfig.from_env().database_url
    engine = make_engine(url)
    try:
        with migrations._migration_connection(engine) as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("mesoscan migrations run online only (service.storage.migrations.upgrade_to_head)")
run_migrations_online()
