"""The runner with the fast ``analyze`` seam: statuses, resume from worker-side hashes,
duplicates, unsafe members, and a photo that kills its worker."""
from __future__ import annotations

import hashlib
import logging
import zipfile

import cloudpickle
import dask
import pytest

import batch.fakes as fakes
from batch.fakes import fake_analyze
from service.batch.runner import RescoreConfig, local_cluster, rescore
from service.batch.sources import FolderSource, ZipSource
from service.batch.writer import part_files, read_dataset

cloudpickle.register_pickle_by_value(fakes)     # worker processes need not import the tests


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with local_cluster(1, threads_per_worker=2, processes=False) as cluster, Client(cluster) as c:
        yield c


def _cfg(**kw):
    return RescoreConfig(**{"batch_size": 3, "part_rows": 5, "progress": False, "analyze": fake_analyze, **kw})


def _folder(tmp_path, n=23):
    root = tmp_path / "photos"
    files = {}
    for i in range(n):
        kind = ("FACE", "FACE", "NOFACE", "BOOM", "TEXT")[i % 5]
        rel = f"P{i % 4}/visit{i % 3}/{kind.lower()}_{i}.jpg"
        files[rel] = f"{kind} photo {i}".encode()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root, files


def _rows(out):
    rows = read_dataset(out).to_pylist()
    return sorted(rows, key=lambda r: (r["sha256"] or "", r["path"]))


def test_statuses_and_one_row_per_photo(client, tmp_path):
    root, files = _folder(tmp_path)
    summary = rescore(FolderSource(root), tmp_path / "out", client, _cfg())
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    assert set(rows) == set(files)
    for rel, data in files.items():
        r = rows[rel]
        assert r["sha256"] == hashlib.sha256(data).hexdigest()
        if data.startswith(b"FACE"):
            assert r["status"] == "scored" and r["reason"] is None
            h = hashlib.sha256(data).digest()                  # the right numbers on the right row
            assert r["regions.forehead.metrics.wrinkles.wrinkle_count"] == h[3] % 9
        elif data.startswith(b"NOFACE"):
            assert (r["status"], r["reason"]) == ("rejected", "no_face")
        elif data.startswith(b"BOOM"):
            assert (r["status"], r["reason"]) == ("failed", "internal_error")
            assert "ValueError: a bug in one photo" in r["message"]
        else:
            assert (r["status"], r["reason"]) == ("rejected", "not_an_image")
    assert summary.scored == 10 and summary.failed == {"internal_error": 4}
    assert summary.rejected == {"no_face": 5, "not_an_image": 4}
    assert summary.rows_written == 23 and summary.parts_written == 5
    assert "scored" in summary.format() and "images/s" in summary.format()


def test_resume_skips_on_the_worker_after_hashing(client, tmp_path):
    root, files = _folder(tmp_path)
    clean = tmp_path / "clean"
    rescore(FolderSource(root), clean, client, _cfg())
    out = tmp_path / "out"
    rescore(FolderSource(root), out, client, _cfg())
    parts = part_files(out)
    for p in parts[2:]:                      # as if killed after two parts
        p.unlink()
    kept = 10
    summary = rescore(FolderSource(root), out, client, _cfg(resume=True))
    # folder items carry no sha256 from the client: every skip was decided on a worker, after hashing
    assert summary.skipped == kept and summary.processed == len(files) - kept
    assert _rows(out) == _rows(clean)


def test_duplicates_scored_once_and_unsafe_members_refused(client, tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("P1/a.jpg", b"FACE a")
        zf.writestr("P1/b.jpg", b"FACE b")
        zf.writestr("P2/copy_of_a.jpg", b"FACE a")
        zf.writestr("../../etc/cron.d/x", b"FACE evil")
        zf.writestr("/abs.jpg", b"FACE evil2")
    summary = rescore(ZipSource(path), tmp_path / "out", client, _cfg())
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    assert set(rows) == {"P1/a.jpg", "P1/b.jpg", "../../etc/cron.d/x", "/abs.jpg"}   # first copy wins
    assert summary.duplicates == 1
    for name in ("../../etc/cron.d/x", "/abs.jpg"):
        assert (rows[name]["status"], rows[name]["reason"], rows[name]["sha256"]) == ("rejected", "unsafe_member", None)
    # resuming a finished run does nothing (the copy's sha256 is done too; refused members are
    # done by path)
    again = rescore(ZipSource(path), tmp_path / "out", client, _cfg(resume=True))
    assert again.processed == 0 and again.skipped == 5 and again.rows_written == 0


def test_a_photo_that_kills_its_worker_fails_alone(tmp_path):
    from distributed import Client

    root = tmp_path / "photos"
    root.mkdir()
    for name, data in {"a.jpg": b"FACE a", "b.jpg": b"DIE now", "c.jpg": b"FACE c", "d.jpg": b"NOFACE d"}.items():
        (root / name).write_bytes(data)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            local_cluster(1, silence_logs=logging.CRITICAL) as cluster, Client(cluster) as c:
        summary = rescore(FolderSource(root), tmp_path / "out", c, _cfg(batch_size=4, count=False))
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    assert (rows["b.jpg"]["status"], rows["b.jpg"]["reason"]) == ("failed", "worker_died")
    assert rows["a.jpg"]["status"] == rows["c.jpg"]["status"] == "scored"
    assert rows["d.jpg"]["reason"] == "no_face"
    assert summary.failed == {"worker_died": 1}


def test_fsspec_folder_read_by_the_workers(client, tmp_path):
    """An object-store style source: listed through fsspec by the client, read by the workers
    (here the in-memory filesystem, shared because the test cluster runs in this process)."""
    import fsspec

    from service.batch.sources import open_source

    fs = fsspec.filesystem("memory")
    files = {"P1/v1/a.jpg": b"FACE a", "P1/v2/b.jpg": b"NOFACE b", "P2/.hidden.jpg": b"FACE h", "P2/c.jpg": b"FACE c"}
    for rel, data in files.items():
        fs.pipe(f"/bucket-{tmp_path.name}/{rel}", data)
    src = open_source(f"memory://bucket-{tmp_path.name}")
    assert src.kind == "folder" and src.count() == 3
    summary = rescore(src, tmp_path / "out", client, _cfg())
    rows = {r["path"]: r for r in _rows(tmp_path / "out")}
    assert set(rows) == {"P1/v1/a.jpg", "P1/v2/b.jpg", "P2/c.jpg"}
    assert rows["P2/c.jpg"]["sha256"] == hashlib.sha256(b"FACE c").hexdigest()
    assert summary.scored == 2 and summary.rejected == {"no_face": 1}


def test_in_flight_work_is_bounded(client, tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(60):
            zf.writestr(f"P{i % 3}/{i}.jpg", b"FACE %d " % i + bytes(10_000))
    cfg = _cfg(batch_size=2, window=3, max_inflight_bytes=45_000, part_rows=7)
    summary = rescore(ZipSource(path), tmp_path / "out", client, cfg)
    assert summary.scored == 60 and summary.rows_written == 60
    assert summary.peak_batches_in_flight <= 3
    assert summary.peak_bytes_in_flight <= 45_000
