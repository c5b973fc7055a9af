"""gunicorn settings for mesoscan:

    gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'

Environment: ``MESOSCAN_BIND`` (default ``0.0.0.0:8000``), ``WEB_CONCURRENCY`` (workers,
default: one per CPU core), ``MESOSCAN_TIMEOUT`` (seconds, default 120), plus the app's own
variables (README.md, section "The HTTP service").

Why these values:

* one worker process per core, each with ``MESOSCAN_THREADS`` threads (default 32, gthread):
  an analysis is CPU-bound (about half a core-second per 12 MP photo), so the whole server runs one analysis per core
  at a time (``MESOSCAN_ANALYSIS_SLOTS``; the slots are shared by every worker through lock
  files, service/slots.py, so no core idles while another worker holds the queue), and the
  other threads keep answering reads while uploads wait. Many threads are cheap (they mostly
  wait) and keep a thread free for reads however many uploads queue. BLAS/OpenMP and OpenCV
  pools are one thread per worker (below) so analyses do not fight over the cores.
* ``timeout`` 120 s: a worker whose main loop is silent that long (a hung process) is killed and
  replaced. With threaded workers it does not time out one slow request: a request's cost is
  bounded by the upload limit and the decoder's pixel limit instead (an analysis takes about 1 s
  and never hangs on a hostile file), and the client-facing request timeout belongs to the
  reverse proxy in front (nginx ``proxy_read_timeout 120s``), which also buffers slow uploads.
* ``max_requests`` (20,000, with jitter) recycles workers now and then, bounding any slow memory
  growth; at 1,000 a GET-heavy minute recycled workers in the middle of an upload burst (each
  new worker loads the face model again).
* the master migrates the database once before forking; each worker then finds it at head.
* each worker loads the face model once after the fork (no ``preload_app``: onnxruntime sessions
  must not cross a fork).
* Prometheus multiprocess mode: every worker writes its metrics to ``PROMETHEUS_MULTIPROC_DIR``
  (a fresh directory per server start), and ``/metrics`` sums them.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile

bind = os.environ.get("MESOSCAN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() or 1)
worker_class = "gthread"
threads = int(os.environ.get("MESOSCAN_THREADS", "32"))
timeout = int(os.environ.get("MESOSCAN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
preload_app = False
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
limit_request_line = 8190
limit_request_fields = 100
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = None          # the app writes one JSON access line per request (request id included)
errorlog = "-"
loglevel = os.environ.get("MESOSCAN_LOG_LEVEL", "info").lower()

# One compute thread per worker (workers already use every core).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mesoscan-metrics-")
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

# Analysis slots shared by the workers of this server (service/slots.py): a fresh directory.
os.environ["MESOSCAN_ANALYSIS_SLOTS_DIR"] = tempfile.mkdtemp(prefix="mesoscan-slots-")

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # the app's own handler (service.logs.make_handler): the app's configure_logging replaces it
    # instead of adding a second one, which printed every line twice
    "handlers": {"stderr": {"()": "service.logs.make_handler", "fmt": "json"}},
    "root": {"handlers": ["stderr"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


def on_starting(server):
    # Migrate the database and create the secret key once, in the master, before any worker
    # starts: workers migrating concurrently could race on a fresh PostgreSQL database.
    from service.config import finalize, from_env, storage_config
    from service.storage import open_storage

    open_storage(storage_config(finalize(from_env()))).close()

    # A fresh metrics directory: files of a previous run would be summed in.
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        path = os.path.join(_metrics_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # One OpenCV thread per worker too: its own pool would oversubscribe the cores that the
    # other workers' analyses are using. malloc keeps freed image arrays for the next photo
    # (service/malloc.py: without it a third of the CPU went to the kernel under load).
    import cv2

    from service.malloc import keep_freed_memory

    cv2.setNumThreads(1)
    keep_freed_memory()
    # A request thread waiting for the GIL held by an analysis gets it after 1 ms, not 5 ms:
    # a read makes a dozen such hand-offs (database, socket), so this is most of its latency
    # while uploads run.
    sys.setswitchinterval(0.001)


def on_exit(server):
    shutil.rmtree(os.environ["MESOSCAN_ANALYSIS_SLOTS_DIR"], ignore_errors=True)


def post_worker_init(worker):
    # The app, its routes, SQLAlchemy's mappers and the face model are loaded by now and live as
    # long as the worker: freeze them out of the cyclic garbage collector, which otherwise walks
    # them all on every full collection (measured with perf under GET-heavy load: 15 % of a
    # worker's CPU in the collector).
    import gc

    gc.collect()
    gc.freeze()
