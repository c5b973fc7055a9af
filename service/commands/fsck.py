"""``mesoscan fsck [--remove] [--verify] [--json]``: check that photo blobs and rows match.

Exit status 0 when nothing is wrong (or everything found was removed), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fsck", help="check photo blobs against the database",
        description="Find orphan photo blobs (no row uses them; left by a crash between the blob "
                    "write and the commit), photo rows whose blob is missing, and leftover "
                    "temporary files. Uses MESOSCAN_DATA_DIR and DATABASE_URL.")
    p.add_argument("--remove", action="store_true", help="delete orphan blobs and stale temporary files")
    p.add_argument("--verify", action="store_true", help="also re-hash every blob (reads all photos)")
    p.add_argument("--temp-grace", type=float, default=3600.0, metavar="SECONDS",
                   help="temporary files younger than this may belong to an upload in progress (default 3600)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.storage import open_storage
    from service.storage.repository import fsck

    storage = open_storage()
    try:
        with storage.session() as session:
            report = fsck(session, storage.blobs, remove=args.remove, verify=args.verify,
                          temp_grace_s=args.temp_grace)
    finally:
        storage.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_text(report, args.remove)
    return 0 if report.clean else 1


def _print_text(report, removed: bool) -> None:
    out = sys.stdout
    print(f"{report.blobs_on_disk} blobs on disk, {report.photo_rows} photo rows", file=out)
    for sha in report.orphan_blobs:
        state = "removed" if sha in report.removed_blobs else "orphan"
        print(f"{state}: blob {sha} (no photo row uses it)", file=out)
    for sha in report.dangling_blob_rows:
        state = "removed" if sha in report.removed_blob_rows else "dangling"
        print(f"{state}: blob row {sha} (no file, no photo)", file=out)
    for m in report.missing_blobs:
        print(f"MISSING: photo {m.photo_id} of clinic {m.clinic_id}: blob {m.sha256} is gone", file=out)
    for sha in report.corrupt_blobs:
        print(f"CORRUPT: blob {sha} does not match its hash", file=out)
    for path in report.stale_temp_files:
        state = "removed" if path in report.removed_temp_files else "stale"
        print(f"{state}: temporary file {path}", file=out)
    if report.clean:
        print("ok", file=out)
    elif not removed and (report.orphan_blobs or report.stale_temp_files or report.dangling_blob_rows):
        print("run `mesoscan fsck --remove` to delete the orphans", file=out)
