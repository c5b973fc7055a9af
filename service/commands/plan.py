"""``mesoscan plan PHOTO --intake INTAKE.json``: analyse a photo and suggest a treatment plan.

Exit status: 0 a plan was made (whatever its status), 1 the photo was rejected or could not be
analysed, 2 invalid input (intake, dates, template, unreadable file): one line on stderr.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pipelines.errors import ImageRejected, InvalidInput, MesoscanError

Analyzer = Callable[[bytes], dict]


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="suggest a mesotherapy plan from a face photo and a patient intake",
        description="Analyse PHOTO, screen the intake for contraindications and suggest cocktail "
                    "ingredients with their reasons, pre-care, post-care and a session calendar. "
                    "Suggestions only: the practitioner decides; no doses are given.")
    p.add_argument("photo", metavar="PHOTO", type=Path, help="face photo (JPEG, PNG, HEIC ...)")
    p.add_argument("--intake", required=True, metavar="INTAKE.json", type=Path,
                   help="patient intake (format in README, section Treatment planning)")
    p.add_argument("--start", type=_iso_date, metavar="YYYY-MM-DD",
                   help="date of the first session (default: today)")
    p.add_argument("--template", default="standard", metavar="standard|intensive",
                   help="course template of courses.yaml (default: standard)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def _analyze_bytes(data: bytes) -> dict:
    """The real analysis, imported only when a plan is made."""
    from pipelines.analysis import analyze_bytes

    return analyze_bytes(data)


def _fail(message: str, status: int) -> int:
    print(f"mesoscan plan: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace, *, analyze: Analyzer | None = None) -> int:
    """Run the command; ``analyze`` replaces the analysis pipeline (tests, demos)."""
    from pipelines.planning import make_plan, parse_intake

    try:
        intake_bytes = args.intake.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read intake {args.intake}: {exc.strerror}", 2)
    try:
        photo = args.photo.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read photo {args.photo}: {exc.strerror}", 2)
    try:
        intake = parse_intake(intake_bytes, source=str(args.intake))
        analysis = (analyze or _analyze_bytes)(photo)
        plan = make_plan(analysis, intake, start=args.start or dt.date.today(), template=args.template)
    except InvalidInput as exc:
        return _fail(exc.message, 2)
    except ImageRejected as exc:
        return _fail(f"photo rejected ({exc.code}): {exc.message}", 1)
    except MesoscanError as exc:
        return _fail(f"{exc.code}: {exc.message}", 1)
    except ImportError as exc:
        return _fail(f"the analysis pipeline is not available: {exc}", 1)
    doc = plan.to_dict()
    print(json.dumps(doc, indent=2) if args.json else format_summary(doc))
    return 0


def format_summary(plan: dict) -> str:
    """A plan document (``Plan.to_dict()``) as text for a terminal."""
    from pipelines.knowledge import load_knowledge

    label = load_knowledge().region_label
    where = lambda regions: ", ".join(label(r) for r in regions)  # noqa: E731
    lines = [f"Status: {plan['status'].replace('_', ' ')}"]
    for r in plan["reasons"]:
        lines.append(f"  - {r['message']}")
    if plan["concerns"]:
        lines.append("Concerns found:")
        lines += [f"  - {c['label']} (severity {c['severity']:g}) on {where(c['regions'])}" for c in plan["concerns"]]
    else:
        lines.append("Concerns found: none above the thresholds.")
    if plan["suggestions"]:
        lines.append("Suggested ingredients (the practitioner decides; no doses):")
        for i, s in enumerate(plan["suggestions"], 1):
            lines.append(f"  {i}. {s['name']} [{s['family']}]")
            lines.append(f"     {s['reason']}")
    for e in plan["excluded"]:
        lines.append(f"Excluded: {e['name']}: {e['reason']}")
    for title, key in (("Before the session", "pre_care"), ("After the session", "post_care")):
        if plan[key]:
            lines.append(f"{title}:")
            lines += [f"  - {item['text']}" for item in plan[key]]
    if plan["patch_test"]:
        lines.append(plan["patch_test"]["text"])
    if plan["course"] and plan["calendar"]:
        course = plan["course"]
        optional = set(course["optional_dates"])
        dates = [f"{d} (optional)" if d in optional else d for d in plan["calendar"]]
        lines.append(f"{course['label']}: {course['description']}")
        lines.append("  Sessions: " + ", ".join(dates))
        m = course["maintenance"]
        lines.append(f"  Maintenance ({m['description']}): first between {m['from']} and {m['to']}")
    lines.append(plan["disclaimer"])
    return "\n".join(lines)
