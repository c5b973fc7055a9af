"""``mesoscan analyze PHOTO... [--json] [--overlay OUT.png] [--layer L] [--region R]``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.errors import MesoscanError


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="analyse face photos: quality, regions, skin metrics and scores")
    p.add_argument("photos", nargs="+", metavar="PHOTO", type=Path)
    p.add_argument("--json", action="store_true", help="print the result document (JSON Lines for several photos)")
    p.add_argument("--overlay", type=Path, metavar="OUT.png",
                   help="write an overlay PNG (with several photos: OUT-<photo stem>.png)")
    p.add_argument("--layer", default="regions", help="overlay layer: regions, spots, redness, roughness, pores, wrinkles")
    p.add_argument("--region", default=None, help="limit the overlay to one region")
    p.set_defaults(func=run)


def _overlay_path(out: Path, photo: Path, many: bool) -> Path:
    return out.with_name(f"{out.stem}-{photo.stem}{out.suffix or '.png'}") if many else out


def _summary(doc: dict) -> str:
    q = doc["quality"]
    lines = [f"quality: {q['status']}" + "".join(f"\n  {i['severity']}: {i['code']} - {i['message']}" for i in q["issues"])]
    f = doc["face"]
    lines.append(f"face: confidence {f['confidence']:.3f}, {f['px_per_mm']:.1f} px/mm, roll {f['roll_deg']:+.1f} deg, "
                 f"yaw {f['yaw_deg']:+.1f} deg")
    cc = doc.get("colour_correction") or {}
    if cc:
        card = cc.get("card")
        lines.append(f"colour: reference {cc['reference']}" + (f" (card median dE {card['median_de']:.1f})" if card else "")
                     + ", gains " + " ".join(f"{g:.2f}" for g in cc["gains"]) + f", exposure {cc['exposure_gain']:.2f}")
    scores = doc.get("scores") or {}
    if scores:
        lines.append("scores (0 none - 100 severe): " + ", ".join(f"{k} {v:.0f}" for k, v in scores.items() if v is not None))
    lines.append("regions:")
    for name, reg in doc["regions"].items():
        rs = reg.get("scores") or {}
        detail = ", ".join(f"{k} {v:.0f}" for k, v in rs.items() if v is not None)
        state = "" if reg["measurable"] else " (not measurable: hidden)"
        lines.append(f"  {name:<17} {reg['area_cm2']:6.2f} cm2{state}{'  ' + detail if detail else ''}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # Imported here so `mesoscan --help` stays instant.
    import cv2

    from pipelines.analysis import Analyzer
    from pipelines.overlay import render_overlay

    analyzer = Analyzer()
    many = len(args.photos) > 1
    failed = 0
    for photo in args.photos:
        try:
            data = photo.read_bytes()
        except OSError as exc:
            err = {"code": "unreadable_file", "message": f"cannot read {photo}: {exc.strerror or exc}"}
        else:
            try:
                analysis = analyzer.analyze(data)
                if args.overlay:
                    img = render_overlay(analysis, args.layer, region=args.region)
                    out = _overlay_path(args.overlay, photo, many)
                    if not cv2.imwrite(str(out), img[..., ::-1]):
                        raise MesoscanError(f"cannot write overlay to {out}", code="unwritable_output")
                err = None
            except MesoscanError as exc:
                err = {"code": exc.code, "message": exc.message}
        if err is not None:
            failed += 1
            print(f"{photo}: {err['code']}: {err['message']}", file=sys.stderr)
            if args.json and many:
                print(json.dumps({"path": str(photo), "error": err}), flush=True)
            continue
        doc = analysis.document
        if args.json:
            out_doc = {"path": str(photo), **doc} if many else doc
            print(json.dumps(out_doc, separators=(",", ":") if many else None, indent=None if many else 2), flush=True)
        else:
            print(f"== {photo}\n{_summary(doc)}", flush=True)
    return 1 if failed else 0
