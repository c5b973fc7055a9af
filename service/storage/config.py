"""Where mesoscan keeps its data: configuration from the environment with embedded defaults.

``MESOSCAN_DATA_DIR``  the data directory (default ``./data``, relative to the working directory)
``DATABASE_URL``       SQLAlchemy URL (default ``sqlite:///<data dir>/mesoscan.db``); a plain
                       ``postgresql://`` or ``postgres://`` URL is normalised to the psycopg 3 driver
The photo blobs live in ``<data dir>/photos``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_DATA_DIR = "./data"
DB_FILENAME = "mesoscan.db"
BLOB_DIRNAME = "photos"


def normalise_database_url(url: str) -> str:
    """Return ``url`` with PostgreSQL URLs pointed at the psycopg 3 driver.

    ``postgres://`` (Heroku style) and ``postgresql://`` become ``postgresql+psycopg://``; URLs
    that already name a driver, and non-PostgreSQL URLs, are returned unchanged.
    """
    url = url.strip()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path
    database_url: str
    blob_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "StorageConfig":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("MESOSCAN_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().absolute()
        url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / DB_FILENAME}"
        return cls(data_dir=data_dir, database_url=normalise_database_url(url), blob_dir=data_dir / BLOB_DIRNAME)

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike, database_url: str | None = None) -> "StorageConfig":
        """A configuration rooted at ``data_dir`` (tests, tools), with the SQLite default."""
        data_dir = Path(data_dir).expanduser().absolute()
        url = database_url or f"sqlite:///{data_dir / DB_FILENAME}"
        return cls(data_dir=data_dir, database_url=normalise_database_url(url), blob_dir=data_dir / BLOB_DIRNAME)
