"""``mesoscan report OUT [--html REPORT.html] [--reference NAME] [--pipeline-version V]``.

Per-metric distributions of a dataset written by ``mesoscan rescore``; ``--reference`` saves
them as the clinic's reference population (a new version each time) under the data dir.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="distributions of a re-scored archive; save a reference population",
                              description="Print per-metric distributions (percentiles, histograms) of the scored "
                                          "photos in a Parquet dataset written by 'mesoscan rescore'.")
    p.add_argument("out", type=Path, metavar="OUT", help="the dataset folder")
    p.add_argument("--html", type=Path, metavar="REPORT.html", help="also write an HTML report with histograms")
    p.add_argument("--reference", metavar="NAME",
                   help="save the distributions as reference population NAME "
                        "(<MESOSCAN_DATA_DIR>/reference/NAME.vN.json, a new version N each time)")
    p.add_argument("--pipeline-version", metavar="V", help="which pipeline's rows, when the dataset has several")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.batch.report import describe, format_html, format_text, save_reference

    try:
        d = describe(args.out, args.pipeline_version)
    except (FileNotFoundError, ValueError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(format_text(d))
    if args.html:
        args.html.write_text(format_html(d), encoding="utf-8")
        print(f"\nHTML report: {args.html}")
    if args.reference:
        if d.scored == 0:
            print("report: no scored photo: nothing to save as a reference", file=sys.stderr)
            return 2
        try:
            path = save_reference(d, args.reference)
        except ValueError as exc:
            print(f"report: {exc}", file=sys.stderr)
            return 2
        print(f"reference population saved: {path} ({d.scored} photos, pipeline {d.pipeline_version})")
    return 0
