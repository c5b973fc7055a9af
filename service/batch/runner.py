"""The client side of ``mesoscan rescore``: enumerate, batch, score on Dask, write, summarise.

Flow, with memory bounded whatever the archive size:

    source.items()  ->  resume / duplicate filter  ->  batches (N items or B bytes)
        -> client.submit(process_batch) with at most ``window`` batches in flight
        -> distributed.as_completed: rows -> (store: analysis rows) -> PartWriter -> parts

The client holds at most ``window`` batches (their bytes, for archives), one part's rows, and
the identity sets (32-byte digests of done and already-seen photos: about 100 bytes a photo).
Nothing collects the results: each batch's rows are written and dropped as it completes.

Identity is the sha256 of a photo's bytes. Archives, client-read folders and the store are
hashed by the client (the store's blob key is its hash), so done and duplicate photos are
dropped before anything is sent. Folders read by the workers (paths) are hashed there: the
done set is broadcast to every worker once and the worker skips a done photo after hashing,
without analysing it; duplicates are dropped when their rows arrive.

A batch whose worker died (``KilledWorker``: a segfault or out-of-memory in one photo, after
Dask's own retries, ``distributed.scheduler.allowed-failures``) is set aside; at the end its
photos run one at a time, each alone on the cluster, so the photo that kills workers ends as
one ``failed`` / ``worker_died`` row while its batch-mates and any bystander batches are scored.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from pipelines import PIPELINE_VERSION
from service.batch.flatten import STATUS_FAILED, STATUS_REJECTED, STATUS_SCORED, plain, problem_row, scored_row
from service.batch.resume import DoneSet, read_done
from service.batch.sources import Item, Source, StoreSource
from service.batch.worker import STATUS_SKIPPED, Analyze, process_batch
from service.batch.writer import PartWriter

log = logging.getLogger(__name__)


class RescoreError(Exception):
    """The run cannot go on (mismatched pipeline versions, a missing model, a broken cluster)."""


@dataclass
class RescoreConfig:
    batch_size: int = 8                 # photos per task
    batch_bytes: int = 32 * 1024 * 1024  # ... or fewer, when their bytes reach this (bytes sent)
    max_inflight_bytes: int = 512 * 1024 * 1024  # photo bytes sent and not yet scored, whatever the window
    window: int | None = None           # batches in flight; default 2 x worker threads + 1
    part_rows: int = 1000               # rows per Parquet part
    flush_seconds: float = 60.0         # a partial part is written after this long
    resume: bool = False
    count: bool = True                  # count the source first, for the progress bar's ETA
    progress: bool = True
    analyze: Analyze | None = None      # test seam: bytes -> document; None = the real Analyzer
    warm_up: bool = True                # load the face model on every worker before starting


@dataclass
class Summary:
    source: str = ""
    out: str = ""
    pipeline_version: str = PIPELINE_VERSION
    scored: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    skipped: int = 0               # already in OUT with this pipeline version (resume)
    duplicates: int = 0            # same bytes as a photo already scored in this run
    stored_new: int = 0            # store: analysis rows added
    stored_existing: int = 0       # store: this pipeline version's row was already there
    elapsed_s: float = 0.0
    workers: int = 0
    worker_peak_mb: dict[str, float] = field(default_factory=dict)
    worker_cpu_s: float = 0.0      # CPU time the workers spent in batches (all workers, all threads)
    worker_busy_s: float = 0.0     # wall time the workers spent in batches
    parts_written: int = 0
    rows_written: int = 0
    interrupted: bool = False
    peak_batches_in_flight: int = 0
    peak_bytes_in_flight: int = 0

    @property
    def processed(self) -> int:
        return self.scored + sum(self.rejected.values()) + sum(self.failed.values())

    @property
    def images_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def count_row(self, row: dict) -> None:
        status = row["status"]
        if status == STATUS_SCORED:
            self.scored += 1
        elif status == STATUS_REJECTED:
            self.rejected[row.get("reason") or "?"] += 1
        else:
            self.failed[row.get("reason") or "?"] += 1

    def format(self) -> str:
        def by_reason(c: Counter) -> str:
            return ", ".join(f"{k} {v}" for k, v in c.most_common()) if c else ""

        head = "rescore interrupted" if self.interrupted else "rescore finished"
        lines = [
            f"{head}: {self.processed} photos in {self.elapsed_s:.1f} s = {self.images_per_s:.2f} images/s "
            f"({self.workers} worker{'s' if self.workers != 1 else ''}, pipeline {self.pipeline_version})",
            f"  scored     {self.scored:>7}",
            f"  rejected   {sum(self.rejected.values()):>7}   {by_reason(self.rejected)}".rstrip(),
            f"  failed     {sum(self.failed.values()):>7}   {by_reason(self.failed)}".rstrip(),
        ]
        if self.skipped:
            lines.append(f"  skipped    {self.skipped:>7}   already in the dataset with pipeline {self.pipeline_version}")
        if self.duplicates:
            lines.append(f"  duplicates {self.duplicates:>7}   same bytes as a photo already scored in this run")
        if self.stored_new or self.stored_existing:
            lines.append(f"  store: {self.stored_new} analysis rows added beside the old ones, "
                         f"{self.stored_existing} already there for this pipeline version")
        lines.append(f"  dataset: {self.parts_written} parts, {self.rows_written} rows written to {self.out}")
        if self.processed and self.worker_busy_s:
            lines.append(f"  workers: {self.worker_cpu_s / self.processed:.2f} CPU s per photo, busy "
                         f"{100 * self.worker_busy_s / max(self.elapsed_s * max(self.workers, 1), 1e-9):.0f} % "
                         f"of the run")
        if self.worker_peak_mb:
            peaks = ", ".join(f"{w} {mb:.0f} MB" for w, mb in sorted(self.worker_peak_mb.items()))
            lines.append(f"  peak memory per worker: {peaks}")
        return "\n".join(lines)


# --- cluster ----------------------------------------------------------------------------------


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def local_cluster(n_workers: int | None = None, *, threads_per_worker: int = 1, processes: bool = True,
                  memory_limit: str | int = "auto", silence_logs: int = logging.ERROR):
    """A LocalCluster on loopback with random ports (several runs and other services share
    machines): scheduler, workers and the scheduler's HTTP endpoint (health, metrics; the
    dashboard when bokeh is installed). One thread per worker process by default: a process is a core."""
    from distributed import LocalCluster

    where = {"host": "127.0.0.1", "scheduler_port": 0} if processes else {}   # threads: in-process comms
    return LocalCluster(n_workers=n_workers or default_workers(), threads_per_worker=threads_per_worker,
                        processes=processes, dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, memory_limit=memory_limit,
                        silence_logs=silence_logs, **where)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *,
                memory_limit: str | int = "auto") -> Iterator:
    """A Dask client: to the scheduler at ``scheduler`` (``tcp://host:8786``), or to a new
    LocalCluster of ``workers`` processes (default one per core), one thread each."""
    from distributed import Client

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = local_cluster(workers, memory_limit=memory_limit)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _warm(analyze_is_default: bool) -> str:
    from service.batch.worker import default_analyze

    if analyze_is_default:
        default_analyze()
    return PIPELINE_VERSION


# --- the run ----------------------------------------------------------------------------------


class _Progress:
    def __init__(self, total: int | None, enabled: bool, initial_desc: str = "rescore"):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc=initial_desc, dynamic_ncols=True, file=sys.stderr,
                            smoothing=0.05, mininterval=0.5)

    def update(self, n: int, summary: Summary) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        post = {"scored": summary.scored, "rejected": sum(summary.rejected.values()),
                "failed": sum(summary.failed.values())}
        if summary.skipped:
            post["skipped"] = summary.skipped
        self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Run:
    def __init__(self, source: Source, out: str, client, config: RescoreConfig):
        self.source = source
        self.client = client
        self.config = config
        self.store = isinstance(source, StoreSource)
        self.summary = Summary(source=source.description, out=str(out))
        self.done: DoneSet = read_done(out, PIPELINE_VERSION) if config.resume else DoneSet(PIPELINE_VERSION)
        self.seen: set[bytes] = set()                     # digests scored in this run
        self.writer = PartWriter(out, part_rows=config.part_rows, flush_seconds=config.flush_seconds,
                                 metadata={"mesoscan.source": source.description,
                                           "mesoscan.pipeline_version": PIPELINE_VERSION})
        self.pending: dict = {}                           # future -> its batch
        self.scattered: dict = {}                         # future -> the future of its scattered bytes
        self.inflight_bytes = 0
        self.suspects: list[Item] = []                    # photos of batches whose worker died
        self.isolating = False
        self.tag = uuid.uuid4().hex[:8]
        self.n_submitted = 0

    # -- identity filters
    def _seen_before(self, sha: str) -> bool:
        key = bytes.fromhex(sha)
        if key in self.seen:
            return True
        self.seen.add(key)
        return False

    def _client_filter(self, item: Item) -> str | None:
        """'skipped' / 'duplicate' for items the client can drop before sending, else None."""
        if self.store:
            return "skipped" if self.done.has_path(item.path) else None
        if item.sha256 is None:          # refused by the client, or to be hashed by a worker
            return "skipped" if self.done.has_path(item.path) else None
        if self.done.has_sha(item.sha256):
            return "skipped"
        return "duplicate" if self._seen_before(item.sha256) else None

    # -- results
    def _accept(self, row: dict, document: dict | None, item: Item | None) -> None:
        s = self.summary
        if row.get("pipeline_version") not in (None, PIPELINE_VERSION):
            raise RescoreError(f"a worker runs pipeline {row['pipeline_version']}, this client {PIPELINE_VERSION}: "
                               "install the same mesoscan on every machine")
        if self.store and item is not None and item.photo and document is not None:
            self._store_analysis(item.photo, document)
        self.writer.add(row)
        s.count_row(row)

    def _store_analysis(self, photo: tuple[int, int], document: dict) -> None:
        from service.storage import repository as repo

        clinic_id, photo_id = photo
        document = json.loads(json.dumps(document, default=plain))   # numpy scalars -> JSON values
        with self.source.storage.session() as session:
            try:
                repo.add_analysis(session, clinic_id, photo_id, PIPELINE_VERSION, document)
                self.summary.stored_new += 1
            except repo.Conflict:
                self.summary.stored_existing += 1     # never replaced: history is kept

    def _handle(self, fut) -> None:
        from distributed.scheduler import KilledWorker

        from pipelines.errors import ModelUnavailable

        batch = self.pending.pop(fut)
        self.inflight_bytes -= sum(i.nbytes for i in batch)
        data_fut = self.scattered.pop(fut, None)
        try:
            result = fut.result()
        except ModelUnavailable as exc:
            raise RescoreError(f"a worker cannot load the face model: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a lost batch must not end the run
            died = isinstance(exc, KilledWorker)
            if self.isolating:
                item = batch[0]
                if died:
                    row = problem_row(item.path, item.sha256, STATUS_FAILED, "worker_died",
                                      "the worker process died on this photo (crash or out of memory), alone on "
                                      "the cluster", PIPELINE_VERSION)
                else:
                    row = problem_row(item.path, item.sha256, STATUS_FAILED, "task_error",
                                      f"{type(exc).__name__}: {exc}"[:1000], PIPELINE_VERSION)
                self._accept(row, None, item)
                self.progress.update(1, self.summary)
                return
            log.warning("%s on a batch of %d photos: they will be retried one by one at the end",
                        "a worker died" if died else f"{type(exc).__name__}: {exc}", len(batch))
            self.suspects.extend(batch)
            if len(self.suspects) > self.max_suspects:
                raise RescoreError(f"batches holding {len(self.suspects)} photos were lost (last: "
                                   f"{type(exc).__name__}: {exc}); stopping: too little memory per worker? see "
                                   "the worker logs. Finished rows are saved: fix, then --resume") from exc
            return
        finally:
            fut.release()
            if data_fut is not None:
                data_fut.release()
        s = self.summary
        if result.get("maxrss_mb") is not None:
            w = result["worker"]
            s.worker_peak_mb[w] = max(s.worker_peak_mb.get(w, 0.0), float(result["maxrss_mb"]))
        s.worker_cpu_s += float(result.get("cpu_s") or 0.0)
        s.worker_busy_s += float(result.get("busy_s") or 0.0)
        documents = result.get("documents") or [None] * len(result["rows"])
        for row, document, item in zip(result["rows"], documents, batch):
            if row["status"] == STATUS_SKIPPED:
                s.skipped += 1
            elif item.sha256 is None and row.get("sha256") and self._seen_before(row["sha256"]):
                s.duplicates += 1          # worker-hashed duplicate: the first to arrive was kept
            else:
                self._accept(row, document, item)
        self.progress.update(len(batch), s)
        self.writer.maybe_flush()

    def _submit(self, batch: list[Item]) -> None:
        key = f"mesoscan-rescore-{self.tag}-{self.n_submitted}"
        nbytes = sum(i.nbytes for i in batch)
        arg = batch
        data_fut = None
        if nbytes:
            # Bytes go straight to a worker, not inside the task through the scheduler (which
            # would hold every queued batch's photos and warn about large graphs).
            [data_fut] = self.client.scatter([batch], hash=False)
            arg = data_fut
        fut = self.client.submit(process_batch, arg, self.skip, self.config.analyze, self.store, key=key, pure=False)
        self.n_submitted += 1
        self.pending[fut] = batch
        self.inflight_bytes += nbytes
        if data_fut is not None:
            self.scattered[fut] = data_fut
        self.ac.add(fut)
        s = self.summary
        s.peak_batches_in_flight = max(s.peak_batches_in_flight, len(self.pending))
        s.peak_bytes_in_flight = max(s.peak_bytes_in_flight, self.inflight_bytes)

    def _wait_for_room(self, window: int, next_bytes: int = 0) -> None:
        """Block until fewer than ``window`` batches are in flight and ``next_bytes`` more
        would stay under ``max_inflight_bytes``."""
        while self.pending and (len(self.pending) >= window
                                or self.inflight_bytes + next_bytes > self.config.max_inflight_bytes):
            self._handle(next(self.ac))

    def _existing_store_row(self, item: Item) -> bool:
        """Store photos already analysed by this pipeline version: the row comes from the stored
        document (never re-analysed, never replaced)."""
        from service.storage import repository as repo

        if not item.extra.get("analysed"):
            return False
        clinic_id, photo_id = item.photo
        with self.source.storage.session() as session:
            rows = repo.list_analyses(session, clinic_id, photo_id=photo_id, pipeline_version=PIPELINE_VERSION)
        if not rows:
            return False
        self.writer.add(scored_row(item.path, item.sha256, rows[0].document))
        self.summary.scored += 1
        self.summary.stored_existing += 1
        return True

    def run(self) -> Summary:
        from distributed import as_completed

        cfg = self.config
        s = self.summary
        self.ac = as_completed()
        if not self.client.nthreads():
            try:
                self.client.wait_for_workers(1, timeout=120)
            except TimeoutError as exc:
                raise RescoreError("no Dask worker joined the scheduler within 120 s") from exc
        nthreads = sum(self.client.nthreads().values()) or 1
        s.workers = len(self.client.nthreads())
        window = cfg.window or (2 * nthreads + 1)
        self.max_suspects = max(100, 4 * window * cfg.batch_size)
        if cfg.warm_up:
            # A task pinned to each worker, so the Analyzer is created in the thread that will
            # run the batches (``Client.run`` would run it in the worker's event-loop thread).
            warm = [self.client.submit(_warm, cfg.analyze is None, workers=[w], allow_other_workers=False,
                                       pure=False, key=f"mesoscan-warm-{self.tag}-{i}")
                    for i, w in enumerate(self.client.nthreads())]
            versions = set(self.client.gather(warm))
            if versions - {PIPELINE_VERSION}:
                raise RescoreError(f"workers run pipeline {sorted(versions)}, this client {PIPELINE_VERSION}")
        self.skip = None
        if self.done.digests and not self.store:
            [self.skip] = self.client.scatter([self.done.digest_set()], broadcast=True)
        total = self.source.count() if cfg.count else None
        batch_size = cfg.batch_size
        if total:                                   # small runs: enough batches for every worker
            batch_size = max(1, min(batch_size, math.ceil(total / (4 * nthreads))))
        self.progress = _Progress(total, cfg.progress)
        t0 = time.perf_counter()
        batch: list[Item] = []
        batch_bytes = 0
        try:
            for item in self.source.items():
                verdict = self._client_filter(item)
                if verdict == "skipped":
                    s.skipped += 1
                    self.progress.update(1, s)
                    continue
                if verdict == "duplicate":
                    s.duplicates += 1
                    self.progress.update(1, s)
                    continue
                if self.store and self._existing_store_row(item):
                    self.progress.update(1, s)
                    continue
                item = self.source.load(item)
                if item.problem is not None:
                    status, reason, message = item.problem
                    self._accept(problem_row(item.path, item.sha256, status, reason, message, PIPELINE_VERSION),
                                 None, item)
                    self.progress.update(1, s)
                    continue
                batch.append(item)
                batch_bytes += item.nbytes
                if len(batch) >= batch_size or batch_bytes >= cfg.batch_bytes:
                    self._wait_for_room(window, batch_bytes)
                    self._submit(batch)
                    batch, batch_bytes = [], 0
                while self.ac.has_ready():          # write what is done while enumerating
                    self._handle(next(self.ac))
            if batch:
                self._wait_for_room(window, batch_bytes)
                self._submit(batch)
            self._wait_for_room(1)
            # Photos whose batch lost its worker: each alone on the cluster, so the one that
            # kills workers is told apart from its batch-mates and from bystanders.
            self.isolating = True
            while self.suspects:
                self._submit([self.suspects.pop(0)])
                self._wait_for_room(1)
        except KeyboardInterrupt:
            s.interrupted = True
            raise
        finally:
            for fut in list(self.pending) + list(self.scattered.values()):
                fut.cancel()
            self.writer.close()                     # complete rows are kept, even on Ctrl-C
            self.progress.close()
            self.source.close()
            s.elapsed_s = time.perf_counter() - t0
            s.parts_written = self.writer.parts_written
            s.rows_written = self.writer.rows_written
        return s


def rescore(source: Source, out: str | os.PathLike, client, config: RescoreConfig | None = None) -> Summary:
    """Score every photo of ``source`` into the Parquet dataset ``out`` on the Dask ``client``."""
    return _Run(source, str(out), client, config or RescoreConfig()).run()
