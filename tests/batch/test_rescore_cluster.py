"""Issue 7's acceptance: the real pipeline on a 2-worker LocalCluster (processes, one thread
each) over a generated archive of 200+ photos with bad files mixed in; a run killed with SIGKILL
and resumed ends with the same rows as a clean run; ``store:`` re-scoring keeps the old rows."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from batch.archive import EXPECTED, UNSAFE_NAMES, make_photos, write_zip
from pipelines import PIPELINE_VERSION
from service.batch.runner import RescoreConfig, local_cluster, rescore
from service.batch.sources import StoreSource, ZipSource
from service.batch.writer import part_files, read_dataset

ROOT = Path(__file__).resolve().parents[2]
PART_ROWS = 20


@pytest.fixture(scope="module")
def photos():
    return make_photos()


@pytest.fixture(scope="module")
def archive(photos, tmp_path_factory):
    return write_zip(tmp_path_factory.mktemp("archive") / "clinic.zip", photos)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def clean(archive, client, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    summary = rescore(ZipSource(archive), out, client,
                      RescoreConfig(batch_size=4, part_rows=PART_ROWS, progress=False))
    return out, summary


def _sorted_rows(out):
    return sorted(read_dataset(out).to_pylist(), key=lambda r: (r["sha256"] or "", r["path"]))


def test_archive_on_a_two_worker_cluster(photos, clean):
    out, summary = clean
    assert len(photos) >= 200
    rows = {r["path"]: r for r in read_dataset(out).to_pylist()}
    # one row per distinct content (first copy in archive order), plus the refused members
    first: dict[str, tuple[str, str, bytes]] = {}
    for kind, name, data in photos:
        first.setdefault(hashlib.sha256(data).hexdigest(), (kind, name, data))
    assert set(rows) == {name for _, name, _ in first.values()} | set(UNSAFE_NAMES)
    assert summary.duplicates == len(photos) - len(first)
    for sha, (kind, name, _) in first.items():
        row = rows[name]
        status, reasons = EXPECTED[kind]
        assert row["sha256"] == sha
        assert row["status"] == status and row["reason"] in reasons, (name, row["status"], row["reason"])
        assert row["pipeline_version"] == PIPELINE_VERSION
        if status == "scored":
            assert row["quality_status"] in ("ok", "warn")
            assert row["face_px_per_mm"] == pytest.approx(4.3, abs=0.5)
            assert row["quality.blur_effect"] is not None
    for name in UNSAFE_NAMES:
        assert (rows[name]["status"], rows[name]["reason"]) == ("rejected", "unsafe_member")
    blurred = [r for r in rows.values() if r["reason"] == "blurred"]
    assert blurred and all(r["quality.blur_effect"] > 0.5 for r in blurred)    # the gate's report kept
    assert summary.scored == sum(1 for k, _, _ in first.values() if k in ("face", "duplicate"))
    assert summary.failed == {}
    assert len(summary.worker_peak_mb) == 2                  # both workers took work
    assert all(50 < mb < 2000 for mb in summary.worker_peak_mb.values())
    assert summary.parts_written == len(part_files(out)) == -(-len(rows) // PART_ROWS)


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_killed_run_resumed_equals_a_clean_run(archive, clean, tmp_path):
    clean_out, clean_summary = clean
    out = tmp_path / "out"
    args = ["rescore", str(archive), "--out", str(out), "--workers", "2", "--batch-size", "4",
            "--part-rows", str(PART_ROWS), "--no-progress"]
    proc = _cli(args, start_new_session=True)               # its own group: client, nannies, workers
    deadline = time.monotonic() + 120
    while len(part_files(out)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15                          # nothing of the killed run survives
    while _alive_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive_in_group(proc.pid)
    killed_parts = len(part_files(out))
    assert 4 <= killed_parts < clean_summary.parts_written

    refused = _cli(args)                                     # an existing dataset needs --resume
    assert refused.wait(timeout=60) == 2 and "--resume" in refused.stderr.read()

    resumed = _cli([a for a in args if a != "--no-progress"] + ["--resume"])
    stdout, stderr = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, stderr[-3000:]
    skipped = int(next(line for line in stdout.splitlines() if line.strip().startswith("skipped")).split()[1])
    assert skipped >= killed_parts * PART_ROWS
    assert "images/s" in stdout and "no_face" in stdout and "peak memory per worker" in stdout
    assert "100%" in stderr and "img/s" in stderr                # the progress bar: count, rate, ETA

    rows, expected = _sorted_rows(out), _sorted_rows(clean_out)
    assert len(rows) == len(expected)
    assert set(rows[0]) == set(expected[0])                   # same columns
    assert rows == expected                                   # same rows, every column


def _alive_in_group(pgid):
    alive = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (OSError, psutil.Error):
            pass
    return alive


def test_store_rescoring_keeps_old_rows(photos, client, tmp_path):
    from service.storage import StorageConfig, open_storage
    from service.storage import repository as repo

    storage = open_storage(StorageConfig.for_data_dir(tmp_path / "data"))
    faces = [d for k, _, d in photos if k == "face"][:2]
    skin = next(d for k, _, d in photos if k == "skin")
    with storage.session() as s:
        clinic = repo.create_clinic(s, "Clinic")
        patient = repo.create_patient(s, clinic.id, "P-0001")
        ids = [repo.add_photo(s, storage.blobs, clinic.id, patient.id, d).photo.id for d in (*faces, skin)]
        old_doc = {"schema": "mesoscan.analysis/1", "pipeline_version": "0.0.1", "scores": {"overall": 12.0}}
        repo.add_analysis(s, clinic.id, ids[0], "0.0.1", old_doc)

    out = tmp_path / "out"
    summary = rescore(StoreSource(storage), out, client, RescoreConfig(batch_size=2, part_rows=2, progress=False))
    assert summary.stored_new == 2 and summary.scored == 2 and summary.rejected == {"no_face": 1}

    def versions(photo_id):
        with storage.session() as s:
            return {a.pipeline_version: a for a in repo.list_analyses(s, clinic.id, photo_id=photo_id)}

    first = versions(ids[0])
    assert set(first) == {"0.0.1", PIPELINE_VERSION}                 # a new row beside the old one
    assert first["0.0.1"].document == old_doc and first["0.0.1"].score_overall == 12.0
    assert set(versions(ids[1])) == {PIPELINE_VERSION}
    assert versions(ids[2]) == {}                                     # no_face: nothing stored
    rows = {r["path"]: r for r in read_dataset(out).to_pylist()}
    assert set(rows) == {f"store:c{clinic.id}/p{patient.id}/photo{i}" for i in ids}

    # again, into a new dataset: the stored analyses are reused, never replaced nor duplicated
    again = rescore(StoreSource(storage), tmp_path / "again", client, RescoreConfig(progress=False))
    assert again.stored_new == 0 and again.stored_existing == 2
    assert versions(ids[0])[PIPELINE_VERSION].id == first[PIPELINE_VERSION].id
    assert _sorted_rows(tmp_path / "again") == _sorted_rows(out)
    # resuming the first dataset: everything is done
    resumed = rescore(StoreSource(storage), out, client, RescoreConfig(resume=True, progress=False))
    assert resumed.skipped == 3 and resumed.processed == 0
    storage.close()


def test_report_and_reference_from_the_rescored_archive(clean, tmp_path, monkeypatch, capsys):
    from service.batch.report import load_reference, percentile_of
    from service.cli import main

    out, summary = clean
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(tmp_path / "data"))
    html = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(html), "--reference", "clinic-2024"]) == 0
    text = capsys.readouterr().out
    assert f"scored {summary.scored}" in text and "quality.blur_effect" in text
    assert "<svg" in html.read_text()
    ref = load_reference("clinic-2024")
    assert ref["version"] == 1 and ref["photos"] == summary.scored
    median = ref["columns"]["quality.blur_effect"]["quantiles"][50]
    assert percentile_of(ref, "quality.blur_effect", median) == pytest.approx(50, abs=2)
    assert (tmp_path / "data" / "reference" / "clinic-2024.v1.json").is_file()
