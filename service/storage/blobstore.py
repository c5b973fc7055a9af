"""Content-addressed blob storage for photo bytes.

A blob's key is the lowercase hex SHA-256 of its bytes. :class:`BlobStore` is the interface the
repository uses; :class:`LocalBlobStore` keeps blobs in a folder and an object store (S3 and the
like) can implement the same five methods.

Durability of :meth:`LocalBlobStore.put`: the bytes go to a temporary file in the blob's final
directory, the file is fsynced, renamed over the final name (atomic on POSIX), and the directory
is fsynced, so once ``put`` returns the blob survives a crash, and a crash before that leaves at
most a temporary file (``.tmp-*``, cleaned by ``mesoscan fsck``), never a truncated blob.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
TEMP_PREFIX = ".tmp-"


class BlobNotFound(KeyError):
    """No blob with this key."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed blob key (64 lowercase hex digits), else raise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"not a blob key (64 lowercase hex digits): {key!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its key (SHA-256 hex). Idempotent."""

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`BlobNotFound` if there are none."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the blob; True if it existed. Durable when it returns."""

    def iter_keys(self) -> Iterator[str]:
        """Every stored key, in no particular order."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """Blobs as files under ``root``, fanned out as ``ab/cd/abcd...`` (65536 leaf folders keep
    directories small at millions of photos)."""

    def __init__(self, root: str | os.PathLike, *, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def _make_dirs(self, directory: Path) -> None:
        """Create the fan-out folders, fsyncing each parent whose entry list changed."""
        missing = []
        d = directory
        while not d.exists() and d != self.root:
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            if self.fsync:
                _fsync_dir(d.parent)

    def put(self, data: bytes) -> str:
        data = bytes(data)
        key = sha256_hex(data)
        final = self.path_for(key)
        if final.is_file() and final.stat().st_size == len(data) and self.verify(key):
            os.utime(final)   # fresh mtime: the content was just (re)used
            return key
        # Missing, or damaged (then rewritten from the good bytes in hand).
        self._make_dirs(final.parent)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if self.fsync:
            _fsync_dir(final.parent)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> bool:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if self.fsync:
            _fsync_dir(path.parent)
        return True

    def iter_keys(self) -> Iterator[str]:
        for top in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not (top.is_dir() and len(top.name) == 2):
                continue
            for mid in os.scandir(top.path):
                if not (mid.is_dir() and len(mid.name) == 2):
                    continue
                for leaf in os.scandir(mid.path):
                    name = leaf.name
                    if _KEY_RE.match(name) and name[:2] == top.name and name[2:4] == mid.name and leaf.is_file():
                        yield name

    # Not part of the BlobStore protocol: housekeeping that fsck uses when available.

    def stale_temp_files(self, older_than_s: float = 3600.0) -> list[Path]:
        """Temporary files left by interrupted puts, older than ``older_than_s`` seconds (younger
        ones may belong to a put in progress)."""
        cutoff = time.time() - older_than_s
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    p = Path(dirpath) / name
                    try:
                        if p.stat().st_mtime <= cutoff:
                            out.append(p)
                    except FileNotFoundError:
                        pass
        return sorted(out)

    def verify(self, key: str) -> bool:
        """True if the bytes under ``key`` still hash to ``key``."""
        h = hashlib.sha256()
        with open(self.path_for(key), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest() == key
