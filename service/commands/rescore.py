"""``mesoscan rescore SOURCE --out OUT [--workers N | --scheduler tcp://HOST:8786] [--resume]``.

Re-score a folder tree, a zip or tar archive, or the service's own store (``store:`` or
``store:CLINIC_ID``) with the current pipeline on Dask, into a Parquet dataset. See
README.md, section "Re-scoring an archive".
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rescore", help="re-score an archive of photos on a Dask cluster into a Parquet dataset",
        description="Re-score every photo of SOURCE (a folder tree, a zip or tar archive, or 'store:' for the "
                    "service's own photos, 'store:ID' for one clinic) with the current pipeline. One row per "
                    "photo goes to the Parquet dataset OUT, written in parts as results arrive. For 'store:', "
                    "new analysis rows are added beside the old ones (never replaced).")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="Parquet dataset folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="tcp://HOST:8786", help="use an existing Dask cluster")
    p.add_argument("--resume", action="store_true",
                   help="continue into an existing OUT, skipping photos it holds for this pipeline version")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="photos per task (default 8)")
    p.add_argument("--part-rows", type=int, default=1000, metavar="N", help="rows per Parquet part (default 1000)")
    p.add_argument("--transfer", choices=("auto", "paths", "bytes"), default="auto",
                   help="folders and the store: send paths (workers read the files: shared filesystem) or bytes "
                        "(the client reads); archives always send bytes (default auto = paths)")
    p.add_argument("--no-count", action="store_true", help="do not count the source first (no ETA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.batch.runner import RescoreConfig, RescoreError, dask_client, rescore
    from service.batch.sources import open_source
    from service.batch.writer import part_files

    if args.workers is not None and args.workers < 1:
        print("rescore: --workers must be >= 1", file=sys.stderr)
        return 2
    if part_files(args.out) and not args.resume:
        print(f"rescore: {args.out} already holds a dataset: add --resume to continue it, or choose another OUT",
              file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rescore: %(message)s"))
    batch_log = logging.getLogger("service.batch")
    batch_log.addHandler(handler)
    batch_log.setLevel(logging.INFO)
    try:
        source = open_source(args.source, transfer=args.transfer)
    except (OSError, ValueError) as exc:
        print(f"rescore: {exc}", file=sys.stderr)
        return 2
    config = RescoreConfig(batch_size=args.batch_size, part_rows=args.part_rows, resume=args.resume,
                           count=not args.no_count, progress=not args.no_progress)
    summary = None
    try:
        with dask_client(args.workers, args.scheduler) as client:
            summary = rescore(source, args.out, client, config)
    except KeyboardInterrupt:
        print("\nrescore: interrupted; finished rows are saved, continue with --resume", file=sys.stderr)
        return 130
    except RescoreError as exc:
        print(f"rescore: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0
