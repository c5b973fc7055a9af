"""The worker side of a re-scoring run: a batch of :class:`~service.batch.sources.Item` s -> rows.

Each worker process creates ONE :class:`pipelines.analysis.Analyzer` (it loads the ONNX face
model) the first time a batch reaches it, and reuses it for every later batch: a module-level,
per-thread cache (the Analyzer is used by one thread at a time; clusters run
``threads_per_worker=1`` so a process is one core). OpenCV and onnxruntime are held to one
thread, so N worker processes use N cores and do not oversubscribe them.

What a photo becomes:

* scored -> :func:`~service.batch.flatten.scored_row` (and, for the store, the document)
* :class:`ImageRejected` (bad file, quality gate) -> ``rejected`` with its code
* any other :class:`MesoscanError` -> ``failed`` with its code
* any other exception -> ``failed`` / ``internal_error`` (the run goes on)
* :class:`ModelUnavailable` is raised: no photo can be scored on this worker, the run stops.
"""
from __future__ import annotations

import hashlib
import os
import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable

from pipelines import PIPELINE_VERSION
from pipelines.errors import ImageRejected, MesoscanError, ModelUnavailable
from service.batch.flatten import STATUS_FAILED, STATUS_REJECTED, problem_row, scored_row
from service.batch.sources import MAX_BYTES, Item
from service.malloc import keep_freed_memory

STATUS_SKIPPED = "skipped"        # not a dataset row: the worker found the sha256 already done
Analyze = Callable[[bytes], dict]  # bytes -> result document; raises MesoscanError

_local = threading.local()
_process_ready = False


class DigestSet:
    """A set of sha256 hex digests held as 32-byte keys (half the memory of hex strings),
    shipped once to every worker (``Client.scatter(..., broadcast=True)``)."""

    def __init__(self, hex_digests: Iterable[str] = ()):
        self._keys = frozenset(bytes.fromhex(h) for h in hex_digests)

    def __contains__(self, hex_digest: str) -> bool:
        try:
            return bytes.fromhex(hex_digest) in self._keys
        except (TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self._keys)


def _prepare_process() -> None:
    """One thread per worker for OpenCV (and BLAS/OpenMP, when not already set); malloc tuned
    for image-sized arrays."""
    global _process_ready
    if _process_ready:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import cv2

    cv2.setNumThreads(1)
    keep_freed_memory()
    _process_ready = True


def default_analyze() -> Analyze:
    """This thread's Analyzer (created on first use: loads the face model, one onnxruntime
    thread per network), as a bytes -> document function."""
    fn = getattr(_local, "analyze", None)
    if fn is None:
        _prepare_process()
        from pipelines.analysis import Analyzer
        from pipelines.face_detection import FaceDetector

        analyzer = Analyzer(detector=FaceDetector(threads=1))
        _local.analyzer = analyzer
        fn = _local.analyze = lambda data: analyzer.analyze(data).document
    return fn


def _read(url: str) -> bytes:
    if "://" in url:
        import fsspec

        with fsspec.open(url, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    else:
        with open(url, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    return data


def analyze_one(analyze: Analyze, path: str, sha: str, data: bytes) -> tuple[dict, dict | None]:
    """(row, document or None) for one photo's bytes; never raises for a bad photo."""
    try:
        document = analyze(data)
    except ImageRejected as exc:
        return problem_row(path, sha, STATUS_REJECTED, exc.code, exc.message, PIPELINE_VERSION, exc.details), None
    except ModelUnavailable:
        raise
    except MesoscanError as exc:
        return problem_row(path, sha, STATUS_FAILED, exc.code, exc.message, PIPELINE_VERSION), None
    except MemoryError:
        return problem_row(path, sha, STATUS_FAILED, "out_of_memory", "the worker ran out of memory on this photo",
                           PIPELINE_VERSION), None
    except Exception as exc:  # noqa: BLE001 - one photo's bug must not end the run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"{type(exc).__name__}: {exc} (at {os.path.basename(where.filename)}:{where.lineno})"
        return problem_row(path, sha, STATUS_FAILED, "internal_error", msg[:1000], PIPELINE_VERSION), None
    return scored_row(path, sha, document), document


def process_batch(items: list[Item], skip: DigestSet | None = None, analyze: Analyze | None = None,
                  keep_documents: bool = False) -> dict[str, Any]:
    """Score a batch. Returns ``{"rows": [...], "documents": [...] | None, "worker": pid/host,
    "maxrss_mb": peak RSS of this process, "busy_s": time spent}``. A row with status
    ``skipped`` means the worker hashed a file the dataset already holds (resume)."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    _prepare_process()
    fn = analyze if analyze is not None else default_analyze()
    rows: list[dict] = []
    documents: list[dict | None] | None = [] if keep_documents else None
    for item in items:
        doc = None
        data = item.data
        sha = item.sha256
        if data is None:
            try:
                data = _read(item.url)
            except OSError as exc:
                rows.append(problem_row(item.path, None, STATUS_FAILED, "unreadable_file",
                                        f"cannot read: {exc.strerror or exc}", PIPELINE_VERSION))
                if documents is not None:
                    documents.append(None)
                continue
            if len(data) > MAX_BYTES:           # not read whole, so not hashed: done by path
                rows.append(problem_row(item.path, None, STATUS_REJECTED, "file_too_large",
                                        f"the file is over {MAX_BYTES / 1e6:.0f} MB", PIPELINE_VERSION))
                if documents is not None:
                    documents.append(None)
                continue
            actual = hashlib.sha256(data).hexdigest()
            if sha is not None and actual != sha:
                row = problem_row(item.path, actual, STATUS_FAILED, "checksum_mismatch",
                                  f"stored bytes hash to {actual}, not to their key {sha}", PIPELINE_VERSION)
            elif skip is not None and actual in skip:
                row = {"path": item.path, "sha256": actual, "status": STATUS_SKIPPED}
            else:
                row, doc = analyze_one(fn, item.path, actual, data)
            sha = actual
        else:
            row, doc = analyze_one(fn, item.path, sha, data)
        data = None
        rows.append(row)
        if documents is not None:
            documents.append(doc)
    return {
        "rows": rows,
        "documents": documents,
        "worker": f"{os.uname().nodename}:{os.getpid()}",
        "maxrss_mb": _maxrss_mb(),
        "busy_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,      # this process's CPU time (all its threads)
    }


def _maxrss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
