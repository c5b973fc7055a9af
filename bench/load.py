"""Bounded load test of the HTTP service on loopback.

    python bench/load.py [--uploads 96] [--clients 16] [--read-rate 20] [--gets 3000]

Starts gunicorn on 127.0.0.1 (a free port, a temporary data dir, a fresh clinic and API token).

0. Warm-up (not timed): one round of 16 concurrent uploads.
1. Uploads: 16 concurrent clients upload distinct 12 MP JPEGs while 4 readers issue GET
   requests (patient list, analysis document) at a steady ``--read-rate`` in all (the clinic's
   tablets and browsers reading while photos are analysed).
2. GET-heavy: 16 clients issue ``--gets`` GET requests back to back.

Prints upload throughput against cores x the single-core analysis rate (target >= 80 %), the
server's CPU per upload, errors (target 0), GET latency p50/p95/p99 while uploads run (target
p99 < 50 ms), and the GET-heavy throughput and latency. Every loop is bounded in count and
time; only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import twelve_mp_jpeg  # noqa: E402

DEADLINE_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variant(jpeg: bytes, i: int) -> bytes:
    """Distinct bytes (so the service does not return a stored analysis): an APP comment."""
    marker = f"mesoscan-load-{i}".encode()
    seg = b"\xff\xfe" + (len(marker) + 2).to_bytes(2, "big") + marker
    return jpeg[:2] + seg + jpeg[2:]


class Client:
    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        headers = {"Authorization": f"Bearer {self.token}"}
        if ctype:
            headers["Content-Type"] = ctype
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data, (time.perf_counter() - t0) * 1000.0

    def upload(self, jpeg: bytes, patient: str):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"patient\"\r\n\r\n{patient}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/api/v1/analyses", body, f"multipart/form-data; boundary={boundary}")


def single_core_rate(jpeg: bytes, n: int = 5) -> float:
    """Analyses per second of one process on one core, measured here (the reference)."""
    code = ("import sys,time; sys.path.insert(0, %r)\n"
            "from bench.common import single_core; single_core()\n"
            "from pipelines.analysis import Analyzer\n"
            "from pipelines.face_detection import FaceDetector\n"
            "a = Analyzer(detector=FaceDetector(threads=1)); d = open(%r, 'rb').read(); a.analyze(d)\n"
            "t = time.perf_counter()\n"
            "for _ in range(%d): a.analyze(d)\n"
            "print(%d / (time.perf_counter() - t))\n")
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(jpeg)
        f.flush()
        out = subprocess.run([sys.executable, "-c", code % (str(ROOT), f.name, n, n)], capture_output=True,
                             text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return float(out.stdout.strip())


def server_cpu_seconds(master_pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the gunicorn master and its live workers so far."""
    import psutil

    master = psutil.Process(master_pid)
    user = system = 0.0
    for proc in [master, *master.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            user, system = user + t.user, system + t.system
        except psutil.NoSuchProcess:
            pass
    return user, system


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=96)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--read-rate", type=float, default=20.0, help="GET/s in all while uploads run")
    ap.add_argument("--gets", type=int, default=3000, help="requests of the GET-heavy phase")
    ap.add_argument("--get-clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", type=int, default=None,
                    help="gthread threads per worker (default: service/gunicorn.conf.py's)")
    args = ap.parse_args()

    jpeg = twelve_mp_jpeg()
    # the reference is measured before and after the load and averaged: on a shared machine a
    # single-core rate drifts by 10-15 % within minutes, as much as the margin being measured
    rate_before = single_core_rate(jpeg)
    cores = os.cpu_count() or 1

    data_dir = tempfile.mkdtemp(prefix="mesoscan-load-")
    env = dict(os.environ, MESOSCAN_DATA_DIR=data_dir, OMP_NUM_THREADS="1", MESOSCAN_LOG_LEVEL="warning")
    env.pop("DATABASE_URL", None)
    from service.storage import StorageConfig, open_storage
    from service.storage import repository as repo

    os.environ["MESOSCAN_DATA_DIR"] = data_dir
    storage = open_storage(StorageConfig.from_env())
    with storage.sessions() as s:
        clinic = repo.create_clinic(s, "Load test clinic")
        _, token = repo.create_api_token(s, clinic.id, "load")
        for code in ["warmup", *(f"load-{i}" for i in range(8))]:
            repo.create_patient(s, clinic.id, code)
    storage.close()

    port = free_port()
    worker_args = ["--threads", str(args.threads)] if args.threads else []
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), *worker_args, "service.app:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = Client(port, token)
    try:
        for _ in range(120):
            try:
                if client.request("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        # Warm-up, not timed: one round of concurrent uploads, so that every worker has made
        # its first analyses (a fresh process faults its image memory in: 0.2-0.35 s of system
        # time on each of its first photos) and the readers have a document to read.
        warm: list[tuple[int, bytes, float]] = []
        warm_threads = [threading.Thread(target=lambda k=k: warm.append(client.upload(variant(jpeg, -1 - k), "warmup")))
                        for k in range(args.clients)]
        for t in warm_threads:
            t.start()
        for t in warm_threads:
            t.join()
        failed = [(st, b[:300]) for st, b, _ in warm if st not in (200, 201)]
        if failed:
            raise SystemExit(f"warm-up upload failed: {failed[0]!r}")
        analysis_id = json.loads(warm[0][1])["record"]["id"]

        errors: list[str] = []
        upload_ms: list[float] = []
        get_ms: list[float] = []
        queue = list(range(args.uploads))
        lock = threading.Lock()
        uploading = threading.Event()
        uploading.set()
        t_end = time.monotonic() + DEADLINE_S

        def uploader():
            while time.monotonic() < t_end:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                st, b, ms = client.upload(variant(jpeg, i), f"load-{i % 8}")
                with lock:
                    (upload_ms.append(ms) if st in (200, 201) else errors.append(f"upload {st} {b[:120]!r}"))

        paths = ["/api/v1/patients?limit=20", f"/api/v1/analyses/{analysis_id}"]
        period = args.readers / max(args.read_rate, 1e-3)

        def reader(offset: float):
            # a steady rate (open loop): a slow answer does not thin out the requests
            k, next_at = 0, time.monotonic() + offset
            while uploading.is_set() and time.monotonic() < t_end and k < 20000:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += period
                st, b, ms = client.request("GET", paths[k % 2])
                k += 1
                with lock:
                    (get_ms.append(ms) if st == 200 else errors.append(f"get {st}"))

        readers = [threading.Thread(target=reader, args=(i * period / args.readers,)) for i in range(args.readers)]
        uploaders = [threading.Thread(target=uploader) for _ in range(args.clients)]
        cpu0, own0 = server_cpu_seconds(server.pid), sum(os.times()[:2])
        t0 = time.perf_counter()
        for t in readers + uploaders:
            t.start()
        for t in uploaders:
            t.join()
        elapsed = time.perf_counter() - t0
        server_user, server_sys = (b - a for a, b in zip(cpu0, server_cpu_seconds(server.pid)))
        server_cpu = server_user + server_sys
        client_cpu = sum(os.times()[:2]) - own0
        uploading.clear()
        for t in readers:
            t.join()

        heavy_ms: list[float] = []
        remaining = iter(range(args.gets))

        def heavy_reader():
            for k in remaining:          # shared iterator: --gets requests in all
                st, b, ms = client.request("GET", paths[k % 2])
                with lock:
                    (heavy_ms.append(ms) if st == 200 else errors.append(f"get {st}"))
                if time.monotonic() > t_end:
                    return

        heavy = [threading.Thread(target=heavy_reader) for _ in range(args.get_clients)]
        t1 = time.perf_counter()
        for t in heavy:
            t.start()
        for t in heavy:
            t.join()
        heavy_s = time.perf_counter() - t1
    finally:
        server.terminate()
        server.wait(timeout=30)

    rate_after = single_core_rate(jpeg)
    rate1 = (rate_before + rate_after) / 2.0
    throughput = len(upload_ms) / elapsed
    target = 0.8 * cores * rate1
    print(f"server: gunicorn, {args.workers} workers x {args.threads or 'default'} threads on {cores} cores; "
          f"{args.clients} upload clients, {args.readers} GET readers at {args.read_rate:g}/s in all")
    print(f"single-core analysis rate (12 MP)   {rate1:6.2f} photos/s  (reference: mean of {rate_before:.2f} "
          f"before and {rate_after:.2f} after the load)")
    print(f"upload throughput                   {throughput:6.2f} photos/s  = {throughput / (cores * rate1):.0%} of "
          f"cores x single-core rate (target >= 80 %: {target:.2f}/s)")
    print(f"upload latency p50/p95/p99          {pct(upload_ms, 50):6.0f} / {pct(upload_ms, 95):.0f} / "
          f"{pct(upload_ms, 99):.0f} ms  ({len(upload_ms)} uploads in {elapsed:.1f} s)")
    print(f"CPU while uploading                 server {server_cpu / elapsed:4.2f} cores "
          f"({server_cpu / max(1, len(upload_ms)):.2f} s per upload vs {1 / rate1:.2f} s single-core analysis), "
          f"{server_sys / max(server_cpu, 1e-9):.0%} of it system time; load generator {client_cpu / elapsed:4.2f} cores")
    print(f"GET while uploading p50/p95/p99     {pct(get_ms, 50):6.1f} / {pct(get_ms, 95):.1f} / "
          f"{pct(get_ms, 99):.1f} ms  ({len(get_ms)} requests; target p99 < 50 ms)")
    print(f"GET-heavy ({args.get_clients} clients)        {len(heavy_ms) / heavy_s:6.0f} requests/s, "
          f"p50/p95/p99 {pct(heavy_ms, 50):.1f} / {pct(heavy_ms, 95):.1f} / {pct(heavy_ms, 99):.1f} ms "
          f"({len(heavy_ms)} requests)")
    print(f"errors                              {len(errors)}" + (f"  e.g. {errors[0]}" if errors else ""))


if __name__ == "__main__":
    main()
