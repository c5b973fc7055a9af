"""What an existing dataset already holds, for ``rescore --resume``.

A photo is done when a complete part holds a row for its sha256 with the same
``pipeline_version`` (scored, rejected or failed alike: a resumed run ends with the same rows
as an uninterrupted one, not with second attempts). Rows without a sha256 (a file that could not
be read, an archive member refused by name) are done by ``path``. Store rows are done by path
as well: ``store:c<clinic>/p<patient>/photo<id>`` names the photo, and two photos of the same
content each need their own analysis row.

Only four columns of each part are read, part by part; the done set holds 32-byte digests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from service.batch.sources import STORE_PREFIX
from service.batch.worker import DigestSet
from service.batch.writer import part_files


@dataclass
class DoneSet:
    pipeline_version: str
    digests: set[bytes] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    rows: int = 0                 # rows of this pipeline version found

    def has_sha(self, sha: str | None) -> bool:
        if not sha:
            return False
        try:
            return bytes.fromhex(sha) in self.digests
        except ValueError:
            return False

    def has_path(self, path: str) -> bool:
        return path in self.paths

    def add(self, path: str, sha: str | None) -> None:
        if sha and not path.startswith(STORE_PREFIX):
            self.digests.add(bytes.fromhex(sha))
        else:
            self.paths.add(path)

    def digest_set(self) -> DigestSet:
        ds = DigestSet()
        ds._keys = frozenset(self.digests)
        return ds

    def __len__(self) -> int:
        return len(self.digests) + len(self.paths)


def read_done(out: str | os.PathLike, pipeline_version: str) -> DoneSet:
    done = DoneSet(pipeline_version)
    for part in part_files(out):
        table = pq.read_table(part, columns=["path", "sha256", "pipeline_version"])
        paths = table.column("path").to_pylist()
        shas = table.column("sha256").to_pylist()
        versions = table.column("pipeline_version").to_pylist()
        for path, sha, version in zip(paths, shas, versions):
            if version == pipeline_version:
                done.add(path, sha)
                done.rows += 1
    return done
