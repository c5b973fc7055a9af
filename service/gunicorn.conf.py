"""gunicorn settings for mesoscan:

    gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'

Environment: ``MESOSCAN_BIND`` (default ``0.0.0.0:8000``), ``WEB_CONCURRENCY`` (workers,
default: one per CPU core), ``MESOSCAN_TIMEOUT`` (seconds, default 120), plus the app's own
variables (README.md ("The HTTP service")).

Why these values:

* sync workers, one per core: an analysis is CPU-bound (1-3 s per photo), so more workers than
  cores only queue inside the kernel; BLAS/OpenMP pools are limited to one thread per worker
  (below) so workers do not fight over the cores.
* ``timeout`` 120 s: a worker silent for that long (a request stuck on a huge photo, a hung
  database) is killed and replaced; the client gets a 502 from the proxy. This is the request
  timeout: nothing in the app interrupts an analysis mid-way. Put a buffering reverse proxy
  (nginx) in front so slow uploads do not hold a worker.
* ``max_requests`` with jitter recycles workers now and then, bounding any slow memory growth.
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
import tempfile

bind = os.environ.get("MESOSCAN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() or 1)
worker_class = "sync"
threads = 1
timeout = int(os.environ.get("MESOSCAN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
max_requests = 1000
max_requests_jitter = 100
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

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
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
