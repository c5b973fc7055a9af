"""Service test fixtures: an app per module on SQLite in a temporary data directory and, when
MESOSCAN_TEST_DATABASE_URL is set, also on PostgreSQL in a schema of its own (the storage
tests' ``database`` helper), with two clinics (A and B), a practitioner and a viewer in A,
and an API token per clinic. The face model is loaded once per test session (tests/conftest.py).
Helpers live in svc_helpers.py (a unique module name: every conftest is called "conftest")."""
from __future__ import annotations

import pytest

from svc_helpers import BACKENDS, SAMPLE, World, database, make_app, seed


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory, analyzer):
    """One app per module and backend, seeded with clinics A and B."""
    tmp = tmp_path_factory.mktemp(f"svc-{request.param}")
    with database(request.param, tmp) as (url, engine):
        app = make_app(tmp, url, analyzer)
        w = World(request.param, app, data_dir=tmp, **seed(app))
        try:
            yield w
        finally:
            app.extensions["mesoscan"].storage.close()


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory, analyzer):
    """The same on SQLite only, for what does not depend on the database."""
    tmp = tmp_path_factory.mktemp("svc-sqlite")
    app = make_app(tmp, f"sqlite:///{tmp / 'mesoscan.db'}", analyzer)
    w = World("sqlite", app, data_dir=tmp, **seed(app))
    yield w
    app.extensions["mesoscan"].storage.close()


@pytest.fixture(scope="session")
def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()
