"""Sources: safe member names, streaming reads, folder walking, damaged archives."""
from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from service.batch.sources import (
    FolderSource, TarSource, ZipSource, open_source, unsafe_name_reason,
)


@pytest.mark.parametrize("name", [
    "../x.jpg", "a/../../x.jpg", "a/b/..", "/etc/passwd", "/x.jpg", "C:\\photos\\x.jpg", "c:x.jpg",
    "..\\..\\x.jpg", "a\\..\\..\\x.jpg", "\\\\server\\share\\x.jpg", "", "a\x00b.jpg",
])
def test_unsafe_names_refused(name):
    assert unsafe_name_reason(name) is not None


@pytest.mark.parametrize("name", ["x.jpg", "P001/visit1/x.jpg", "a..b.jpg", "..hidden_but_not_parent.jpg",
                                  "P001/./x.jpg"])
def test_plain_names_accepted(name):
    assert unsafe_name_reason(name) is None


UNSAFE = ["../escape.jpg", "/abs/olute.jpg", "P1/../../climb.jpg", "..\\win.jpg", "D:\\drive.jpg"]


def _zip(path, safe: dict[str, bytes], unsafe=UNSAFE):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in safe.items():
            zf.writestr(name, data)
        for name in unsafe:
            zf.writestr(zipfile.ZipInfo(name), b"SECRET")
    return path


def test_zip_refuses_traversal_names_without_reading_them(tmp_path):
    path = _zip(tmp_path / "a.zip", {"P1/v1/a.jpg": b"FACE-a", "P1/v2/b.jpg": b"FACE-b", ".DS_Store": b"x",
                                     "__MACOSX/P1/._a.jpg": b"x"})
    src = ZipSource(path)
    names = {i.filename for i in zipfile.ZipFile(path).infolist()}
    assert set(UNSAFE) <= names          # the archive really holds the unsafe names
    items = list(src.items())
    by_path = {i.path: i for i in items}
    assert src.count() == len(items) == 2 + len(UNSAFE)     # hidden files and resource forks skipped
    for name in UNSAFE:
        item = by_path[name]
        assert item.problem[:2] == ("rejected", "unsafe_member")
        assert item.data is None and item.sha256 is None
    assert by_path["P1/v1/a.jpg"].data == b"FACE-a"
    assert by_path["P1/v1/a.jpg"].sha256 == __import__("hashlib").sha256(b"FACE-a").hexdigest()


def _tar(path, safe: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in list(safe.items()) + [(n, b"SECRET") for n in UNSAFE]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("P1/link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("P1/hard.jpg")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "P1/v1/a.jpg"
        tf.addfile(hard)
    return path


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:xz"])
def test_tar_refuses_traversal_names_and_links(tmp_path, mode):
    path = _tar(tmp_path / "a.tar", {"P1/v1/a.jpg": b"FACE-a", "P1/v1/.hidden.jpg": b"x"}, mode)
    items = list(TarSource(path).items())
    by_path = {i.path: i for i in items}
    assert set(by_path) == {"P1/v1/a.jpg", "P1/link.jpg", "P1/hard.jpg", *UNSAFE}
    for name in [*UNSAFE, "P1/link.jpg", "P1/hard.jpg"]:
        assert by_path[name].problem[:2] == ("rejected", "unsafe_member"), name
        assert by_path[name].data is None
    assert by_path["P1/v1/a.jpg"].data == b"FACE-a"


def test_tar_stream_keeps_no_member_list(tmp_path):
    path = _tar(tmp_path / "big.tar", {f"p/{i:04d}.jpg": b"FACE%d" % i for i in range(300)}, "w")
    src = TarSource(path)
    seen = 0
    for tf, _info in src._stream():
        assert len(tf.members) == 0       # headers are not accumulated
        seen += 1
    assert seen == 300 + len(UNSAFE) + 2


def test_truncated_tar_ends_with_a_failed_row(tmp_path):
    path = _tar(tmp_path / "a.tar", {f"p/{i}.jpg": b"FACE" + bytes(3000) for i in range(10)}, "w")
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    items = list(TarSource(cut).items())
    assert items[0].data is not None
    assert items[-1].problem[:2] == ("failed", "corrupt_archive")


def test_damaged_zip_member_is_a_failed_row(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.jpg", b"FACE-good" * 100)
        zf.writestr("bad.jpg", b"FACE-bad" * 1000)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"bad.jpg") + len("bad.jpg") + 10          # inside bad.jpg's compressed data
    raw[at:at + 20] = b"\x00" * 20
    path.write_bytes(bytes(raw))
    items = {i.path: i for i in ZipSource(path).items()}
    assert items["good.jpg"].data == b"FACE-good" * 100
    assert items["bad.jpg"].problem[:2] == ("failed", "corrupt_member")


def test_folder_walk_sorted_relative_and_skips_hidden(tmp_path):
    for rel in ["P2/v1/b.jpg", "P1/v2/a.jpg", "P1/v1/z.jpg", "P1/v1/a.jpg", ".git/x", "P1/.thumbs/t.jpg",
                "P1/v1/.DS_Store", "notes.txt"]:
        p = tmp_path / "src" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"FACE" + rel.encode())
    (tmp_path / "src" / "P1" / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    src = open_source(str(tmp_path / "src"))
    assert isinstance(src, FolderSource)
    paths = [i.path for i in src.items()]
    assert paths == ["notes.txt", "P1/v1/a.jpg", "P1/v1/z.jpg", "P1/v2/a.jpg", "P2/v1/b.jpg"]
    assert src.count() == 5
    items = list(src.items())
    assert all(i.url and i.data is None for i in items)                 # paths: the workers read
    by_bytes = list(FolderSource(tmp_path / "src", transfer="bytes").items())
    assert [i.data for i in by_bytes] == [(tmp_path / "src" / p).read_bytes() for p in paths]


def test_open_source_kinds(tmp_path):
    z = _zip(tmp_path / "a.zip", {"a.jpg": b"x"}, unsafe=[])
    t = _tar(tmp_path / "a.tgz", {"a.jpg": b"x"})
    assert open_source(str(z)).kind == "zip"
    assert open_source(str(t)).kind == "tar"
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(ValueError):
        open_source(str(tmp_path / "plain.txt"))
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "missing"))
