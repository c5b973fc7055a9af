import argparse
import os
import threading
import time

import pytest
import sqlalchemy as sa

from service.commands import fsck as fsck_command
from service.storage import models as m
from service.storage import repository as repo
from service.storage.blobstore import TEMP_PREFIX
from service.storage.metadata import strip_metadata

from . import images


class SimulatedCrash(RuntimeError):
    pass


class CrashAfterPut:
    """A blob store whose put() stores the blob durably and then 'crashes'."""

    def __init__(self, inner):
        self.inner = inner

    def put(self, data):
        self.inner.put(data)
        raise SimulatedCrash("power cut after the blob was written")

    def __getattr__(self, name):
        return getattr(self.inner, name)


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def _setup(session):
    c = repo.create_clinic(session, "A")
    return c, repo.create_patient(session, c.id, "P-1")


def test_crash_between_blob_and_row_leaves_an_orphan_that_fsck_removes(db, session):
    c, p = _setup(session)
    data = images.jpeg_with_metadata(1)
    with pytest.raises(SimulatedCrash):
        repo.add_photo(session, CrashAfterPut(db.blobs), c.id, p.id, data)
    sha = repo.sha256_hex(strip_metadata(data).data)
    assert db.blobs.exists(sha)                              # the blob was written first...
    assert count(session, m.Photo) == 0 and count(session, m.Blob) == 0   # ...no row without it

    report = repo.fsck(session, db.blobs)
    assert report.orphan_blobs == [sha] and not report.missing_blobs and not report.clean
    assert db.blobs.exists(sha)                              # reporting does not delete

    report = repo.fsck(session, db.blobs, remove=True)
    assert report.removed_blobs == [sha] and report.clean
    assert not db.blobs.exists(sha)
    assert repo.fsck(session, db.blobs).clean
    photo, created = repo.add_photo(session, db.blobs, c.id, p.id, data)   # the retry works
    assert created and db.blobs.exists(photo.sha256)


def test_failed_commit_leaves_an_orphan_never_a_row(db, session, monkeypatch):
    c, p = _setup(session)
    real_commit = type(session).commit

    def failing_commit(self):
        if self.new:                                          # the photo row is pending
            raise SimulatedCrash("connection lost during commit")
        return real_commit(self)

    monkeypatch.setattr(type(session), "commit", failing_commit)
    with pytest.raises(SimulatedCrash):
        repo.add_photo(session, db.blobs, c.id, p.id, images.plain_jpeg(2))
    monkeypatch.undo()
    assert count(session, m.Photo) == 0
    report = repo.fsck(session, db.blobs, remove=True)
    assert len(report.removed_blobs) == 1 and report.clean and list(db.blobs.iter_keys()) == []


def test_failed_blob_write_leaves_nothing(db, session):
    c, p = _setup(session)

    class FullDisk:
        def put(self, data):
            raise OSError("no space left on device")

    with pytest.raises(OSError):
        repo.add_photo(session, FullDisk(), c.id, p.id, images.plain_jpeg(3))
    assert count(session, m.Photo) == 0 and count(session, m.Blob) == 0
    assert list(db.blobs.iter_keys()) == []


def test_missing_blob_is_reported(db, session):
    c, p = _setup(session)
    photo, _ = repo.add_photo(session, db.blobs, c.id, p.id, images.plain_jpeg(4))
    db.blobs.path_for(photo.sha256).unlink()
    report = repo.fsck(session, db.blobs, remove=True)
    assert [(x.photo_id, x.clinic_id, x.sha256) for x in report.missing_blobs] == [(photo.id, c.id, photo.sha256)]
    assert not report.clean
    with pytest.raises(repo.BlobMissing):
        repo.read_photo(session, db.blobs, c.id, photo.id)


def test_verify_finds_corrupt_blobs_and_stale_temp_files_are_removed(db, session):
    c, p = _setup(session)
    photo, _ = repo.add_photo(session, db.blobs, c.id, p.id, images.plain_jpeg(5))
    path = db.blobs.path_for(photo.sha256)
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    tmp = path.parent / (TEMP_PREFIX + "interrupted")
    tmp.write_bytes(b"half a photo")
    assert repo.fsck(session, db.blobs, remove=True).stale_temp_files == []   # young: may be in flight
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    report = repo.fsck(session, db.blobs, remove=True, verify=True)
    assert report.corrupt_blobs == [photo.sha256] and not report.clean
    assert report.removed_temp_files == [str(tmp)] and not tmp.exists()


def test_fsck_does_not_delete_a_blob_whose_upload_is_committing(db, session):
    """An upload that has written its blob but not committed yet holds the blob lock; fsck sees
    an orphan candidate, waits for the lock, re-counts, and keeps the blob."""
    c, p = _setup(session)
    written, go = threading.Event(), threading.Event()

    class SlowCommit:
        def __init__(self, inner):
            self.inner = inner

        def put(self, data):
            key = self.inner.put(data)
            written.set()
            assert go.wait(20)
            return key

    result, errors = {}, []

    def upload():
        with db.session() as s:
            try:
                result["photo"] = repo.add_photo(s, SlowCommit(db.blobs), c.id, p.id, images.plain_jpeg(6)).photo
            except Exception as exc:   # pragma: no cover - reported below
                errors.append(exc)

    def check():
        with db.session() as s:
            try:
                result["fsck"] = repo.fsck(s, db.blobs, remove=True)
            except Exception as exc:   # pragma: no cover
                errors.append(exc)

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert written.wait(20)
    checker = threading.Thread(target=check)
    checker.start()
    time.sleep(0.5)
    assert checker.is_alive()            # blocked on the blob lock held by the upload
    go.set()
    uploader.join(20)
    checker.join(20)
    assert not errors
    photo = result["photo"]
    assert result["fsck"].orphan_blobs == [photo.sha256]     # it looked like an orphan...
    assert result["fsck"].removed_blobs == []                # ...but was not deleted
    assert db.blobs.exists(photo.sha256)
    assert repo.fsck(session, db.blobs).clean


def _run_cli(argv):
    parser = argparse.ArgumentParser(prog="mesoscan")
    fsck_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli(db, session, monkeypatch, capsys):
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(db.data_dir))
    monkeypatch.setenv("DATABASE_URL", db.url)
    c, p = _setup(session)
    with pytest.raises(SimulatedCrash):
        repo.add_photo(session, CrashAfterPut(db.blobs), c.id, p.id, images.plain_jpeg(7))
    orphan = next(db.blobs.iter_keys())

    assert _run_cli(["fsck"]) == 1
    out = capsys.readouterr().out
    assert f"orphan: blob {orphan}" in out and "--remove" in out
    assert _run_cli(["fsck", "--remove"]) == 0
    assert f"removed: blob {orphan}" in capsys.readouterr().out
    assert _run_cli(["fsck", "--json"]) == 0
    assert '"clean": true' in capsys.readouterr().out
    assert list(db.blobs.iter_keys()) == []
