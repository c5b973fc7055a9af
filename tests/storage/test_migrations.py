import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.storage import migrations
from service.storage.models import Base


def schema_diff(engine, metadata=Base.metadata):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, metadata)


def test_empty_database_to_head_matches_the_models(empty_db, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                       # no alembic.ini anywhere near
    assert migrations.current_revision(empty_db.engine) is None
    migrations.upgrade_to_head(empty_db.engine)
    assert migrations.current_revision(empty_db.engine) == migrations.head_revision()
    assert schema_diff(empty_db.engine) == []


def test_the_comparison_would_notice_a_drift(db):
    drifted = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["patient"].append_column(sa.Column("birth_year", sa.Integer()))
    diffs = schema_diff(db.engine, drifted)
    assert any(d[0] == "add_column" and d[3].name == "birth_year" for d in diffs)


def test_one_head_and_self_contained_revisions():
    assert migrations.head_revision() == migrations.revisions_oldest_first()[-1]
    for path in (Path(migrations.__file__).parent / "versions").glob("*.py"):
        assert "service.storage.models" not in path.read_text(), f"{path.name} must not import the models"


def _seed(conn):
    """Rows as an old release would have left them (written with plain SQL, not the models)."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    conn.execute(sa.text("INSERT INTO clinic (id, name, created_at) VALUES (1, 'C', :t)"), {"t": now})
    conn.execute(sa.text("INSERT INTO patient (id, clinic_id, code, name, created_at) "
                         "VALUES (1, 1, 'P-1', NULL, :t)"), {"t": now})


@pytest.mark.parametrize("start", migrations.revisions_oldest_first())
def test_upgrades_forward_from_every_released_revision(empty_db, start):
    migrations.upgrade(empty_db.engine, start)
    seeded = start == "0001"          # add a seeding step here for each new released revision
    if seeded:
        with empty_db.engine.begin() as conn:
            _seed(conn)
    migrations.upgrade_to_head(empty_db.engine)
    assert schema_diff(empty_db.engine) == []
    if seeded:
        with empty_db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT code FROM patient WHERE id = 1")).scalar() == "P-1"


def test_upgrade_is_idempotent_and_downgrade_leaves_nothing(db):
    migrations.upgrade_to_head(db.engine)
    assert schema_diff(db.engine) == []
    migrations.downgrade(db.engine, "base")
    assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
    migrations.upgrade_to_head(db.engine)
    assert schema_diff(db.engine) == []


def test_sqlite_foreign_keys_back_on_after_migrating(db):
    if db.backend != "sqlite":
        pytest.skip("SQLite only")
    with db.engine.connect() as conn:           # the pooled connection that ran the migration
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_failing_migration_leaves_no_trace(empty_db):
    """DDL runs in one transaction on both databases (SQLite via BEGIN IMMEDIATE)."""
    with pytest.raises(RuntimeError):
        with migrations._migration_connection(empty_db.engine) as conn:
            conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
            raise RuntimeError("migration failed halfway")
    assert "half_done" not in sa.inspect(empty_db.engine).get_table_names()
