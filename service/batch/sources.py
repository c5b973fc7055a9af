"""What ``mesoscan rescore`` scores: a folder tree, a zip or tar archive, or the service's store.

Every source yields :class:`Item` s one at a time (nothing is listed whole in memory except
a zip's central directory, which :mod:`zipfile` holds): the runner batches them and keeps a
bounded number of batches in flight.

Who reads the bytes, and so who hashes them:

* **folder** (and ``scheme://`` URLs through fsspec): by default the client passes *paths*
  and the worker reads and hashes (``Item.url``); the workers must see the same path (one
  machine, or a shared filesystem / object store). With ``transfer="bytes"`` the client reads.
* **zip / tar**: the client reads members in archive order, streaming (a tar is read with
  ``r|*``, never seeked; ``TarFile.members`` is emptied as it goes) and hashes them; bytes go to
  the workers in batches.
* **store** (``store:`` or ``store:CLINIC_ID``): photo rows are paged by id; the blob key is
  the sha256 of the stored bytes, known before reading. A local blob store is read by the
  workers (``paths``) or by the client (``bytes``).

Archive members are never extracted. A member whose name is absolute (``/x``, ``C:\\x``,
``\\\\server\\x``) or climbs (``..``), or which is a link or device, is refused: it becomes a
``rejected`` row with reason ``unsafe_member`` and its content is never read.
"""
from __future__ import annotations

import hashlib
import os
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pipelines.decode import DEFAULT_LIMITS

MAX_BYTES = DEFAULT_LIMITS.max_bytes     # a member larger than the decoder accepts is not read

STORE_PREFIX = "store:"


@dataclass
class Item:
    """One photo to score.

    path: the row's ``path`` (relative path, member name, ``store:c<clinic>/p<patient>/photo<id>``).
    url: where a worker reads the bytes itself (local path or fsspec URL); None when ``data`` is sent.
    data: the bytes, when the client read them.
    sha256: hex digest when known before the worker (client-hashed, or the store's blob key).
    problem: (status, reason, message) when the client already refused the item: no worker needed.
    photo: (clinic_id, photo_id) for store items (analysis rows are written back).
    """

    path: str
    url: str | None = None
    data: bytes | None = None
    sha256: str | None = None
    problem: tuple[str, str, str] | None = None
    photo: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return len(self.data) if self.data is not None else 0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- safe member names ------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_name_reason(name: str) -> str | None:
    """Why an archive member name must be refused, or None when it is a plain relative name.
    Backslashes count as separators (zips made on Windows)."""
    if not name or "\x00" in name:
        return "empty name or NUL byte in the name"
    n = name.replace("\\", "/")
    if n.startswith("/") or _DRIVE.match(n):
        return "absolute path"
    if ".." in n.split("/"):
        return "parent directory reference (..)"
    return None


def _hidden(rel: str) -> bool:
    """Dot files and folders (.DS_Store, .git) and macOS resource forks are not photos."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p]
    return any(p.startswith(".") for p in parts) or (bool(parts) and parts[0] == "__MACOSX")


def _too_large(path: str, size: int) -> Item:
    return Item(path=path, problem=("rejected", "file_too_large",
                                    f"the file is {size / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB"))


def _read_bounded(f, path: str) -> Item:
    data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        return _too_large(path, len(data))
    return Item(path=path, data=data, sha256=sha256_hex(data))


# --- sources ----------------------------------------------------------------------------------


class Source:
    """Base of the archive sources; subclasses implement :meth:`items`."""

    kind = "source"
    description = ""

    def count(self) -> int | None:
        """How many items :meth:`items` will yield (a cheap pass over names), or None."""
        return None

    def items(self) -> Iterator[Item]:
        raise NotImplementedError

    def load(self, item: Item) -> Item:
        """Fill in what the item needs before it is sent (the store reads blobs lazily, after
        the resume check, so skipped photos are never read)."""
        return item

    def close(self) -> None:
        pass


class FolderSource(Source):
    """A folder tree (patient/visit folders at any depth), walked in sorted order. Hidden files
    and folders are skipped; every other regular file is an item (a note or a PDF becomes a
    ``rejected`` row: ``not_an_image``). Symbolic links to folders are not followed."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike, *, transfer: str = "paths"):
        self.root = Path(root).absolute()
        self.transfer = transfer
        self.description = str(self.root)

    def _walk(self) -> Iterator[tuple[str, str]]:
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                if not os.path.isfile(full):        # broken link, fifo, socket
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                yield rel, full

    def count(self) -> int:
        return sum(1 for _ in self._walk())

    def items(self) -> Iterator[Item]:
        for rel, full in self._walk():
            if self.transfer == "paths":
                yield Item(path=rel, url=full)
                continue
            try:
                size = os.path.getsize(full)
                if size > MAX_BYTES:
                    yield _too_large(rel, size)
                    continue
                with open(full, "rb") as f:
                    yield _read_bounded(f, rel)
            except OSError as exc:
                yield Item(path=rel, problem=("failed", "unreadable_file", f"cannot read: {exc.strerror or exc}"))


class FsspecFolderSource(Source):
    """A folder tree behind an fsspec URL (``s3://bucket/photos``, ``gcs://``, ``file://``):
    workers open ``Item.url`` through fsspec themselves, so each needs the filesystem's package
    (s3fs, gcsfs) and credentials."""

    kind = "folder"

    def __init__(self, url: str, *, transfer: str = "paths"):
        import fsspec

        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.transfer = transfer
        self.description = url

    def _walk(self) -> Iterator[tuple[str, str]]:
        for dirpath, dirnames, filenames in self.fs.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if isinstance(dirnames, list) else dirnames
            rel_dir = dirpath[len(self.root):].strip("/")
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if _hidden(rel):
                    continue
                yield rel, self.fs.unstrip_protocol(f"{dirpath.rstrip('/')}/{name}")

    def count(self) -> int:
        return sum(1 for _ in self._walk())

    def items(self) -> Iterator[Item]:
        import fsspec

        for rel, url in self._walk():
            if self.transfer == "paths":
                yield Item(path=rel, url=url)
                continue
            try:
                with fsspec.open(url, "rb") as f:
                    yield _read_bounded(f, rel)
            except OSError as exc:
                yield Item(path=rel, problem=("failed", "unreadable_file", f"cannot read: {exc}"))


class ZipSource(Source):
    kind = "zip"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.description = str(self.path)
        self._zf = zipfile.ZipFile(self.path)

    def _members(self) -> Iterator[zipfile.ZipInfo]:
        for info in self._zf.infolist():
            if info.is_dir() or (_hidden(info.filename) and not unsafe_name_reason(info.filename)):
                continue
            yield info

    def count(self) -> int:
        return sum(1 for _ in self._members())

    def items(self) -> Iterator[Item]:
        for info in self._members():
            name = info.filename
            reason = unsafe_name_reason(name)
            if reason:
                yield Item(path=name, problem=("rejected", "unsafe_member", f"archive member refused: {reason}"))
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                yield Item(path=name, problem=("rejected", "unsafe_member", "archive member refused: symbolic link"))
                continue
            if info.file_size > MAX_BYTES:
                yield _too_large(name, info.file_size)
                continue
            try:
                with self._zf.open(info) as f:
                    yield _read_bounded(f, name)
            except RuntimeError as exc:      # encrypted
                yield Item(path=name, problem=("failed", "unreadable_member", f"cannot read the member: {exc}"))
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                yield Item(path=name, problem=("failed", "corrupt_member", f"the archive member is damaged: {exc}"))

    def close(self) -> None:
        self._zf.close()


class TarSource(Source):
    """A tar archive, plain or compressed (gz, bz2, xz), read as a stream."""

    kind = "tar"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.description = str(self.path)

    def _stream(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        with open(self.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            while True:
                info = tf.next()
                if info is None:
                    break
                tf.members = []          # stream mode still appends every header: keep memory flat
                if info.isdir() or (_hidden(info.name) and not unsafe_name_reason(info.name)):
                    continue
                yield tf, info

    def count(self) -> int:
        return sum(1 for _ in self._stream())

    def items(self) -> Iterator[Item]:
        last = None
        try:
            for tf, info in self._stream():
                name = last = info.name
                reason = unsafe_name_reason(name)
                if reason:
                    yield Item(path=name, problem=("rejected", "unsafe_member", f"archive member refused: {reason}"))
                    continue
                if not info.isreg():
                    kind = "link" if (info.issym() or info.islnk()) else "device or special file"
                    yield Item(path=name, problem=("rejected", "unsafe_member", f"archive member refused: {kind}"))
                    continue
                if info.size > MAX_BYTES:
                    yield _too_large(name, info.size)
                    continue
                f = tf.extractfile(info)
                yield _read_bounded(f, name)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            # A truncated or damaged archive: what came before stands; the rest cannot be reached.
            yield Item(path=f"{last or ''}#end-of-archive", problem=(
                "failed", "corrupt_archive", f"the archive is damaged after this point; later members unreachable: {exc}"))


class StoreSource(Source):
    """The service's own photos (all clinics, or one), paged by photo id. The runner writes a
    new analysis row per scored photo beside the old ones (``add_analysis`` never replaces)."""

    kind = "store"
    PAGE = 500

    def __init__(self, storage, clinic_id: int | None = None, *, transfer: str = "paths"):
        from service.storage.blobstore import LocalBlobStore

        self.storage = storage
        self.clinic_id = clinic_id
        self.transfer = transfer if isinstance(storage.blobs, LocalBlobStore) else "bytes"
        cfg = storage.config
        self.description = f"store:{clinic_id or ''} ({cfg.database_url if cfg else storage.engine.url})"

    def _query(self):
        import sqlalchemy as sa

        from service.storage.models import Photo

        q = sa.select(Photo.id, Photo.clinic_id, Photo.patient_id, Photo.sha256)
        if self.clinic_id is not None:
            q = q.where(Photo.clinic_id == self.clinic_id)
        return q

    def count(self) -> int:
        import sqlalchemy as sa

        with self.storage.session() as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(self._query().subquery())) or 0)

    def items(self) -> Iterator[Item]:
        import sqlalchemy as sa

        from pipelines import PIPELINE_VERSION
        from service.storage.models import Analysis, Photo

        after = 0
        while True:
            with self.storage.session() as s:      # one short read per page, no long snapshot
                rows = s.execute(self._query().where(Photo.id > after).order_by(Photo.id).limit(self.PAGE)).all()
            if not rows:
                return
            with self.storage.session() as s:      # which already have this pipeline's analysis
                analysed = set(s.scalars(sa.select(Analysis.photo_id).where(
                    Analysis.photo_id.in_([r.id for r in rows]), Analysis.pipeline_version == PIPELINE_VERSION)))
            for r in rows:
                yield Item(path=store_path(r.clinic_id, r.patient_id, r.id), sha256=r.sha256,
                           photo=(r.clinic_id, r.id), extra={"analysed": r.id in analysed})
            after = rows[-1].id

    def load(self, item: Item) -> Item:
        from service.storage.blobstore import BlobNotFound

        if self.transfer == "paths":
            item.url = str(self.storage.blobs.path_for(item.sha256))
            return item
        try:
            item.data = self.storage.blobs.get(item.sha256)
        except BlobNotFound:
            item.problem = ("failed", "blob_missing", "the stored file of this photo is missing (see mesoscan fsck)")
        return item


def store_path(clinic_id: int, patient_id: int, photo_id: int) -> str:
    return f"{STORE_PREFIX}c{clinic_id}/p{patient_id}/photo{photo_id}"


def open_source(spec: str, *, transfer: str = "auto", storage_factory: Callable | None = None) -> Source:
    """The source named on the command line: ``store:[CLINIC_ID]``, a folder, a zip or tar
    file, or an fsspec URL of a folder."""
    mode = "paths" if transfer == "auto" else transfer
    if spec.startswith(STORE_PREFIX):
        rest = spec[len(STORE_PREFIX):].strip()
        clinic = int(rest) if rest else None
        if storage_factory is None:
            from service.storage import open_storage

            storage_factory = open_storage
        return StoreSource(storage_factory(), clinic, transfer=mode)
    if "://" in spec and not spec.startswith("file://"):
        return FsspecFolderSource(spec, transfer=mode)
    if spec.startswith("file://"):
        spec = spec[len("file://"):]
    p = Path(spec)
    if p.is_dir():
        return FolderSource(p, transfer=mode)
    if not p.exists():
        raise FileNotFoundError(f"no such folder or archive: {spec}")
    if zipfile.is_zipfile(p):
        return ZipSource(p)
    if tarfile.is_tarfile(p):
        return TarSource(p)
    raise ValueError(f"{spec} is neither a folder, a zip nor a tar archive")


__all__ = ["Item", "Source", "FolderSource", "FsspecFolderSource", "ZipSource", "TarSource", "StoreSource",
           "open_source", "unsafe_name_reason", "store_path"]
