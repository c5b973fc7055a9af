import io
import struct

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import ImageRejected
from service.storage.metadata import strip_metadata

from . import images


def exif_of(data: bytes) -> Image.Exif:
    with Image.open(io.BytesIO(data)) as im:
        return im.getexif()


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of the segments before the first scan."""
    out, pos = [], 2
    while True:
        marker = data[pos + 1]
        length = struct.unpack_from(">H", data, pos + 2)[0]
        out.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return out


def assert_no_secrets(data: bytes) -> None:
    found = [s for s in images.SECRETS if s in data]
    assert not found, f"identifying metadata survived: {found}"
    assert b"xmpmeta" not in data or b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>' in data


def test_jpeg_gps_serials_xmp_iptc_removed_orientation_kept_pixels_identical():
    src = images.jpeg_with_metadata(orientation=6)
    before = exif_of(src)
    assert before.get_ifd(0x8825) and before.get_ifd(0x8769)[0xA431] == "BODYSN-4471"   # the fixture is real
    assert all(s in src for s in images.SECRETS)

    out = strip_metadata(src)
    assert out.format == "jpeg"
    assert_no_secrets(out.data)
    after = exif_of(out.data)
    assert after.get(0x0112) == 6 and out.orientation == 6
    assert (out.width, out.height) == (48, 64)          # 64x48 pixels turned by orientation 6
    assert 0x8825 not in after and not after.get_ifd(0x8825)
    exif_ifd = after.get_ifd(0x8769)
    for tag in (0xA431, 0xA435, 0xA420, 0xA430, 0x927C):
        assert tag not in exif_ifd
    assert exif_ifd[0x829A] == pytest.approx(0.008)     # harmless exposure data kept
    assert after[0x010F] == "Canon" and 0x013B not in after
    markers = [m for m, _ in jpeg_segments(out.data)]
    assert 0xED not in markers and 0xFE not in markers  # IPTC and comment gone
    assert not any(m == 0xE1 and p.startswith(b"http://ns.adobe.com") for m, p in jpeg_segments(out.data))
    assert out.data.endswith(b"\xff\xd9")               # trailing bytes gone
    # lossless: the same decoded pixels, and the entropy-coded scan copied byte for byte
    assert np.array_equal(images.decode(src), images.decode(out.data))
    scan = src[src.index(b"\xff\xda"):src.rindex(b"\xff\xd9")]
    assert scan in out.data


def test_jpeg_strip_is_deterministic_and_idempotent():
    src = images.jpeg_with_metadata()
    once = strip_metadata(src).data
    assert strip_metadata(src).data == once
    assert strip_metadata(once).data == once


def test_progressive_jpeg():
    src = images.jpeg_with_metadata(progressive=True)
    out = strip_metadata(src)
    assert_no_secrets(out.data)
    assert np.array_equal(images.decode(src), images.decode(out.data))


def test_jpeg_with_unparseable_exif_drops_it_whole():
    good = images.plain_jpeg()
    broken = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0" + b"CAMSN-1234"   # IFD offset outside the block
    src = good[:2] + images.segment(0xE1, broken) + good[2:]
    out = strip_metadata(src)
    assert b"CAMSN" not in out.data and b"Exif" not in out.data
    assert np.array_equal(images.decode(good), images.decode(out.data))


def test_exif_bytes_not_referenced_by_kept_tags_are_zeroed():
    # Data hidden in unreferenced space (e.g. maker notes pointing outside themselves) goes too.
    ex = Image.Exif()
    ex[0x0112] = 3
    tiff = ex.tobytes()[6:] if ex.tobytes().startswith(b"Exif") else ex.tobytes()
    hidden = tiff + b"\x00" * 4 + b"CAMSN-1234 hidden after the IFDs"
    good = images.plain_jpeg()
    src = good[:2] + images.segment(0xE1, b"Exif\x00\x00" + hidden) + good[2:]
    out = strip_metadata(src)
    assert b"CAMSN" not in out.data
    assert exif_of(out.data)[0x0112] == 3


def test_png_text_and_exif_cleaned_idat_untouched():
    src = images.png_with_metadata()
    out = strip_metadata(src)
    assert out.format == "png"
    assert_no_secrets(out.data)
    assert b"iTXt" not in out.data and b"tEXt" not in out.data
    after = exif_of(out.data)
    assert after.get(0x0112) == 6 and not after.get_ifd(0x8825)
    assert np.array_equal(images.decode(src), images.decode(out.data))
    idat = src[src.index(b"IDAT") - 4:src.index(b"IEND") - 4]
    assert idat in out.data


def test_webp_xmp_dropped_exif_cleaned_pixels_identical():
    src = images.webp_with_metadata()
    out = strip_metadata(src)
    assert out.format == "webp"
    assert_no_secrets(out.data)
    assert b"XMP " not in out.data
    flags = out.data[out.data.index(b"VP8X") + 8]
    assert not flags & 0x04 and flags & 0x08          # XMP flag cleared, EXIF flag set
    assert exif_of(out.data).get(0x0112) == 6
    assert np.array_equal(images.decode(src), images.decode(out.data))


def test_heic_exif_and_xmp_items_cleaned_in_place():
    src = images.heic_with_metadata()
    assert all(s in src for s in (b"BODYSN-4471", b"XMP-SECRET"))
    out = strip_metadata(src)
    assert out.format == "heif"
    assert len(out.data) == len(src)                   # edited in place: no offset moved
    assert_no_secrets(out.data)
    after = exif_of(out.data)
    assert not after.get_ifd(0x8825) and 0xA431 not in after.get_ifd(0x8769)
    assert np.array_equal(images.decode(src), images.decode(out.data))


def test_tiff_reencoded_losslessly_without_metadata():
    src = images.tiff_with_metadata()
    assert b"CAMSN-1234" in src and b"XMP-SECRET" in src
    out = strip_metadata(src)
    assert out.format == "tiff"
    assert_no_secrets(out.data)
    assert np.array_equal(images.decode(src), images.decode(out.data))


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"GIF89a" + b"\0" * 40, "unsupported_format"),
    (b"not an image at all", "not_an_image"),
    (images.plain_jpeg()[:200], "truncated_image"),
    (images.segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00").join([b"\xff\xd8", b"garbage" * 9]),
     "corrupt_image"),
])
def test_rejects_what_it_cannot_store(data, code):
    with pytest.raises(ImageRejected) as err:
        strip_metadata(data)
    assert err.value.code == code
