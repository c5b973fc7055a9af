"""A generated clinic archive for the re-scoring tests: real face photos mixed with bad files.

Faces are crops of the sample render (sample_images/astronaut_render.jpg) at its native
4.3 px/mm, about 1100 x 1300 px, each with a different crop offset, brightness and JPEG
quality so every file has its own sha256; they pass the quality gate (with the
``low_resolution`` warning). Mixed in: blurred and too-small faces (rejected by the gate),
face-free skin patches (``no_face``), grayscale photos, truncated and corrupt JPEGs, notes in
text files, empty files, tiny images, an exact duplicate, and in the archive itself three
members with unsafe names. The order is shuffled with a fixed seed, so patients' folders
interleave like an archive built over years.
"""
from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from pipelines.synthetic.skin import skin_patch

ROOT = Path(__file__).resolve().parents[2]
FACE_BOX = (800, 100, 1900, 1400)          # the face of the render, with margin, in its pixels
UNSAFE_NAMES = ("../escape.jpg", "/etc/absolute.jpg", "P001/../../climb.jpg")

# expected outcome per kind: (status, acceptable reasons)
EXPECTED = {
    "face": ("scored", {None}),
    "duplicate": ("scored", {None}),
    "blurred": ("rejected", {"blurred"}),
    "small": ("rejected", {"face_too_small"}),
    "skin": ("rejected", {"no_face"}),
    "gray": ("rejected", {"grayscale_image"}),
    "truncated": ("rejected", {"truncated_image"}),
    "corrupt": ("rejected", {"corrupt_image", "truncated_image"}),   # random bytes after a JPEG marker
    "note": ("rejected", {"not_an_image"}),
    "empty": ("rejected", {"empty_file"}),
    "tiny": ("rejected", {"image_too_small"}),
    "unsafe": ("rejected", {"unsafe_member"}),
}
COUNTS = {"face": 16, "blurred": 3, "small": 3, "skin": 110, "gray": 10, "truncated": 16, "corrupt": 12,
          "note": 20, "empty": 6, "tiny": 8}


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_photos(seed: int = 7) -> list[tuple[str, str, bytes]]:
    """(kind, relative path, bytes) for every generated file, shuffled; one duplicate of a face
    under a second name (kind ``duplicate``)."""
    rng = random.Random(seed)
    render = Image.open(ROOT / "sample_images" / "astronaut_render.jpg").convert("RGB")

    def face(i: int) -> Image.Image:
        dx, dy = rng.randint(-60, 60), rng.randint(-60, 60)
        x0, y0, x1, y1 = FACE_BOX
        crop = render.crop((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        return ImageEnhance.Brightness(crop).enhance(rng.uniform(0.92, 1.08))

    files: list[tuple[str, bytes]] = []
    for i in range(COUNTS["face"]):
        files.append(("face", _jpeg(face(i), rng.randint(70, 95))))
    for i in range(COUNTS["blurred"]):
        files.append(("blurred", _jpeg(face(i).filter(ImageFilter.GaussianBlur(6 + i)), 85)))
    for i in range(COUNTS["small"]):
        files.append(("small", _jpeg(face(i).resize((300 + 10 * i, 350 + 10 * i), Image.LANCZOS), 85)))
    for i in range(COUNTS["skin"]):
        size = rng.choice((128, 160, 192))
        lab = (rng.uniform(45, 70), rng.uniform(8, 18), rng.uniform(10, 22))
        patch = Image.fromarray(skin_patch((size, size), 4.0, lab=lab, seed=seed * 1000 + i))
        files.append(("skin", _jpeg(patch, 85)))
    for i in range(COUNTS["gray"]):
        files.append(("gray", _jpeg(face(i).resize((550, 650)).convert("L"), 80)))
    for i in range(COUNTS["truncated"]):
        data = _jpeg(face(i).resize((550, 650)), 80 + i)
        files.append(("truncated", data[: len(data) // 2 + i]))
    nrng = np.random.default_rng(seed)
    for i in range(COUNTS["corrupt"]):
        files.append(("corrupt", b"\xff\xd8\xff\xe0" + nrng.bytes(2000 + 37 * i)))
    for i in range(COUNTS["note"]):
        files.append(("note", f"visit note {i}: patient tolerated the session well\n".encode() * (i + 1)))
    for i in range(COUNTS["empty"]):
        files.append(("empty", b""))
    for i in range(COUNTS["tiny"]):
        files.append(("tiny", _jpeg(face(i).resize((40 + i, 48 + i)), 85)))
    # empty files share one sha256: all but the first are duplicates of it
    out: list[tuple[str, str, bytes]] = []
    for n, (kind, data) in enumerate(files):
        ext = ".txt" if kind == "note" else ".jpg"
        out.append((kind, f"P{n % 23:03d}/visit{n % 5 + 1}/{kind}_{n:03d}{ext}", data))
    out.append(("duplicate", "P099/visit1/copy_of_first_face.jpg", out[0][2]))
    rng.shuffle(out)
    return out


def write_zip(path: Path, photos: list[tuple[str, str, bytes]], *, unsafe: bool = True) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for _, name, data in photos:
            zf.writestr(name, data)
        if unsafe:
            for name in UNSAFE_NAMES:
                info = zipfile.ZipInfo(name)
                info.filename = name          # keep it raw: ZipInfo would not clean it, but be explicit
                zf.writestr(info, b"\xff\xd8\xff should never be read")
    return path


def write_tar(path: Path, photos: list[tuple[str, str, bytes]], *, unsafe: bool = True, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for _, name, data in photos:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if unsafe:
            for name in UNSAFE_NAMES:
                info = tarfile.TarInfo(name)
                payload = b"should never be read"
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            link = tarfile.TarInfo("P001/link_to_passwd.jpg")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tf.addfile(link)
    return path
