"""``mesoscan progress CODE [--json] [--chart OUT.png|OUT.svg]``: a patient's scores across
visits, the change since the baseline and since the previous visit, and whether each is beyond
the measurement noise.

Exit status: 0 done, 2 unknown patient or bad chart path: one line on stderr.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.commands.patient import add_clinic_option, clinic_session, fail


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "progress", help="a patient's progress across visits (series, changes, real-change verdicts)",
        description="Scores per visit for the whole face and every region, their change since the "
                    "baseline and the previous visit, and a one-line summary per concern. A change "
                    "is called real only beyond the minimal detectable change measured by the "
                    "repeatability harness (pipelines/calibration/repeatability.json).")
    p.add_argument("code", metavar="CODE", help="patient code")
    p.add_argument("--json", action="store_true", help="print the progress document (schema mesoscan.progress/1)")
    p.add_argument("--chart", type=Path, metavar="OUT.png|OUT.svg", help="write the progress chart")
    p.add_argument("--metrics", action="store_true", help="also follow the whole-face metrics")
    p.add_argument("--pipeline-version", default=None, metavar="V",
                   help="use analyses of this pipeline version (default: the one covering most visits)")
    add_clinic_option(p)
    p.set_defaults(func=run)


def _table(pp) -> list[str]:
    prog = pp.progress
    lines = []
    header = "date        " + "".join(f"{f:>15}" for f in ("overall", "pigmentation", "texture", "wrinkles"))
    lines.append(header)
    for i, v in enumerate(prog.visits):
        cells = []
        for fam in ("overall", "pigmentation", "texture", "wrinkles"):
            s = prog.get(fam)
            if s is None or s.values[i] is None:
                cells.append(f"{'-':>15}")
                continue
            b = s.from_baseline[i]
            mark = ""
            if b is not None:
                mark = f" ({b.delta:+.1f}{'*' if b.real else ''})"
            cells.append(f"{s.values[i]:.1f}{mark}".rjust(15))
        lines.append(f"{v.date.isoformat()}  " + "".join(cells))
    return lines


def run(args: argparse.Namespace) -> int:
    from pipelines.errors import InvalidInput
    from service.progress import patient_progress, require_patient
    from service.storage import repository as repo

    if args.chart is not None and args.chart.suffix.lower() not in (".png", ".svg"):
        return fail("progress", f"--chart must end in .png or .svg: {args.chart}")
    try:
        with clinic_session(args.clinic) as (_storage, session, clinic):
            patient = require_patient(session, clinic.id, args.code)
            pp = patient_progress(session, clinic.id, patient.id, with_metrics=args.metrics,
                                  pipeline_version=args.pipeline_version)
    except (repo.NotFound, InvalidInput) as exc:
        return fail("progress", exc.message)
    if args.chart is not None:
        from service.charts import write_progress_chart

        try:
            write_progress_chart(pp.progress, args.chart, title=f"Patient {args.code}")
        except OSError as exc:
            return fail("progress", f"cannot write {args.chart}: {exc.strerror or exc}", 1)
    if args.json:
        doc = pp.to_dict()
        doc["patient"] = args.code
        print(json.dumps(doc, indent=2))
        return 0
    prog = pp.progress
    print(f"patient {args.code}: {len(prog.visits)} visits"
          + (f", pipeline {pp.pipeline_version}" if pp.pipeline_version else ""))
    if not prog.visits:
        print("no visits yet: add one with `mesoscan visit add`")
        return 0
    for line in _table(pp):
        print("  " + line)
    print("  (in brackets: change since baseline; * beyond measurement noise)")
    if prog.summaries:
        print("summary:")
        for s in prog.summaries:
            print(f"  - {s.text}")
    else:
        print("summary: no scores yet")
    for n in prog.notes:
        print(f"note: {n}")
    if args.chart is not None:
        print(f"chart written to {args.chart}")
    return 0
