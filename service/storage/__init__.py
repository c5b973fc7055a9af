"""mesoscan's storage: SQLAlchemy models with Alembic migrations, content-addressed photo
blobs, metadata stripping, and the repository functions the service and the CLI call.

    from service.storage import open_storage, repository as repo
    storage = open_storage()                 # from MESOSCAN_DATA_DIR / DATABASE_URL, migrated
    with storage.session() as s:
        clinic = repo.create_clinic(s, "Clinic")
        patient = repo.create_patient(s, clinic.id, "P-0001")
        photo, created = repo.add_photo(s, storage.blobs, clinic.id, patient.id, jpeg_bytes)

Embedded default: SQLite in WAL mode at ``<data dir>/mesoscan.db`` with photos in
``<data dir>/photos``; PostgreSQL when ``DATABASE_URL`` says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.storage.blobstore import BlobStore, LocalBlobStore
from service.storage.config import StorageConfig
from service.storage.db import make_engine, make_session_factory


@dataclass
class Storage:
    """An engine, its session factory and the blob store, opened together."""

    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    config: StorageConfig | None = None

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()


def open_storage(config: StorageConfig | None = None, *, migrate: bool = True,
                 blobs: BlobStore | None = None) -> Storage:
    """Open the database and blob store of ``config`` (default: from the environment) and,
    with ``migrate``, bring the schema to the newest revision."""
    config = config or StorageConfig.from_env()
    engine = make_engine(config.database_url)
    if migrate:
        from service.storage.migrations import upgrade_to_head

        upgrade_to_head(engine)
    return Storage(engine=engine, sessions=make_session_factory(engine),
                   blobs=blobs if blobs is not None else LocalBlobStore(config.blob_dir), config=config)


__all__ = ["Storage", "StorageConfig", "open_storage", "BlobStore", "LocalBlobStore"]
