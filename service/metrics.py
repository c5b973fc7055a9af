"""Prometheus metrics, served at ``/metrics``.

* ``mesoscan_http_request_duration_seconds{endpoint,method,status}``: latency histogram;
  ``endpoint`` is the Flask endpoint name (bounded), not the path (ids would explode it);
* ``mesoscan_analyses_total{outcome}``: photos analysed (``created``) or answered from the
  store (``reused``);
* ``mesoscan_image_rejections_total{code}``: uploads refused, by the pipeline's reason code;
* ``mesoscan_analysis_duration_seconds``: time in the pipeline per analysed photo.

Under gunicorn each worker is a process: ``service/gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory) before the workers start, and ``/metrics``
then aggregates every worker's values with prometheus_client's multiprocess collector.
"""
from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, REGISTRY, generate_latest,
)

REQUEST_LATENCY = Histogram(
    "mesoscan_http_request_duration_seconds", "HTTP request latency by endpoint and status",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
ANALYSES = Counter("mesoscan_analyses_total", "Photos analysed (created) or answered from the store (reused)",
                   ["outcome"])
REJECTIONS = Counter("mesoscan_image_rejections_total", "Uploaded photos refused, by reason code", ["code"])
ANALYSIS_SECONDS = Histogram("mesoscan_analysis_duration_seconds", "Time in the analysis pipeline per photo",
                             buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))

bp = Blueprint("metrics", __name__)


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def _observe(resp):
        if request.endpoint != "metrics.metrics":
            duration = g.get("duration_s")
            if duration is None:
                import time

                started = g.get("started")
                duration = time.perf_counter() - started if started else 0.0
            REQUEST_LATENCY.labels(request.endpoint or "unmatched", request.method, str(resp.status_code)).observe(duration)
        return resp
