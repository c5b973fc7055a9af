"""Rows -> a Parquet dataset written in parts, each part atomic.

A part is ``part-NNNNNN.parquet`` (N rows, or fewer at the end or after ``flush_seconds``).
It is written to ``.part-NNNNNN.parquet.tmp`` in the same folder, fsynced, renamed into place
and the folder fsynced: a reader (or a resumed run) sees whole parts or none. Readers skip
names starting with ``.`` or ``_`` (pyarrow's default), so a killed run's temporary file is
never read; the next run removes it.

Schema: the fixed :data:`~service.batch.flatten.BASE_COLUMNS`, then measurement columns in the
order they were first seen (the first scored document declares most of them). A later part
keeps every earlier column, in the same order, and appends any column a newer document brought
(nulls for rows without it); values are cast to the declared type. So columns never move or
change type across parts, and new metrics still become columns without code changes. Numbers
are float64, strings are strings; a value that cannot be cast (a string in a number column)
is written as null.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from service.batch.flatten import BASE_COLUMNS, BASE_NAMES

PART_RE = re.compile(r"^part-(\d{6,})\.parquet$")
TMP_SUFFIX = ".tmp"


def part_files(out: str | os.PathLike) -> list[Path]:
    """The complete parts of a dataset, in write order."""
    out = Path(out)
    if not out.is_dir():
        return []
    parts = [(int(m.group(1)), p) for p in out.iterdir() if (m := PART_RE.match(p.name))]
    return [p for _, p in sorted(parts)]


def dataset_schema(out: str | os.PathLike) -> pa.Schema | None:
    """The union of the parts' schemas in column order (footers only: nothing else is read)."""
    schemas = [pq.read_schema(p) for p in part_files(out)]
    if not schemas:
        return None
    return pa.unify_schemas([s.remove_metadata() for s in schemas])


def read_dataset(out: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """The whole dataset as one table under the union schema (earlier parts get nulls for
    columns added later). ``columns`` limits what is read (for big datasets, read few)."""
    import pyarrow.dataset as ds

    schema = dataset_schema(out)
    if schema is None:
        names = columns or list(BASE_NAMES)
        return pa.table({n: pa.array([], type=dict(BASE_COLUMNS).get(n, pa.float64())) for n in names})
    dataset = ds.dataset([str(p) for p in part_files(out)], schema=schema, format="parquet")
    return dataset.to_table(columns=columns)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cast(values: list[Any], typ: pa.DataType) -> pa.Array:
    if pa.types.is_floating(typ):
        out = []
        for v in values:
            if v is None or isinstance(v, str):
                try:
                    v = float(v) if v is not None else None
                except ValueError:
                    v = None
            out.append(None if v is None else float(v))
        return pa.array(out, type=typ)
    if pa.types.is_integer(typ):
        out = []
        for v in values:
            try:
                out.append(None if v is None else int(v))
            except (TypeError, ValueError):
                out.append(None)
        return pa.array(out, type=typ)
    return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict))
                                             else str(v)) for v in values], type=typ)


def _infer(value: Any) -> pa.DataType:
    return pa.string() if isinstance(value, str) else pa.float64()


class PartWriter:
    """Buffer rows and write them as parts of ``part_rows`` rows (or after ``flush_seconds``).

    Opening an existing dataset continues its numbering and its schema (resume); stale
    temporary files of a killed writer are removed."""

    def __init__(self, out: str | os.PathLike, *, part_rows: int = 1000, flush_seconds: float = 60.0,
                 metadata: dict[str, str] | None = None):
        if part_rows < 1:
            raise ValueError("part_rows must be >= 1")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".part-*" + TMP_SUFFIX):
            stale.unlink(missing_ok=True)
        self.part_rows = part_rows
        self.flush_seconds = flush_seconds
        self.metadata = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
        existing = part_files(self.out)
        self.seq = int(PART_RE.match(existing[-1].name).group(1)) + 1 if existing else 0
        self.columns: dict[str, pa.DataType] = dict(BASE_COLUMNS)
        schema = dataset_schema(self.out)
        if schema is not None:
            for f in schema:
                self.columns.setdefault(f.name, f.type)
        self.buffer: list[dict[str, Any]] = []
        self.parts_written = 0
        self.rows_written = 0
        self._last_flush = time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.part_rows:
            self.flush()

    def add_many(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def maybe_flush(self) -> None:
        """Flush a partial part when rows have waited ``flush_seconds`` (slow runs still persist)."""
        if self.buffer and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns.items()), metadata=self.metadata or None)

    def flush(self) -> Path | None:
        rows, self.buffer = self.buffer, []
        self._last_flush = time.monotonic()
        if not rows:
            return None
        for row in rows:                       # new columns: appended in first-seen order
            for name, value in row.items():
                if name not in self.columns and value is not None:
                    self.columns[name] = _infer(value)
        for row in rows:                       # columns seen only as nulls so far
            for name in row:
                self.columns.setdefault(name, pa.float64())
        schema = self.schema()
        arrays = [_cast([r.get(f.name) for r in rows], f.type) for f in schema]
        table = pa.Table.from_arrays(arrays, schema=schema)
        name = f"part-{self.seq:06d}.parquet"
        tmp = self.out / f".{name}{TMP_SUFFIX}"
        final = self.out / name
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.out)
        self.seq += 1
        self.parts_written += 1
        self.rows_written += len(rows)
        return final

    def close(self) -> None:
        self.flush()
