import hashlib
import os
import time

import pytest

from service.storage import blobstore as bs
from service.storage.blobstore import BlobNotFound, BlobStore, LocalBlobStore


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(tmp_path / "photos")


def test_put_get_roundtrip_content_addressed_with_fanout(store, tmp_path):
    data = b"photo bytes" * 1000
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.path_for(key) == tmp_path / "photos" / key[:2] / key[2:4] / key
    assert store.path_for(key).read_bytes() == data
    assert store.get(key) == data
    assert store.exists(key)
    assert list(store.iter_keys()) == [key]
    assert isinstance(store, BlobStore)


def test_put_is_idempotent_and_leaves_no_temp_files(store):
    k1 = store.put(b"a")
    k2 = store.put(b"a")
    k3 = store.put(b"b")
    assert k1 == k2 != k3
    assert sorted(store.iter_keys()) == sorted({k1, k3})
    assert store.stale_temp_files(older_than_s=0) == []


def test_delete_and_missing(store):
    key = store.put(b"x")
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get(key)
    assert list(store.iter_keys()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "ab", "g" * 64, "0" * 63 + "/"])
def test_keys_are_validated(store, bad):
    with pytest.raises(ValueError):
        store.get(bad)
    with pytest.raises(ValueError):
        store.exists(bad)


def test_put_fsyncs_file_before_rename_and_directory_after(store, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append(("fsync", kind))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", None))
        return real_replace(src, dst)

    monkeypatch.setattr(bs.os, "fsync", fsync)
    monkeypatch.setattr(bs.os, "replace", replace)
    store.put(b"durable")
    i_rename = events.index(("rename", None))
    assert ("fsync", "file") in events[:i_rename]
    assert events[-1] == ("fsync", "dir")   # the rename is made durable before put returns


def test_failed_write_leaves_nothing(store, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(bs.os, "replace", boom)
    with pytest.raises(OSError):
        store.put(b"never stored")
    assert list(store.iter_keys()) == []
    assert store.stale_temp_files(older_than_s=0) == []


def test_damaged_blob_is_rewritten_by_put(store):
    data = b"good content"
    key = store.put(data)
    store.path_for(key).write_bytes(b"bad content!")   # same length, wrong bytes
    assert store.verify(key) is False
    assert store.put(data) == key
    assert store.get(key) == data and store.verify(key)


def test_stale_temp_files_respect_grace_period(store):
    key = store.put(b"z")
    tmp = store.path_for(key).parent / (bs.TEMP_PREFIX + "abc")
    tmp.write_bytes(b"partial")
    assert store.stale_temp_files(older_than_s=3600) == []
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    assert store.stale_temp_files(older_than_s=3600) == [tmp]
    assert list(store.iter_keys()) == [key]   # temp files are never keys
