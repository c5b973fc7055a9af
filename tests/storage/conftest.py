"""Storage test fixtures: ``db`` runs each test on SQLite (a file under tmp_path) and, when
``MESOSCAN_TEST_DATABASE_URL`` is set, on PostgreSQL in a fresh schema of its own that is
dropped afterwards (tests can run repeatedly and beside other people's tests)."""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from service.storage.blobstore import LocalBlobStore
from service.storage.config import normalise_database_url
from service.storage.db import make_engine, make_session_factory
from service.storage.migrations import upgrade_to_head

PG_URL = os.environ.get("MESOSCAN_TEST_DATABASE_URL")
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="MESOSCAN_TEST_DATABASE_URL not set")),
]


@dataclass
class TestDB:
    backend: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: LocalBlobStore
    data_dir: Path

    __test__ = False   # not a test class

    def session(self) -> Session:
        return self.sessions()

    def sqlite_path(self) -> Path:
        return Path(self.engine.url.database)


@contextlib.contextmanager
def database(backend: str, tmp_path: Path):
    """Yield (url, engine) of an empty database that is gone afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'mesoscan.db'}"
        engine = make_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()
        return
    schema = f"mesotest_{uuid.uuid4().hex[:16]}"
    admin = make_engine(PG_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(normalise_database_url(PG_URL)).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = make_engine(url)
    try:
        yield url.render_as_string(hide_password=False), engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def empty_db(request, tmp_path):
    with database(request.param, tmp_path) as (url, engine):
        yield TestDB(request.param, url, engine, make_session_factory(engine),
                     LocalBlobStore(tmp_path / "photos"), tmp_path)


@pytest.fixture
def db(empty_db):
    upgrade_to_head(empty_db.engine)
    return empty_db


@pytest.fixture
def session(db):
    with db.session() as s:
        yield s
