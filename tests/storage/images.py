"""Photos with identifying metadata, built in code for the storage tests."""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, PngImagePlugin

# Strings planted in the metadata; none may survive stripping.
SECRETS = (b"BODYSN-4471", b"LENSSN-9902", b"CAMSN-1234", b"UNIQUEID-77AA", b"MAKERNOTE-XYZ",
           b"OWNER-JANE", b"XMP-SECRET", b"IPTC-SECRET", b"COMMENT-SECRET", b"ARTIST-DOE")
GPS_LATITUDE = (48.0, 51.0, 29.5)


def pixels(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def exif_with_secrets(orientation: int = 6) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "Canon"
    ex[0x0110] = "EOS R5"
    ex[0x013B] = "ARTIST-DOE"
    gps = ex.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = GPS_LATITUDE
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    e = ex.get_ifd(0x8769)
    e[0x829A] = 0.008                   # ExposureTime: kept
    e[0xA431] = "BODYSN-4471"           # BodySerialNumber
    e[0xA435] = "LENSSN-9902"           # LensSerialNumber
    e[0xA420] = "UNIQUEID-77AA"         # ImageUniqueID
    e[0xA430] = "OWNER-JANE"            # CameraOwnerName
    e[0x927C] = b"MAKERNOTE-XYZ" * 8    # MakerNote
    return ex


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description exif:GPSLatitude="48,51.5N" note="XMP-SECRET"/></rdf:RDF></x:xmpmeta>')


def _insert_after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_metadata(seed: int = 0, orientation: int = 6, **save) -> bytes:
    """A JPEG with EXIF (GPS IFD, serial numbers, MakerNote, owner), XMP, IPTC (APP13), a
    comment and trailing bytes after EOI."""
    buf = io.BytesIO()
    Image.fromarray(pixels(seed)).save(buf, "JPEG", exif=exif_with_secrets(orientation), xmp=XMP, quality=90, **save)
    data = buf.getvalue()
    iptc = segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10IPTC-SECRET.....")
    com = segment(0xFE, b"COMMENT-SECRET")
    return _insert_after_soi(data, iptc, com) + b"CAMSN-1234 trailing bytes"


def png_with_metadata(seed: int = 0) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Comment", "COMMENT-SECRET")
    buf = io.BytesIO()
    Image.fromarray(pixels(seed)).save(buf, "PNG", exif=exif_with_secrets(), pnginfo=info)
    return buf.getvalue()


def webp_with_metadata(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(seed)).save(buf, "WEBP", exif=exif_with_secrets(), xmp=XMP, lossless=True)
    return buf.getvalue()


def heic_with_metadata(seed: int = 0) -> bytes:
    import pillow_heif  # noqa: F401  (registers the HEIF plugin)

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.fromarray(pixels(seed, 64, 64)).save(buf, "HEIF", exif=exif_with_secrets(1).tobytes(), xmp=XMP, quality=90)
    return buf.getvalue()


def tiff_with_metadata(seed: int = 0) -> bytes:
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[0x0112] = 1
    ifd[0x013B] = "ARTIST-DOE"
    ifd[0x010E] = "COMMENT-SECRET"
    ifd[0x02BC] = XMP
    ifd[0xC62F] = "CAMSN-1234"
    buf = io.BytesIO()
    Image.fromarray(pixels(seed)).save(buf, "TIFF", tiffinfo=ifd)
    return buf.getvalue()


def plain_jpeg(seed: int = 0, size: tuple[int, int] = (48, 64)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(seed, *size)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("RGB", "L") else im).copy()
