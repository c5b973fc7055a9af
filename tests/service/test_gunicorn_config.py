"""The production server config (service/gunicorn.conf.py) starts two workers that serve, makes
one analysis-slot directory for all of them, removes it on exit, and logs each request once."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_gunicorn_config_serves_and_removes_its_slot_directory(tmp_path):
    port = _free_port()
    server_tmp = tmp_path / "tmp"
    server_tmp.mkdir()
    env = dict(os.environ, MESOSCAN_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(server_tmp),
               WEB_CONCURRENCY="2", MESOSCAN_THREADS="4", MESOSCAN_LOG_LEVEL="info")
    for var in ("DATABASE_URL", "MESOSCAN_ANALYSIS_SLOTS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(var, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "service.app:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        status, deadline = None, time.monotonic() + 120
        while status != 200 and time.monotonic() < deadline:
            assert server.poll() is None, "gunicorn exited early"
            try:
                status = _get(port, "/readyz")
            except OSError:
                time.sleep(0.5)
        assert status == 200
        assert _get(port, "/healthz", {"X-Request-ID": "probe-gunicorn-log-1"}) == 200
        slot_dirs = list(server_tmp.glob("mesoscan-slots-*"))
        assert len(slot_dirs) == 1          # one directory, shared by both workers
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-2000:]
    assert not slot_dirs[0].exists()       # on_exit removed it
    access = [line for line in err.splitlines() if "probe-gunicorn-log-1" in line]
    assert len(access) == 1, access        # one JSON line: not once per root handler
    assert '"path": "/healthz"' in access[0] or '"path":"/healthz"' in access[0]
