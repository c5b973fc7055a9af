"""Strip location, device-serial and other identifying metadata from uploaded photos.

What is kept, per format, and how (the pixels are never re-encoded except for TIFF):

* **JPEG**: segments are rewritten losslessly; scans and tables are copied byte for byte.
  Kept: JFIF (APP0, its thumbnail removed), ICC profile (APP2), Adobe (APP14, needed to read
  colours), a sanitised EXIF (APP1). Dropped: XMP and extended XMP, IPTC/Photoshop (APP13),
  MPF and FlashPix (APP2), every other APPn, comments, and anything after EOI (the secondary
  images of MPF files, e.g. depth or gain maps, carry their own EXIF).
* **PNG**: chunk filter, IDAT untouched. Kept: critical chunks and the ancillary chunks that
  affect rendering (tRNS gAMA cHRM sRGB iCCP sBIT cICP mDCV cLLI pHYs bKGD hIST sPLT, APNG's
  acTL fcTL fdAT) and a sanitised eXIf. Dropped: text chunks (tEXt zTXt iTXt, where XMP lives),
  tIME, dSIG and every unknown ancillary chunk.
* **WebP**: RIFF chunk filter, bitstream untouched. Kept: VP8/VP8L/ALPH/ANIM/ANMF/ICCP, VP8X
  (flags updated), a sanitised EXIF. Dropped: XMP and unknown chunks.
* **HEIC/HEIF/AVIF**: edited in place, so no offset in the file moves: every ``Exif`` item is
  sanitised (same length, dropped bytes zeroed) and every XMP item (``mime`` with an RDF/XMP
  content type) is replaced by an empty XMP packet padded with spaces. Image items untouched.
* **TIFF**: the metadata is interleaved with the image structure, so the first page is decoded
  and re-encoded losslessly (Deflate) with only Orientation, resolution and the ICC profile;
  the round trip is verified pixel for pixel. Multi-page TIFFs keep the first page; colour
  TIFFs with more than 8 bits per sample are refused (Pillow would narrow them).

Sanitised EXIF is an allow-list: IFD0 keeps Orientation, Make, Model, resolution, Software,
DateTime and colour description; the EXIF IFD keeps exposure, lens model, colour space and
capture-time tags; the Interop IFD keeps its index (sRGB/Adobe RGB). Everything else is gone:
the GPS IFD, MakerNote, UserComment, BodySerialNumber, LensSerialNumber, CameraSerialNumber,
ImageUniqueID, CameraOwnerName, Artist, Copyright, descriptions, Windows XP tags, the IFD1
thumbnail (an edited photo's thumbnail can still show the unedited original). The EXIF block
is rebuilt by keeping only the bytes that the kept entries reference and zeroing every other
byte, which also removes data hidden in unreferenced space (maker notes that point outside
themselves). An EXIF block that cannot be parsed is dropped whole (its Orientation with it).
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from pipelines.errors import ImageRejected

try:  # HEIC/HEIF through Pillow (pillow-heif is a dependency of the project)
    import pillow_heif

    pillow_heif.register_heif_opener()
except Exception:  # pragma: no cover - the library is installed with the project
    pillow_heif = None

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
INTEROP_IFD = 0xA005

IFD0_KEEP = frozenset({
    0x010F, 0x0110,            # Make, Model
    ORIENTATION,
    0x011A, 0x011B, 0x0128,    # XResolution, YResolution, ResolutionUnit
    0x0131, 0x0132,            # Software, DateTime
    0x013E, 0x013F,            # WhitePoint, PrimaryChromaticities
    0x0211, 0x0213, 0x0214,    # YCbCrCoefficients, YCbCrPositioning, ReferenceBlackWhite
})
EXIF_KEEP = frozenset({
    0x829A, 0x829D, 0x8822, 0x8827, 0x8830, 0x8832,  # exposure time, F-number, program, ISO...
    0x9000, 0x9003, 0x9004, 0x9010, 0x9011, 0x9012,  # ExifVersion, capture dates and offsets
    0x9101, 0x9102, 0x9201, 0x9202, 0x9203, 0x9204, 0x9205, 0x9206, 0x9207, 0x9208, 0x9209,
    0x920A, 0x9290, 0x9291, 0x9292,                  # APEX values, metering, flash, focal length
    0xA000, 0xA001, 0xA002, 0xA003,                  # FlashpixVersion, ColorSpace, pixel dims
    0xA20E, 0xA20F, 0xA210, 0xA215, 0xA217, 0xA300, 0xA301,
    0xA401, 0xA402, 0xA403, 0xA404, 0xA405, 0xA406, 0xA407, 0xA408, 0xA409, 0xA40A, 0xA40C,
    0xA432, 0xA433, 0xA434,                          # LensSpecification, LensMake, LensModel
    0xA500,                                          # Gamma
})
INTEROP_KEEP = frozenset({0x0001, 0x0002})           # InteropIndex (R98/R03), InteropVersion

# Tags named in the requirements, for documentation and tests: none is in an allow-list.
DROPPED_TAGS = {
    "GPSInfo": GPS_IFD, "MakerNote": 0x927C, "UserComment": 0x9286, "ImageUniqueID": 0xA420,
    "CameraOwnerName": 0xA430, "BodySerialNumber": 0xA431, "LensSerialNumber": 0xA435,
    "CameraSerialNumber": 0xC62F, "Artist": 0x013B, "Copyright": 0x8298,
    "ImageDescription": 0x010E, "XPAuthor": 0x9C9D, "XMP": 0x02BC, "IPTC": 0x83BB,
}

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_ENTRIES = 2048


@dataclass(frozen=True)
class StrippedImage:
    """The bytes to store, and what Pillow says about them. ``width``/``height`` are as
    displayed, i.e. after the EXIF orientation (HEIF: after its own transforms)."""

    data: bytes
    format: str        # jpeg | png | webp | tiff | heif | avif
    width: int
    height: int
    orientation: int   # EXIF orientation kept in the stored copy (1 = none)


class _ExifError(ValueError):
    pass


# Reason codes shared with pipelines.decode, so the service maps them once.
def _corrupt(message: str) -> ImageRejected:
    return ImageRejected("corrupt_image", message)


def _truncated(message: str) -> ImageRejected:
    return ImageRejected("truncated_image", message)


# --------------------------------------------------------------------------------------------
# EXIF (a TIFF structure) sanitiser


@dataclass(frozen=True)
class _Policy:
    keep: Callable[[int], bool]
    subifds: dict   # pointer tag -> _Policy for that IFD, or None to drop it


_INTEROP_POLICY = _Policy(INTEROP_KEEP.__contains__, {})
_EXIF_POLICY = _Policy(EXIF_KEEP.__contains__, {INTEROP_IFD: _INTEROP_POLICY})
_IFD0_POLICY = _Policy(IFD0_KEEP.__contains__, {EXIF_IFD: _EXIF_POLICY, GPS_IFD: None})


class _ExifSanitizer:
    """Sanitise the TIFF structure in ``buf[base:end]`` in place: keep the allowed entries and
    the bytes they reference, zero every other byte of the block."""

    def __init__(self, buf: bytearray, base: int, end: int):
        if end - base < 8:
            raise _ExifError("EXIF block too short")
        order = bytes(buf[base:base + 2])
        if order == b"II":
            self.e = "<"
        elif order == b"MM":
            self.e = ">"
        else:
            raise _ExifError("bad TIFF byte order")
        self.buf, self.base, self.end = buf, base, end
        if self._u16(base + 2) != 42:
            raise _ExifError("bad TIFF magic")
        self.keep: list[tuple[int, int]] = [(base, base + 8)]
        self.tables: list[tuple[int, bytes]] = []
        self.visited: set[int] = set()
        self.orientation = 1

    def _u16(self, pos: int) -> int:
        return struct.unpack_from(self.e + "H", self.buf, pos)[0]

    def _u32(self, pos: int) -> int:
        return struct.unpack_from(self.e + "I", self.buf, pos)[0]

    def _check(self, start: int, length: int) -> None:
        if start < self.base or length < 0 or start + length > self.end:
            raise _ExifError("offset outside the EXIF block")

    def _ifd(self, offset: int, policy: _Policy) -> None:
        pos = self.base + offset
        if offset in self.visited:
            raise _ExifError("IFD loop")
        self.visited.add(offset)
        self._check(pos, 2)
        n = self._u16(pos)
        if n > _MAX_ENTRIES:
            raise _ExifError("too many IFD entries")
        self._check(pos, 2 + 12 * n + 4)
        kept: list[bytes] = []
        for i in range(n):
            p = pos + 2 + 12 * i
            tag, typ, count = struct.unpack_from(self.e + "HHI", self.buf, p)
            raw = bytes(self.buf[p + 8:p + 12])
            if tag in policy.subifds:
                sub = policy.subifds[tag]
                if sub is None:
                    continue
                try:
                    self._ifd(struct.unpack(self.e + "I", raw)[0], sub)
                except (_ExifError, struct.error):
                    continue   # a broken sub-IFD is dropped, the rest is kept
            elif not policy.keep(tag):
                continue
            else:
                size = _TYPE_SIZE.get(typ)
                if size is None:
                    continue   # unknown type: cannot know what it references; drop it
                total = size * count
                if total > 4:
                    start = self.base + struct.unpack(self.e + "I", raw)[0]
                    try:
                        self._check(start, total)
                    except _ExifError:
                        continue   # dangling value: drop the entry
                    self.keep.append((start, start + total))
                if tag == ORIENTATION and typ == 3 and count == 1:
                    self.orientation = struct.unpack_from(self.e + "H", raw)[0]
            kept.append(self.buf[p:p + 12])
        table = struct.pack(self.e + "H", len(kept)) + b"".join(kept) + b"\0\0\0\0"  # no next IFD
        self.tables.append((pos, table))
        self.keep.append((pos, pos + len(table)))

    def run(self) -> int:
        """Sanitise; return the end of the last kept byte (relative to ``buf``)."""
        self._ifd(self._u32(self.base + 4), _IFD0_POLICY)
        out = bytearray(self.end - self.base)
        for start, stop in self.keep:
            out[start - self.base:stop - self.base] = self.buf[start:stop]
        for pos, table in self.tables:
            out[pos - self.base:pos - self.base + len(table)] = table
        self.buf[self.base:self.end] = out
        return max(stop for _, stop in self.keep)


def sanitize_exif_tiff(tiff: bytes) -> tuple[bytes, int] | None:
    """Sanitise a bare EXIF TIFF structure (``II*\\0...``/``MM\\0*...``); return the new bytes
    (trimmed after the last kept byte) and the orientation, or None when it cannot be parsed."""
    buf = bytearray(tiff)
    try:
        s = _ExifSanitizer(buf, 0, len(buf))
        last = s.run()
    except (_ExifError, struct.error):
        return None
    return bytes(buf[:last]), s.orientation


# --------------------------------------------------------------------------------------------
# JPEG

_EXIF_HEADER = b"Exif\x00\x00"
_STANDALONE = set(range(0xD0, 0xD8)) | {0x01}


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise _corrupt("JPEG segment too long")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_segment_policy(marker: int, payload: bytes, exif_seen: bool) -> bytes | None:
    """The segment to write for an APPn/COM segment, or None to drop it."""
    if marker == 0xE0:                               # APP0: JFIF kept without thumbnail
        if payload.startswith(b"JFIF\x00") and len(payload) >= 14:
            return _segment(marker, payload[:12] + b"\x00\x00")
        return None
    if marker == 0xE1:                               # APP1: EXIF sanitised; XMP dropped
        if payload.startswith(_EXIF_HEADER) and not exif_seen:
            result = sanitize_exif_tiff(payload[len(_EXIF_HEADER):])
            if result is None:
                return None
            return _segment(marker, _EXIF_HEADER + result[0])
        return None
    if marker == 0xE2:                               # APP2: ICC profile only
        return _segment(marker, payload) if payload.startswith(b"ICC_PROFILE\x00") else None
    if marker == 0xEE:                               # APP14: Adobe colour transform flag
        return _segment(marker, payload) if payload.startswith(b"Adobe") else None
    return None                                      # other APPn, COM


def strip_jpeg(data: bytes) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise _corrupt("not a JPEG file")
    out = [b"\xff\xd8"]
    n = len(data)
    pos = 2
    exif_seen = False
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise _corrupt("JPEG structure broken (no marker where one is expected)")
        while pos < n and data[pos] == 0xFF:        # fill bytes
            pos += 1
        if pos >= n:
            raise _truncated("JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:                           # EOI: anything after it is dropped
            out.append(b"\xff\xd9")
            break
        if marker in _STANDALONE:
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > n:
            raise _truncated("JPEG truncated in a segment header")
        length = struct.unpack_from(">H", data, pos)[0]
        if length < 2 or pos + length > n:
            raise _truncated("JPEG segment runs past the end of the file")
        payload = data[pos + 2:pos + length]
        pos += length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            seg = _jpeg_segment_policy(marker, payload, exif_seen)
            if marker == 0xE1 and payload.startswith(_EXIF_HEADER):
                exif_seen = True
            if seg is not None:
                out.append(seg)
            continue
        out.append(bytes((0xFF, marker)) + data[pos - length:pos])
        if marker == 0xDA:                           # SOS: copy the entropy-coded data
            scan_start = pos
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    raise _truncated("JPEG truncated in scan data (no EOI)")
                nxt = data[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                    continue
                break
            out.append(data[scan_start:pos])
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
    b"cICP", b"mDCV", b"cLLI", b"pHYs", b"bKGD", b"hIST", b"sPLT", b"acTL", b"fcTL", b"fdAT",
}


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def strip_png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise _corrupt("not a PNG file")
    out = [_PNG_SIGNATURE]
    pos, n = len(_PNG_SIGNATURE), len(data)
    exif_seen = False
    while True:
        if pos + 12 > n:
            raise _truncated("PNG truncated (no IEND)")
        length = struct.unpack_from(">I", data, pos)[0]
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            raise _truncated("PNG chunk runs past the end of the file")
        if ctype in _PNG_KEEP or not (ctype[0] & 0x20):     # known or critical: keep as is
            out.append(data[pos:end])
        elif ctype == b"eXIf" and not exif_seen:
            exif_seen = True
            result = sanitize_exif_tiff(data[pos + 8:pos + 8 + length])
            if result is not None:
                out.append(_png_chunk(b"eXIf", result[0]))
        pos = end
        if ctype == b"IEND":
            break
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# WebP

_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}


def strip_webp(data: bytes) -> bytes:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _corrupt("not a WebP file")
    riff_end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    chunks: list[tuple[bytes, bytes]] = []
    pos = 12
    while pos + 8 <= riff_end:
        ctype = data[pos:pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if len(body) != size:
            raise _truncated("WebP chunk runs past the end of the file")
        pos += 8 + size + (size & 1)
        if ctype in _WEBP_KEEP:
            chunks.append((ctype, body))
        elif ctype == b"EXIF" and not any(c == b"EXIF" for c, _ in chunks):
            tiff = body[len(_EXIF_HEADER):] if body.startswith(_EXIF_HEADER) else body
            result = sanitize_exif_tiff(tiff)
            if result is not None:
                chunks.append((ctype, result[0]))
    has_exif = any(c == b"EXIF" for c, _ in chunks)
    out = [b"WEBP"]
    for ctype, body in chunks:
        if ctype == b"VP8X" and body:
            flags = (body[0] & ~0x0C) | (0x08 if has_exif else 0)   # clear XMP, set EXIF bit
            body = bytes((flags,)) + body[1:]
        out.append(ctype + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b""))
    payload = b"".join(out)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


# --------------------------------------------------------------------------------------------
# HEIF family (HEIC, AVIF): in-place edit of Exif and XMP items

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1", b"mif2", b"avif", b"avis"}
_XMP_TYPES = {b"application/rdf+xml", b"application/xmp+xml", b"text/xml", b"application/xml"}
_EMPTY_XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'   # padded with spaces to the item's length


def _boxes(data, start: int, end: int):
    """Yield (type, payload_start, box_end) of the ISO-BMFF boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, btype = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise _corrupt("HEIF box header truncated")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise _corrupt("HEIF box runs past its parent")
        yield btype, pos + header, pos + size
        pos += size


def _read_uint(data, pos: int, size: int) -> int:
    return int.from_bytes(data[pos:pos + size], "big") if size else 0


def _heif_items(data, meta_start: int, meta_end: int):
    """Item types/content types from ``iinf`` and extents from ``iloc`` (file offsets)."""
    infos: dict[int, tuple[bytes, bytes]] = {}
    locations: dict[int, list[tuple[int, int]]] = {}
    idat_start = None
    for btype, start, end in _boxes(data, meta_start + 4, meta_end):   # meta is a full box
        if btype == b"idat":
            idat_start = start
        elif btype == b"iinf":
            version = data[start]
            first = start + 4 + (2 if version == 0 else 4)
            for itype, s, e in _boxes(data, first, end):
                if itype != b"infe":
                    continue
                v = data[s]
                if v < 2:
                    continue
                p = s + 4
                item_id = _read_uint(data, p, 2 if v == 2 else 4)
                p += (2 if v == 2 else 4) + 2
                kind = bytes(data[p:p + 4])
                p += 4
                name_end = data.find(b"\0", p, e)
                p = (name_end + 1) if name_end >= 0 else e
                content_type = b""
                if kind == b"mime":
                    ct_end = data.find(b"\0", p, e)
                    content_type = bytes(data[p:ct_end if ct_end >= 0 else e])
                infos[item_id] = (kind, content_type.lower())
        elif btype == b"iloc":
            version = data[start]
            p = start + 4
            offset_size, length_size = data[p] >> 4, data[p] & 15
            base_offset_size, index_size = data[p + 1] >> 4, data[p + 1] & 15
            if version not in (1, 2):
                index_size = 0
            p += 2
            count_size = 2 if version < 2 else 4
            count = _read_uint(data, p, count_size)
            p += count_size
            for _ in range(count):
                item_id = _read_uint(data, p, count_size)
                p += count_size
                method = 0
                if version in (1, 2):
                    method = _read_uint(data, p, 2) & 15
                    p += 2
                p += 2                                    # data_reference_index
                base = _read_uint(data, p, base_offset_size)
                p += base_offset_size
                extent_count = _read_uint(data, p, 2)
                p += 2
                extents = []
                for _ in range(extent_count):
                    p += index_size
                    off = _read_uint(data, p, offset_size)
                    p += offset_size
                    length = _read_uint(data, p, length_size)
                    p += length_size
                    extents.append((method, base + off, length))
                locations[item_id] = extents
                if p > end:
                    raise _corrupt("HEIF iloc box truncated")
    resolved: dict[int, list[tuple[int, int]]] = {}
    for item_id, extents in locations.items():
        spans = []
        for method, off, length in extents:
            if method == 1:
                if idat_start is None:
                    raise _corrupt("HEIF item in idat without an idat box")
                off += idat_start
            elif method != 0:
                spans = None
                break
            if length == 0:
                length = len(data) - off
            if off < 0 or off + length > len(data):
                raise _corrupt("HEIF item data outside the file")
            spans.append((off, length))
        resolved[item_id] = spans
    return infos, resolved


def strip_heif(data: bytes) -> bytes:
    buf = bytearray(data)
    metas = [(s, e) for t, s, e in _boxes(buf, 0, len(buf)) if t == b"meta"]
    if not metas:
        raise _corrupt("HEIF file without a meta box")
    for meta_start, meta_end in metas:
        infos, locations = _heif_items(buf, meta_start, meta_end)
        for item_id, (kind, content_type) in infos.items():
            is_exif = kind == b"Exif"
            is_xmp = kind == b"mime" and content_type in _XMP_TYPES
            if not (is_exif or is_xmp):
                continue
            spans = locations.get(item_id)
            if spans is None:
                raise ImageRejected("unsupported_format", "HEIF metadata item stored in a way mesoscan cannot edit")
            payload = bytearray(b"".join(bytes(buf[o:o + n]) for o, n in spans))
            if is_exif:
                payload = _sanitize_heif_exif(payload)
            else:
                payload = bytearray(_EMPTY_XMP.ljust(len(payload), b" ")) if len(payload) >= len(_EMPTY_XMP) \
                    else bytearray(len(payload))
            p = 0
            for o, n in spans:
                buf[o:o + n] = payload[p:p + n]
                p += n
    return bytes(buf)


def _sanitize_heif_exif(payload: bytearray) -> bytearray:
    """An Exif item: a 4-byte offset to the TIFF header, then (usually ``Exif\\0\\0`` and) TIFF.
    Sanitised in place; zeroed whole when it cannot be parsed."""
    if len(payload) >= 4:
        base = 4 + struct.unpack_from(">I", payload, 0)[0]
        if payload[base:base + 4] not in (b"II*\0", b"MM\0*"):
            found = [i for i in (payload.find(b"II*\0", 4), payload.find(b"MM\0*", 4)) if i >= 0]
            base = min(found) if found else -1
        if base >= 4:
            try:
                _ExifSanitizer(payload, base, len(payload)).run()
                if bytes(payload[4:base]) not in (b"", _EXIF_HEADER):
                    payload[4:base] = bytes(base - 4)    # unknown bytes before the TIFF header
                return payload
            except (_ExifError, struct.error):
                pass
    return bytearray(len(payload))


# --------------------------------------------------------------------------------------------
# TIFF: lossless re-encode

_TIFF_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I;16L"}


def strip_tiff(data: bytes) -> bytes:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise _corrupt(f"TIFF cannot be read: {exc}") from None
    bits = img.tag_v2.get(258, (8,)) if hasattr(img, "tag_v2") else (8,)
    bits = bits if isinstance(bits, tuple) else (bits,)
    if img.mode not in _TIFF_MODES or (max(bits) > 8 and not img.mode.startswith("I;16")):
        raise ImageRejected("unsupported_format", f"TIFF with mode {img.mode} and {max(bits)} bits per sample "
                                                  "is not supported; send a JPEG, PNG, HEIC or 8-bit TIFF")
    orientation = img.getexif().get(ORIENTATION, 1)
    clean = img.copy()
    clean.info = {}
    options = {"compression": "tiff_adobe_deflate"}
    if img.info.get("icc_profile"):
        options["icc_profile"] = img.info["icc_profile"]
    if img.info.get("dpi"):
        options["dpi"] = img.info["dpi"]
    if orientation in range(2, 9):
        options["tiffinfo"] = {ORIENTATION: orientation}
    out = io.BytesIO()
    clean.save(out, "TIFF", **options)
    stored = out.getvalue()
    check = Image.open(io.BytesIO(stored))
    if check.mode != img.mode or check.size != img.size or check.tobytes() != img.tobytes():
        raise ImageRejected("unsupported_format", "TIFF could not be stored losslessly")
    return stored


# --------------------------------------------------------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """jpeg, png, webp, tiff, heif (HEIC/AVIF family) or None, from the first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if data[4:8] == b"ftyp":
        size = struct.unpack_from(">I", data, 0)[0]
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, min(size, 64), 4)}
        if brands & _HEIF_BRANDS:
            return "heif"
    return None


_STRIPPERS = {"jpeg": strip_jpeg, "png": strip_png, "webp": strip_webp, "tiff": strip_tiff, "heif": strip_heif}
_PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff",
                "HEIF": "heif", "AVIF": "avif"}   # the names pipelines.decode uses


def strip_metadata(data: bytes) -> StrippedImage:
    """Return the copy of an uploaded photo that mesoscan stores (see the module docstring).

    Raises :class:`pipelines.errors.ImageRejected` with the reason codes of ``pipelines.decode``
    (``empty_file``, ``not_an_image``, ``unsupported_format``, ``corrupt_image``,
    ``truncated_image``, ``too_many_pixels``) for files that are not a readable JPEG, PNG, WebP,
    TIFF, HEIC/HEIF or AVIF.
    """
    if not data:
        raise ImageRejected("empty_file", "The file is empty.")
    kind = sniff_format(data)
    if kind is None:
        if data[:6] in (b"GIF87a", b"GIF89a") or data[:2] == b"BM":
            raise ImageRejected("unsupported_format", "GIF and BMP files are not accepted; send a JPEG, PNG, "
                                                      "WebP, TIFF or HEIC photo")
        raise ImageRejected("not_an_image", "The file is not an image.")
    try:
        stored = _STRIPPERS[kind](bytes(data))
    except ImageRejected:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise _corrupt(f"{kind} structure cannot be parsed: {exc}") from None
    try:
        with Image.open(io.BytesIO(stored)) as img:
            fmt = _PIL_FORMATS.get(img.format or "")
            width, height = img.size
            orientation = 1 if kind == "heif" else int(img.getexif().get(ORIENTATION, 1) or 1)
    except Image.DecompressionBombError:
        raise ImageRejected("too_many_pixels", "The image declares too many pixels.") from None
    except Exception as exc:
        raise _corrupt(f"the image cannot be read after stripping its metadata: {exc}") from None
    if fmt is None:
        raise ImageRejected("unsupported_format", f"unsupported image format {img.format}")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return StrippedImage(data=stored, format=fmt, width=width, height=height,
                         orientation=orientation if orientation in range(1, 9) else 1)
