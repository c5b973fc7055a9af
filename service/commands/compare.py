"""``mesoscan compare CODE --before DATE --after DATE --out OUT.png``: the two visits' photos
aligned by their landmarks, side by side with a colour-difference (CIEDE2000) heat map, and the
difference per region.

``--region R`` draws that region only; ``--each-region`` also writes ``OUT-<region>.png`` for
every region. Exit status: 0 done, 1 the photos cannot be compared, 2 invalid input.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.commands.patient import add_clinic_option, clinic_session, fail, iso_date


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="before/after of two visits: aligned side by side with a difference heat map",
        description="Align the after photo onto the before photo by their landmarks (similarity "
                    "transform, refined on the image), match exposure, and map the CIEDE2000 colour "
                    "difference; prints the difference per region.")
    p.add_argument("code", metavar="CODE", help="patient code")
    p.add_argument("--before", required=True, type=iso_date, metavar="DATE", help="date of the earlier visit")
    p.add_argument("--after", required=True, type=iso_date, metavar="DATE", help="date of the later visit")
    p.add_argument("--out", required=True, type=Path, metavar="OUT.png", help="image to write (PNG or JPEG)")
    p.add_argument("--region", default=None, metavar="R", help="show one region only")
    p.add_argument("--each-region", action="store_true", help="also write OUT-<region>.png per region")
    p.add_argument("--max-de", type=float, default=10.0, metavar="DE", help="top of the colour scale (default 10)")
    p.add_argument("--json", action="store_true", help="print the comparison (alignment, per-region differences)")
    add_clinic_option(p)
    p.set_defaults(func=run)


def _write(path: Path, rgb) -> None:
    import cv2

    if not cv2.imwrite(str(path), rgb[..., ::-1]):
        raise OSError(f"cannot write {path}")


def run(args: argparse.Namespace) -> int:
    from pipelines.compare import render_comparison
    from pipelines.errors import InvalidInput
    from pipelines.regions import REGION_NAMES
    from service.progress import require_patient
    from service.report import compare_visits
    from service.storage import repository as repo

    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        return fail("compare", f"--out must end in .png or .jpg: {args.out}")
    if args.region is not None and args.region not in REGION_NAMES:
        return fail("compare", f"unknown region {args.region!r} (one of {', '.join(REGION_NAMES)})")
    try:
        with clinic_session(args.clinic) as (storage, session, clinic):
            patient = require_patient(session, clinic.id, args.code)
            cmp, labels = compare_visits(session, storage.blobs, clinic.id, patient.id, args.before, args.after)
    except repo.NotFound as exc:
        return fail("compare", exc.message)
    except InvalidInput as exc:
        return fail("compare", f"the photos cannot be compared: {exc.message}", 1)
    try:
        _write(args.out, render_comparison(cmp, region=args.region, labels=labels, max_de=args.max_de))
        written = [args.out]
        if args.each_region:
            for name in cmp.polygons:
                out = args.out.with_name(f"{args.out.stem}-{name}{args.out.suffix}")
                _write(out, render_comparison(cmp, region=name, labels=labels, max_de=args.max_de))
                written.append(out)
    except InvalidInput as exc:
        return fail("compare", exc.message)
    except OSError as exc:
        return fail("compare", str(exc), 1)
    if args.json:
        doc = cmp.to_dict()
        doc.update({"patient": args.code, "before": args.before.isoformat(), "after": args.after.isoformat(),
                    "written": [str(p) for p in written]})
        print(json.dumps(doc, indent=2))
        return 0
    a = cmp.alignment
    print(f"aligned {args.after} onto {args.before}: scale {a.scale:.3f}, rotation {a.rotation_deg:+.1f} deg, "
          f"landmark residual {a.residual_mm:.1f} mm" + (", refined on the image" if cmp.refined else ""))
    g = cmp.exposure_gains
    print(f"exposure matched (linear gains R {g[0]:.2f} G {g[1]:.2f} B {g[2]:.2f})")
    print(f"{'region':<18}{'mean dE00':>10}{'p95 dE00':>10}{'mean dL*':>10}{'> ' + format(cmp.changed_de, 'g') + ' dE':>10}")
    for r in cmp.regions.values():
        print(f"{r.name:<18}{r.mean_delta_e:>10.2f}{r.p95_delta_e:>10.2f}{r.mean_delta_l:>+10.2f}{r.changed_pct:>9.1f}%")
    print("written: " + ", ".join(str(p) for p in written))
    return 0
