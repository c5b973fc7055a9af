"""Distributions of a re-scored archive, and reference populations for percentiles.

:func:`describe` reads a dataset written by ``mesoscan rescore`` (a few columns at a time, so a
million rows stay cheap) and gives, for every measurement column, over the ``scored`` rows of
one pipeline version: count, mean, standard deviation, min/max, percentiles, a 101-point
quantile grid and a histogram.

A **reference population** is that description saved as a versioned JSON file (schema
``mesoscan.reference/1``) under ``<MESOSCAN_DATA_DIR>/reference/<NAME>.v<N>.json``; saving
again under the same name writes version N+1 and never touches earlier ones, so a percentile
shown to a patient can always be traced to the population it came from.
:func:`percentile_of` places a new value in it: the inverse of the quantile grid, linear
between grid points, 0 below the minimum and 100 above the maximum.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.batch.flatten import BASE_NAMES, STATUS_SCORED
from service.batch.writer import dataset_schema, part_files, read_dataset

REFERENCE_SCHEMA = "mesoscan.reference/1"
REFERENCE_DIRNAME = "reference"
PERCENTS = tuple(range(101))                 # the quantile grid: every whole percent
SUMMARY_PERCENTS = (1, 5, 10, 25, 50, 75, 90, 95, 99)
HIST_BINS = 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_READ_GROUP = 32                             # columns read together


@dataclass
class ColumnStats:
    name: str
    n: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: list[float] = field(default_factory=list)      # at PERCENTS
    hist_edges: list[float] = field(default_factory=list)
    hist_counts: list[int] = field(default_factory=list)

    def percentile(self, p: int) -> float | None:
        return self.quantiles[p] if self.quantiles else None

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
                "quantiles": self.quantiles,
                "histogram": {"edges": self.hist_edges, "counts": self.hist_counts}}


@dataclass
class Description:
    out: str
    source: str | None
    pipeline_version: str
    rows: int
    status_counts: dict[str, int]
    reasons: dict[str, int]
    columns: dict[str, ColumnStats]

    @property
    def scored(self) -> int:
        return self.status_counts.get(STATUS_SCORED, 0)


def _stats(name: str, values: np.ndarray) -> ColumnStats:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ColumnStats(name=name, n=0)
    q = np.percentile(values, PERCENTS)
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        counts, edges = np.histogram(values, bins=HIST_BINS, range=(lo, hi))
    else:
        counts, edges = np.array([values.size]), np.array([lo, hi])
    r = lambda v: float(round(float(v), 6))  # noqa: E731
    return ColumnStats(name=name, n=int(values.size), mean=r(values.mean()), std=r(values.std()), min=r(lo), max=r(hi),
                       quantiles=[r(v) for v in q], hist_edges=[r(v) for v in edges],
                       hist_counts=[int(c) for c in counts])


def measurement_columns(schema: pa.Schema) -> list[str]:
    """Every numeric column that is a measurement (not identity or image size), in order."""
    keep = {"face_confidence", "face_px_per_mm"}
    return [f.name for f in schema
            if (f.name not in BASE_NAMES or f.name in keep) and pa.types.is_floating(f.type)]


def describe(out: str | os.PathLike, pipeline_version: str | None = None) -> Description:
    """Describe the dataset ``out``. With several pipeline versions in it, ``pipeline_version``
    chooses (default: the current one when present, else the only one)."""
    schema = dataset_schema(out)
    if schema is None:
        raise FileNotFoundError(f"{out} holds no Parquet parts written by mesoscan rescore")
    ids = read_dataset(out, columns=["status", "reason", "pipeline_version"])
    versions = Counter({r["values"]: r["counts"] for r in pc.value_counts(ids.column("pipeline_version")).to_pylist()})
    if pipeline_version is None:
        from pipelines import PIPELINE_VERSION

        if len(versions) == 1:
            pipeline_version = next(iter(versions))
        elif PIPELINE_VERSION in versions:
            pipeline_version = PIPELINE_VERSION
        else:
            raise ValueError(f"the dataset holds pipeline versions {sorted(map(str, versions))}: choose one")
    elif pipeline_version not in versions:
        raise ValueError(f"no rows of pipeline {pipeline_version} in {out} (it has {sorted(map(str, versions))})")
    in_version = pc.fill_null(pc.equal(ids.column("pipeline_version"), pipeline_version), False)
    mine = ids.filter(in_version)
    version_mask = in_version.to_numpy(zero_copy_only=False)
    mask = version_mask.copy()
    mask[version_mask] = pc.fill_null(pc.equal(mine.column("status"), STATUS_SCORED), False).to_numpy(
        zero_copy_only=False)
    status_counts = Counter({r["values"]: r["counts"] for r in pc.value_counts(mine.column("status")).to_pylist()})
    reason_counts = Counter({r["values"]: r["counts"] for r in pc.value_counts(mine.column("reason")).to_pylist()
                             if r["values"]})
    del ids, mine
    names = measurement_columns(schema)
    columns: dict[str, ColumnStats] = {}
    for i in range(0, len(names), _READ_GROUP):
        group = names[i:i + _READ_GROUP]
        table = read_dataset(out, columns=group)
        for name in group:
            col = table.column(name).to_numpy(zero_copy_only=False).astype(float)   # nulls -> nan
            columns[name] = _stats(name, col[mask])
        del table
    source = None
    parts = part_files(out)
    if parts:
        import pyarrow.parquet as pq

        meta = pq.read_schema(parts[0]).metadata or {}
        source = (meta.get(b"mesoscan.source") or b"").decode() or None
    return Description(out=str(out), source=source, pipeline_version=pipeline_version, rows=int(version_mask.sum()),
                       status_counts=dict(status_counts), reasons=dict(reason_counts.most_common()), columns=columns)


# --- text and HTML ----------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or 0.01 <= abs(v) < 1e5:
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:.2e}"


def format_text(d: Description) -> str:
    lines = [f"dataset {d.out}" + (f" (source {d.source})" if d.source else ""),
             f"pipeline {d.pipeline_version}: {d.rows} photos, "
             + ", ".join(f"{k} {v}" for k, v in sorted(d.status_counts.items()))]
    if d.reasons:
        lines.append("reasons: " + ", ".join(f"{k} {v}" for k, v in d.reasons.items()))
    lines.append("")
    width = max([len(n) for n in d.columns] + [6])
    head = f"{'column':<{width}} {'n':>6} {'mean':>8} {'p5':>8} {'p25':>8} {'p50':>8} {'p75':>8} {'p95':>8} {'min':>8} {'max':>8}"
    lines.append(head)
    lines.append("-" * len(head))
    for name, c in d.columns.items():
        if c.n == 0:
            lines.append(f"{name:<{width}} {0:>6}")
            continue
        vals = [c.mean, c.percentile(5), c.percentile(25), c.percentile(50), c.percentile(75), c.percentile(95),
                c.min, c.max]
        lines.append(f"{name:<{width}} {c.n:>6} " + " ".join(f"{_fmt(v):>8}" for v in vals))
    return "\n".join(lines)


def _svg_histogram(c: ColumnStats, w: int = 260, h: int = 70) -> str:
    if not c.hist_counts:
        return "<svg width='260' height='70'></svg>"
    peak = max(c.hist_counts) or 1
    bw = w / len(c.hist_counts)
    bars = "".join(
        f"<rect x='{i * bw:.1f}' y='{h - 14 - (n / peak) * (h - 18):.1f}' width='{max(bw - 1, 1):.1f}' "
        f"height='{(n / peak) * (h - 18):.1f}'><title>{n}</title></rect>"
        for i, n in enumerate(c.hist_counts))
    med = c.percentile(50)
    span = (c.max - c.min) or 1.0
    mx = (med - c.min) / span * w if med is not None else 0
    return (f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}' role='img'>{bars}"
            f"<line x1='{mx:.1f}' x2='{mx:.1f}' y1='0' y2='{h - 14}' class='med'/>"
            f"<text x='0' y='{h - 2}'>{html.escape(_fmt(c.min))}</text>"
            f"<text x='{w}' y='{h - 2}' text-anchor='end'>{html.escape(_fmt(c.max))}</text></svg>")


def format_html(d: Description) -> str:
    """A self-contained HTML page (no scripts, no external assets): counts, then one row per
    column with its percentiles and a histogram (the line is the median)."""
    esc = html.escape
    groups: dict[str, list[ColumnStats]] = {}
    for name, c in d.columns.items():
        groups.setdefault(name.split(".")[0] if "." in name else "face", []).append(c)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mesoscan report: {esc(d.out)}</title><style>",
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left;font-family:monospace}rect{fill:#5b8db8}line.med{stroke:#c0392b;stroke-width:2}"
        "svg text{font-size:10px;fill:#666}",
        "</style></head><body>",
        f"<h1>Re-scored archive</h1><p>dataset <code>{esc(d.out)}</code>"
        + (f", source <code>{esc(d.source)}</code>" if d.source else "")
        + f"<br>pipeline {esc(d.pipeline_version)}: {d.rows} photos, "
        + ", ".join(f"{esc(k)} {v}" for k, v in sorted(d.status_counts.items())) + "</p>",
    ]
    if d.reasons:
        parts.append("<h2>Reasons</h2><table><tr><th>reason</th><th>photos</th></tr>"
                     + "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in d.reasons.items()) + "</table>")
    for group, cols in groups.items():
        parts.append(f"<h2>{esc(group)}</h2><table><tr><th>column</th><th>n</th><th>mean</th>"
                     + "".join(f"<th>p{p}</th>" for p in (5, 25, 50, 75, 95)) + "<th>histogram</th></tr>")
        for c in cols:
            cells = "".join(f"<td>{esc(_fmt(c.percentile(p)))}</td>" for p in (5, 25, 50, 75, 95))
            parts.append(f"<tr><td>{esc(c.name)}</td><td>{c.n}</td><td>{esc(_fmt(c.mean))}</td>{cells}"
                         f"<td>{_svg_histogram(c) if c.n else ''}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- reference populations --------------------------------------------------------------------


def reference_dir(data_dir: str | os.PathLike | None = None) -> Path:
    if data_dir is None:
        from service.storage.config import StorageConfig

        data_dir = StorageConfig.from_env().data_dir
    return Path(data_dir) / REFERENCE_DIRNAME


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or ".v" in name:
        raise ValueError(f"reference name must be letters, digits, '_', '-' or '.' (1-64, no '.v'): {name!r}")
    return name


def _versions(directory: Path, name: str) -> list[tuple[int, Path]]:
    pat = re.compile(rf"^{re.escape(name)}\.v(\d+)\.json$")
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := pat.match(p.name)))


def reference_document(d: Description, name: str, version: int) -> dict:
    return {
        "schema": REFERENCE_SCHEMA,
        "name": name,
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "pipeline_version": d.pipeline_version,
        "dataset": d.out,
        "source": d.source,
        "photos": d.scored,
        "percents": list(PERCENTS),
        "columns": {n: c.to_dict() for n, c in d.columns.items() if c.n > 0},
    }


def save_reference(d: Description, name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Save ``d`` as the next version of reference population ``name``; returns its path.
    Earlier versions are never overwritten (the file is created exclusively)."""
    _check_name(name)
    directory = reference_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        versions = _versions(directory, name)
        version = versions[-1][0] + 1 if versions else 1
        path = directory / f"{name}.v{version}.json"
        tmp = directory / f".{name}.v{version}.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(reference_document(d, name, version), indent=1, allow_nan=False))
        try:
            os.link(tmp, path)                 # fails if another writer took this version
        except FileExistsError:
            tmp.unlink()
            continue
        tmp.unlink()
        return path


def load_reference(name: str, version: int | None = None, data_dir: str | os.PathLike | None = None) -> dict:
    """Reference population ``name`` (the newest version unless ``version``)."""
    _check_name(name)
    versions = dict(_versions(reference_dir(data_dir), name))
    if not versions:
        raise FileNotFoundError(f"no reference population named {name!r} in {reference_dir(data_dir)}")
    if version is None:
        version = max(versions)
    if version not in versions:
        raise FileNotFoundError(f"reference {name!r} has versions {sorted(versions)}, not {version}")
    doc = json.loads(versions[version].read_text())
    if doc.get("schema") != REFERENCE_SCHEMA:
        raise ValueError(f"{versions[version]} is not a {REFERENCE_SCHEMA} file")
    return doc


def percentile_of(reference: Mapping[str, Any], column: str, value: float) -> float | None:
    """Where ``value`` falls in ``reference``'s population for ``column``, as a percentile 0-100.

    Linear between the grid's whole percents; a value equal to a run of tied grid points gets the
    middle of their percents; below the population's minimum 0, above its maximum 100. None when
    ``value`` is None or not finite. Raises KeyError for a column the reference does not hold.
    """
    col = reference["columns"][column]
    if value is None or not math.isfinite(float(value)):
        return None
    q = np.asarray(col["quantiles"], float)
    p = np.asarray(reference.get("percents", PERCENTS), float)
    v = float(value)
    if v < q[0]:
        return 0.0
    if v > q[-1]:
        return 100.0
    lo = int(np.searchsorted(q, v, side="left"))
    hi = int(np.searchsorted(q, v, side="right"))
    if lo < hi:                                  # v equals one or more grid points
        return float((p[lo] + p[hi - 1]) / 2)
    q0, q1 = q[lo - 1], q[lo]
    return float(p[lo - 1] + (v - q0) / (q1 - q0) * (p[lo] - p[lo - 1]))
