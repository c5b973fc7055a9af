"""Time to list a patient's progress from the database, and the storage one visit costs.

    python bench/progress.py [--visits 50] [--pg postgresql://postgres@127.0.0.1:5432/test]

A patient gets N visits (default 50), each with its own 12 MP clinic-like JPEG, a real analysis
document (one real analysis of the photo, scores then varied per visit as a course of treatment
would) and a plan, all stored through ``service.progress.record_visit``. Then, with a fresh
session each time (no ORM cache), it times:

* ``load_visit_scores``: the one query (score columns + region scores extracted in the database);
* ``patient_progress``: that query plus series, changes, summaries (what ``mesoscan progress``
  and the API do);
* for comparison, the naive way: load every analysis row with its full document and parse it.

Target (issue 5): progress of a 50-visit patient under 100 ms from the database. Storage per
visit: the photo blob (metadata stripped), the analysis and plan documents, and the database's
own growth per visit (SQLite file after a WAL checkpoint; PostgreSQL relation sizes).
PostgreSQL runs in a schema of its own that is dropped afterwards.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import single_core, twelve_mp_jpeg  # noqa: E402


def _photos(n: int) -> list[bytes]:
    """N distinct 12 MP JPEGs of the same face (a few pixels differ, as two captures would)."""
    import numpy as np
    from PIL import Image

    base = np.asarray(Image.open(io.BytesIO(twelve_mp_jpeg())).convert("RGB")).copy()
    out = []
    for i in range(n):
        img = base.copy()
        img[10:14, 10 + 4 * i:14 + 4 * i] = (i * 5) % 256
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _documents(base: dict, n: int, seed: int = 1) -> list[dict]:
    """The real document with its scores moved along a course of treatment plus noise."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        d = copy.deepcopy(base)
        k = 1.0 - 0.5 * i / max(1, n - 1)

        def jig(v):
            return None if v is None else round(max(0.0, min(100.0, v * k + rng.gauss(0, 2))), 1)

        d["scores"] = {f: jig(v) for f, v in (base.get("scores") or {}).items()}
        for reg in d["regions"].values():
            if reg.get("scores"):
                reg["scores"] = {f: jig(v) for f, v in reg["scores"].items()}
        docs.append(d)
    return docs


def _open(url: str, data_dir: Path):
    from service.storage import open_storage
    from service.storage.config import StorageConfig

    return open_storage(StorageConfig.for_data_dir(data_dir, url))


def run_backend(label: str, url: str, data_dir: Path, photos: list[bytes], docs: list[dict], repeat: int) -> dict:
    import sqlalchemy as sa

    from pipelines.progress import Observation
    from service.progress import load_visit_scores, patient_progress, record_visit
    from service.storage import repository as repo
    from service.storage.models import Analysis, Photo, Plan

    storage = _open(url, data_dir)
    engine = storage.engine
    sizes_before = _db_bytes(engine, data_dir)
    with storage.session() as s:
        clinic = repo.create_clinic(s, "Bench clinic")
        patient = repo.create_patient(s, clinic.id, "BENCH-1")
        t0 = time.perf_counter()
        for i, (photo, d) in enumerate(zip(photos, docs)):
            record_visit(s, storage.blobs, clinic.id, patient.id, dt.date(2024, 1, 1) + dt.timedelta(days=14 * i),
                         photo, analyze=lambda _b, d=d: d, intake=b'{"pregnant": false}' if i == 0 else None,
                         ingredients=["hyaluronic_acid"], device="LB212")
        record_s = time.perf_counter() - t0
        photo_bytes = float(s.scalar(sa.select(sa.func.sum(Photo.byte_size))))
        analysis_docs = [json.dumps(x, separators=(",", ":")) for x in s.scalars(sa.select(Analysis.document))]
        plan_docs = [json.dumps(x, separators=(",", ":")) for x in s.scalars(sa.select(Plan.document))]
    sizes_after = _db_bytes(engine, data_dir)
    n = len(photos)

    def one_query():
        with storage.session() as s:
            load_visit_scores(s, clinic.id, patient.id)

    def progress():
        with storage.session() as s:
            pp = patient_progress(s, clinic.id, patient.id)
            assert len(pp.progress.visits) == n

    def progress_json():
        with storage.session() as s:
            json.dumps(patient_progress(s, clinic.id, patient.id).to_dict(points=False))

    def progress_json_full():
        with storage.session() as s:
            json.dumps(patient_progress(s, clinic.id, patient.id).to_dict())

    def naive():
        with storage.session() as s:
            rows = s.execute(sa.select(Analysis, Photo).join(Photo, Photo.id == Analysis.photo_id)
                             .where(Photo.patient_id == patient.id)).all()
            [Observation.from_document(dt.date.today(), a.document) for a, _p in rows]

    # Interleaved rounds (each variant once per round), so a busy machine slows all alike.
    fns = {"query": one_query, "progress": progress, "json": progress_json, "json_full": progress_json_full,
           "naive": naive}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1000.0)
    stats = {}
    for k, ts in times.items():
        stats[f"{k}_ms"] = statistics.median(ts)
        stats[f"{k}_p90_ms"] = sorted(ts)[int(0.9 * (len(ts) - 1))]
    storage.close()
    return {
        "backend": label, "visits": n, "record_s": record_s,
        **stats,
        "photo_bytes_per_visit": photo_bytes / n,
        "analysis_doc_bytes": statistics.mean(len(x) for x in analysis_docs),
        "plan_doc_bytes": statistics.mean(len(x) for x in plan_docs),
        "db_bytes_per_visit": (sizes_after - sizes_before) / n if sizes_after is not None else None,
    }


def _db_bytes(engine, data_dir: Path) -> int | None:
    """Bytes the database occupies: the SQLite file (after a WAL checkpoint) or the PostgreSQL
    relations (tables, indexes, TOAST) of the schema in use."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db = Path(engine.url.database)
        return db.stat().st_size if db.exists() else 0
    with engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
        return int(c.exec_driver_sql(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'").scalar())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visits", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--pg", default=os.environ.get("MESOSCAN_TEST_DATABASE_URL"),
                    help="PostgreSQL URL (default: MESOSCAN_TEST_DATABASE_URL; skipped when unset)")
    args = ap.parse_args()
    single_core()
    from pipelines.analysis import analyze_bytes

    t0 = time.perf_counter()
    photos = _photos(args.visits)
    base = analyze_bytes(photos[0])
    docs = _documents(base, args.visits)
    print(f"prepared {args.visits} photos and documents in {time.perf_counter() - t0:.1f} s "
          f"(pipeline {base.get('pipeline_version')}, document has "
          f"{'scores' if base.get('scores') else 'NO scores'})")
    results = []
    with tempfile.TemporaryDirectory(prefix="mesoscan-bench-") as tmp:
        tmp = Path(tmp)
        results.append(run_backend("sqlite", f"sqlite:///{tmp / 'sqlite' / 'mesoscan.db'}", tmp / "sqlite",
                                   photos, docs, args.repeat))
        if args.pg:
            results.append(_run_pg(args.pg, tmp / "pg", photos, docs, args.repeat))
        else:
            print("PostgreSQL skipped (no --pg and no MESOSCAN_TEST_DATABASE_URL)")
    print()
    print(f"progress of one patient with {args.visits} visits, fresh session per call, median (90th "
          f"percentile) of {args.repeat} interleaved rounds; target < 100 ms")
    cols = (("one query", "query"), ("progress", "progress"), ("+ JSON", "json"), ("+ JSON, all points", "json_full"),
            ("naive: full docs", "naive"))
    print(f"{'backend':<11}" + "".join(f"{c:>20}" for c, _ in cols))
    for r in results:
        print(f"{r['backend']:<11}" + "".join(f"{r[k + '_ms']:>10.1f} ({r[k + '_p90_ms']:5.1f}) ms" for _, k in cols))
    print("one query: load_visit_scores; progress: + series, changes, summaries (patient_progress); + JSON: "
          "to_dict(points=False) and json.dumps; all points: with the ~5000 per-visit changes; naive: ORM rows "
          "with whole documents, parsed, no series (for comparison)")
    print()
    print("storage per visit")
    for r in results:
        db = f"{r['db_bytes_per_visit'] / 1024:.1f} KiB" if r["db_bytes_per_visit"] is not None else "-"
        print(f"{r['backend']:<11} photo blob {r['photo_bytes_per_visit'] / 1e6:.2f} MB; analysis document "
              f"{r['analysis_doc_bytes'] / 1024:.1f} KiB, plan document {r['plan_doc_bytes'] / 1024:.1f} KiB "
              f"(JSON text); database growth {db} per visit (rows, indexes, JSON); "
              f"recording took {1000 * r['record_s'] / r['visits']:.0f} ms per visit without the analysis")


def _run_pg(url: str, data_dir: Path, photos, docs, repeat) -> dict:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from service.storage.config import normalise_database_url
    from service.storage.db import make_engine

    schema = f"mesobench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url, poolclass=sa.pool.NullPool)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = make_url(normalise_database_url(url)).update_query_dict({"options": f"-csearch_path={schema}"})
        return run_backend("postgresql", scoped.render_as_string(hide_password=False), data_dir, photos, docs, repeat)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
