"""``mesoscan visit add|list|report``: record treatment sessions with their photo, list them,
and write the printable visit report.

    mesoscan visit add CODE --date D --photo P [--intake I] [--given-ingredients A B ...]
                       [--device DEV] [--regions R ...] [--notes TEXT]
    mesoscan visit list CODE
    mesoscan visit report CODE --visit DATE --out report.html

``visit add`` analyses the photo first and writes nothing when it is refused; then it stores
the visit, the photo (identifying metadata stripped), the analysis and a suggested plan (from
``--intake`` if given, which is recorded, else the patient's latest intake).
Exit status: 0 done, 1 the photo was refused or could not be analysed, 2 invalid input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.commands.patient import add_clinic_option, clinic_session, fail, iso_date


def register(subparsers) -> None:
    p = subparsers.add_parser("visit", help="record a treatment session with its photo; list visits; visit report")
    sub = p.add_subparsers(dest="visit_command", required=True, metavar="ACTION")

    a = sub.add_parser("add", help="record a visit: store, analyse the photo, suggest a plan",
                       description="Record a treatment session of patient CODE: the photo is analysed "
                                   "(and refused, with nothing stored, if the capture quality gate "
                                   "rejects it), stored without its identifying metadata, and a plan "
                                   "is suggested from the analysis and the intake.")
    a.add_argument("code", metavar="CODE", help="patient code")
    a.add_argument("--date", required=True, type=iso_date, metavar="D", help="date of the visit (YYYY-MM-DD)")
    a.add_argument("--photo", required=True, type=Path, metavar="P", help="face photo (JPEG, PNG, HEIC ...)")
    a.add_argument("--intake", type=Path, metavar="I", help="new intake JSON to record first (format: README.md)")
    a.add_argument("--given-ingredients", nargs="+", default=[], metavar="ID",
                   help="ingredient ids given at this session (ingredients.yaml, e.g. hyaluronic_acid vitamin_c)")
    a.add_argument("--device", default=None, metavar="DEV", help="delivery device (e.g. LB212, SC004, SC311, LB213)")
    a.add_argument("--regions", nargs="+", default=[], metavar="R", help="regions treated")
    a.add_argument("--notes", default=None, metavar="TEXT", help="practitioner's notes")
    a.add_argument("--no-plan", action="store_true", help="do not suggest a plan")
    a.add_argument("--json", action="store_true", help="print ids, scores, plan status and summaries as JSON")
    add_clinic_option(a)
    a.set_defaults(func=run_add)

    ls = sub.add_parser("list", help="list a patient's visits")
    ls.add_argument("code", metavar="CODE", help="patient code")
    add_clinic_option(ls)
    ls.set_defaults(func=run_list)

    r = sub.add_parser("report", help="write the printable visit report (HTML, images embedded)",
                       description="Write one self-contained HTML file: photo and region overlays, scores "
                                   "with their change since the baseline, progress summaries and chart, "
                                   "before/after against the baseline, and the plan. Print it from a "
                                   "browser for paper or PDF.")
    r.add_argument("code", metavar="CODE", help="patient code")
    r.add_argument("--visit", required=True, type=iso_date, metavar="DATE", help="date of the visit")
    r.add_argument("--out", required=True, type=Path, metavar="report.html", help="file to write")
    r.add_argument("--no-compare", action="store_true", help="leave out the before/after against the baseline")
    add_clinic_option(r)
    r.set_defaults(func=run_report)


def _check_choices(args) -> str | None:
    from pipelines.knowledge import load_knowledge
    from pipelines.regions import REGION_NAMES

    kb = load_knowledge()
    unknown = [i for i in args.given_ingredients if i not in kb.ingredient_by_id]
    if unknown:
        return (f"unknown ingredient(s) {', '.join(unknown)} (known: {', '.join(sorted(kb.ingredient_by_id))})")
    allowed = set(REGION_NAMES) | set(kb.concerns.regions.other) | {"face"}
    bad = [r for r in args.regions if r not in allowed]
    if bad:
        return f"unknown region(s) {', '.join(bad)} (known: {', '.join(['face', *REGION_NAMES])})"
    if args.device is not None and not 0 < len(args.device.strip()) <= 100:
        return "--device must be 1-100 characters"
    return None


def run_add(args: argparse.Namespace) -> int:
    from pipelines.errors import ImageRejected, InvalidInput, MesoscanError
    from service.progress import patient_progress, record_visit, require_patient
    from service.storage import repository as repo

    problem = _check_choices(args)
    if problem:
        return fail("visit add", problem)
    try:
        photo = args.photo.read_bytes()
    except OSError as exc:
        return fail("visit add", f"cannot read photo {args.photo}: {exc.strerror or exc}")
    intake = None
    if args.intake is not None:
        try:
            intake = args.intake.read_bytes()
        except OSError as exc:
            return fail("visit add", f"cannot read intake {args.intake}: {exc.strerror or exc}")
    try:
        with clinic_session(args.clinic) as (storage, session, clinic):
            patient = require_patient(session, clinic.id, args.code)
            rec = record_visit(session, storage.blobs, clinic.id, patient.id, args.date, photo, intake=intake,
                               ingredients=args.given_ingredients, device=args.device, regions=args.regions,
                               notes=args.notes, plan=not args.no_plan)
            pp = patient_progress(session, clinic.id, patient.id)
    except (repo.NotFound, repo.Conflict, InvalidInput) as exc:
        return fail("visit add", exc.message)
    except ImageRejected as exc:
        return fail("visit add", f"photo refused ({exc.code}): {exc.message}; nothing was stored", 1)
    except MesoscanError as exc:
        return fail("visit add", f"{exc.code}: {exc.message}", 1)
    doc = rec.document
    n = next((i + 1 for i, v in enumerate(pp.visits) if v.visit_id == rec.visit.id), len(pp.visits))
    if args.json:
        print(json.dumps({
            "patient": args.code, "visit_id": rec.visit.id, "date": args.date.isoformat(), "photo_id": rec.photo.id,
            "analysis_id": rec.analysis.id, "plan_id": rec.plan.id if rec.plan else None,
            "pipeline_version": doc.get("pipeline_version"), "quality": doc.get("quality", {}).get("status"),
            "scores": doc.get("scores") or {}, "plan_status": rec.plan_document["status"] if rec.plan_document else None,
            "summaries": [s.text for s in pp.progress.summaries],
        }, indent=2))
        return 0
    out = sys.stdout
    print(f"visit {args.date} recorded for {args.code} (visit {n} of {len(pp.visits)}): photo {rec.photo.id}, "
          f"analysis {rec.analysis.id}, pipeline {doc.get('pipeline_version')}", file=out)
    q = doc.get("quality") or {}
    issues = ", ".join(i["code"] for i in q.get("issues", []))
    print(f"quality: {q.get('status')}" + (f" ({issues})" if issues else ""), file=out)
    scores = {k: v for k, v in (doc.get("scores") or {}).items() if v is not None}
    if scores:
        print("scores (0 none - 100 severe): " + ", ".join(f"{k} {v:.0f}" for k, v in scores.items()), file=out)
    else:
        print("scores: none (this pipeline version computes no skin scores yet)", file=out)
    if rec.plan_document:
        pd = rec.plan_document
        print(f"plan: {pd['status'].replace('_', ' ')}, {len(pd['concerns'])} concerns, "
              f"{len(pd['suggestions'])} suggested ingredients", file=out)
    if len(pp.visits) > 1 and pp.progress.summaries:
        print("progress:", file=out)
        for s in pp.progress.summaries:
            print(f"  - {s.text}", file=out)
    print(f"report: mesoscan visit report {args.code} --visit {args.date} --out report.html", file=out)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from service.progress import load_visit_scores, require_patient
    from service.storage import repository as repo

    try:
        with clinic_session(args.clinic) as (_storage, session, clinic):
            patient = require_patient(session, clinic.id, args.code)
            rows = load_visit_scores(session, clinic.id, patient.id)
    except repo.NotFound as exc:
        return fail("visit list", exc.message)
    seen = set()
    for r in rows:
        if r.visit_id in seen:
            continue
        seen.add(r.visit_id)
        given = ", ".join(r.ingredients) or "-"
        state = f"analysis {r.analysis_id} ({r.pipeline_version})" if r.analysis_id else "no analysed photo"
        print(f"{r.visit_date.isoformat()}  {state}  given: {given}" + (f"  device: {r.device}" if r.device else ""))
    if not seen:
        print("no visits yet")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pipelines.errors import InvalidInput
    from service.progress import require_patient
    from service.report import build_visit_report
    from service.storage import repository as repo

    try:
        with clinic_session(args.clinic) as (storage, session, clinic):
            patient = require_patient(session, clinic.id, args.code)
            html = build_visit_report(session, storage.blobs, clinic.id, patient.id, args.visit,
                                      compare=not args.no_compare)
    except (repo.NotFound, InvalidInput) as exc:
        return fail("visit report", exc.message)
    except repo.BlobMissing as exc:
        return fail("visit report", exc.message, 1)
    try:
        args.out.write_text(html, encoding="utf-8")
    except OSError as exc:
        return fail("visit report", f"cannot write {args.out}: {exc.strerror or exc}", 1)
    print(f"report written to {args.out} ({len(html) // 1024} kB)")
    return 0
