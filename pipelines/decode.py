"""Photo bytes -> one upright sRGB uint8 array, or a typed :class:`ImageRejected`.

Every clinic photo (JPEG, PNG, TIFF 8/16-bit, WebP, HEIC/HEIF) enters the pipeline here. The
contract downstream code can rely on:

* ``DecodedImage.rgb`` is ``(H, W, 3)`` ``uint8``, sRGB-encoded, C-contiguous, read-only,
  upright (EXIF orientation applied), the full-resolution picture downscaled by exactly
  ``reduction`` (each side is ``ceil(full / reduction)``, which is what libjpeg's DCT scaling
  produces).
* Any input bytes give either a :class:`DecodedImage` or an :class:`ImageRejected` whose ``code``
  is one of the module constants below, never another exception (``MemoryError`` excepted, it is a
  property of the machine, not of the file), and no pixel buffer is allocated for an image of
  more than ``DecodeLimits.max_pixels`` pixels.

Choices (and why):

* Transparency is composited over **white**: it is how browsers and viewers show the file, so we
  analyse what the practitioner saw; the skin mask discards the background anyway.
* Colour JPEGs, nearly every clinic photo, are decoded by simplejpeg (libjpeg-turbo straight
  into numpy, the GIL released): Pillow's pixels without Pillow's copy of them. A file libjpeg
  has any complaint about goes to Pillow instead, which judges damaged files as it always did.
* Spatial averaging (DCT scaling, ``cv2.INTER_AREA``) happens in the file's encoded colour space,
  before the ICC conversion, so JPEG and non-JPEG reduced decodes agree and colour conversion
  runs on the smaller image.
* 16-bit samples map to 8-bit by ``round(v / 257)`` (full scale to full scale). Pillow reads
  16-bit RGB(A) PNG/TIFF as 8-bit by keeping the high byte (``v >> 8``, off by up to 1 and
  biased), so those are decoded by OpenCV at 16 bits instead.
* An embedded ICC profile that is not sRGB (Display P3 from phones, Adobe RGB from cameras, CMYK
  print profiles) is converted to sRGB with LittleCMS, perceptual intent (matrix-shaper profiles
  have no perceptual table, LittleCMS then uses relative colorimetric). HEIF files that carry an
  ``nclx`` colour description instead of ICC are converted the same way through a profile built
  from the nclx primaries. Files without colour information are taken as sRGB.
* Pillow's global state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``, warning filters) is
  never modified: the pixel limit is enforced from the header before any decode.
"""
from __future__ import annotations

import hashlib
import io
import math
import struct
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
import pillow_heif
import simplejpeg
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from pipelines.errors import ImageRejected

pillow_heif.register_heif_opener()

# --- reason codes (ImageRejected.code) -------------------------------------------------------
EMPTY_FILE = "empty_file"
FILE_TOO_LARGE = "file_too_large"
NOT_AN_IMAGE = "not_an_image"
UNSUPPORTED_FORMAT = "unsupported_format"
CORRUPT_IMAGE = "corrupt_image"
TRUNCATED_IMAGE = "truncated_image"
TOO_MANY_PIXELS = "too_many_pixels"
IMAGE_TOO_SMALL = "image_too_small"
REASON_CODES = (EMPTY_FILE, FILE_TOO_LARGE, NOT_AN_IMAGE, UNSUPPORTED_FORMAT, CORRUPT_IMAGE,
                TRUNCATED_IMAGE, TOO_MANY_PIXELS, IMAGE_TOO_SMALL)

REDUCTIONS = (1, 2, 4, 8)

# Pillow format id -> our format name. MPO is how Pillow names JPEGs with a multi-picture
# extension (many phone and camera JPEGs); its first frame is an ordinary JPEG.
_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "TIFF": "tiff", "WEBP": "webp", "HEIF": "heif"}
# Only these plugins may look at the bytes: keeps Pillow from guessing exotic formats (TGA has no
# magic number) and from ever reaching plugins that shell out (EPS -> Ghostscript).
# MPO has no opener of its own: the JPEG opener returns it.
_PIL_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "HEIF")

_SUPPORTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "I", "I;16", "I;16B", "I;16L", "I;16N",
                              "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})


@dataclass(frozen=True)
class DecodeLimits:
    """Guards applied from the header, before any pixel is decoded.

    max_bytes: size of the encoded file, bytes. max_pixels: width x height of the full-resolution
    image. min_side: shortest upright side, pixels; below it the photo cannot be analysed.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 80_000_000
    min_side: int = 64


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, read without decoding pixels.

    format: "jpeg", "png", "tiff", "webp" or "heif". width, height: upright full-resolution size,
    pixels (EXIF orientation applied). orientation: the EXIF orientation (1-8) decode applies;
    1 when absent or invalid, and 1 for HEIF, whose decoder already returns upright pixels.
    mode: Pillow's mode for the file ("RGB", "L", "I;16", "RGBA", "CMYK", ...). bits: bits per
    sample of the stored data (1, 8, 16 or 32). has_icc: an ICC profile is embedded.
    """

    format: str
    width: int
    height: int
    orientation: int
    mode: str
    has_icc: bool
    bits: int = 8


@dataclass(frozen=True)
class DecodedImage:
    """rgb: (H, W, 3) uint8 sRGB, upright, C-contiguous and read-only (copy before editing), the
    full image downscaled by ``reduction`` (1, 2, 4, 8): H = ceil(info.height / reduction),
    W = ceil(info.width / reduction). sha256: hex digest of the input bytes. icc_converted: a
    non-sRGB colour description (ICC or HEIF nclx) was converted to sRGB."""

    rgb: np.ndarray = field(repr=False)
    info: ImageInfo
    reduction: int
    sha256: str
    icc_converted: bool


# --- public API ------------------------------------------------------------------------------

def probe_image(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Read format, upright size, orientation and mode from the header; apply every guard.

    Decodes no pixels (PNG EXIF is found by walking chunks, not by ``getexif``, which would load
    the image). Raises ImageRejected with one of the module's reason codes.
    """
    data = _as_bytes(data)
    _check_bytes(data, limits)
    with _open(data) as im:
        return _read_header(im, data, limits)


def decode_image(data: bytes, *, reduction: int = 1,
                 limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode photo bytes to upright sRGB, downscaled by ``reduction`` (1, 2, 4 or 8).

    JPEGs are reduced during decoding (libjpeg DCT scaling, about 1/r^2 of the work); other
    formats are decoded fully and area-averaged. Raises ImageRejected (reason codes above),
    ValueError for a reduction outside (1, 2, 4, 8).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    data = _as_bytes(data)
    _check_bytes(data, limits)
    with _open(data) as im:
        info = _read_header(im, data, limits)
        upright = (-(-info.width // reduction), -(-info.height // reduction))  # (W, H), ceil
        stored = upright[::-1] if info.orientation >= 5 else upright
        icc = im.info.get("icc_profile") or None
        nclx = im.info.get("nclx_profile") if info.format == "heif" else None
        pixels, mode, is_upright = _load(im, data, info, stored)

    pixels = _resize_exact(pixels, upright if is_upright else stored)
    rgb, converted = _to_srgb(pixels, mode, icc, nclx)
    if not is_upright:
        rgb = apply_orientation(rgb, info.orientation)
    rgb = np.ascontiguousarray(rgb)
    rgb.flags.writeable = False  # whatever the path (some are Pillow's read-only buffers): one rule
    return DecodedImage(rgb=rgb, info=info, reduction=reduction,
                        sha256=hashlib.sha256(data).hexdigest(), icc_converted=converted)


def reduce_decoded(decoded: DecodedImage, reduction: int) -> DecodedImage:
    """A full-resolution decode area-averaged down by ``reduction`` (1, 2, 4 or 8), as
    :func:`decode_image` would give it for formats other than JPEG (which decode whole whatever
    the reduction): decode such a photo once, and reduce the pixels for every smaller use."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if decoded.reduction != 1:
        raise ValueError("only a full-resolution decode can be reduced")
    if reduction == 1:
        return decoded
    info = decoded.info
    rgb = np.ascontiguousarray(_resize_exact(decoded.rgb, (-(-info.width // reduction), -(-info.height // reduction))))
    rgb.flags.writeable = False
    return replace(decoded, rgb=rgb, reduction=reduction)


def choose_reduction(full_px_per_mm: float, needed_px_per_mm: float) -> int:
    """Largest of 1, 2, 4, 8 such that full_px_per_mm / r >= needed_px_per_mm (both px/mm, > 0).

    Returns 1 when even the full resolution is below what is needed.
    """
    if not (math.isfinite(full_px_per_mm) and math.isfinite(needed_px_per_mm)
            and full_px_per_mm > 0 and needed_px_per_mm > 0):
        raise ValueError("px/mm values must be finite and > 0")
    for r in reversed(REDUCTIONS):
        if full_px_per_mm / r >= needed_px_per_mm:
            return r
    return 1


_ORIENT_OPS = {
    2: lambda a: cv2.flip(a, 1),                                   # mirror left-right
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),                                   # mirror top-bottom
    5: lambda a: cv2.transpose(a),                                 # main diagonal
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),      # anti-diagonal
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W) or (H, W, C<=4) array stored with EXIF ``orientation`` (1-8) upright.

    Same result as ``PIL.ImageOps.exif_transpose``; values untouched. Returns a new C-contiguous
    array (the input itself for 1 or an invalid value). OpenCV, not numpy views: making a rotated
    12 MP view contiguous costs ~150 ms, cv2.rotate ~40 ms.
    """
    op = _ORIENT_OPS.get(orientation)
    return img if op is None else op(np.ascontiguousarray(img))


# --- guards and header -----------------------------------------------------------------------

def _as_bytes(data) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    return data


def _check_bytes(data: bytes, limits: DecodeLimits) -> None:
    if not data:
        raise ImageRejected(EMPTY_FILE, "The file is empty.")
    if len(data) > limits.max_bytes:
        raise ImageRejected(FILE_TOO_LARGE, f"The file is {len(data) / 2**20:.1f} MiB; the limit is "
                                            f"{limits.max_bytes / 2**20:.0f} MiB.")


def _open(data: bytes) -> Image.Image:
    """Image.open restricted to the supported formats, errors mapped to reason codes."""
    try:
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception only when warnings are errors (-W error).
        raise ImageRejected(TOO_MANY_PIXELS, "The image header declares too many pixels.") from None
    except UnidentifiedImageError:
        pass
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow parsers raise anything on hostile headers
        if _is_truncation(e):
            raise ImageRejected(TRUNCATED_IMAGE, "The image file is incomplete (truncated).") from None
        raise ImageRejected(CORRUPT_IMAGE, f"The image header is unreadable ({type(e).__name__}).") from None
    return _raise_unidentified(data)


def _raise_unidentified(data: bytes):
    """Tell an unsupported image format from something that is no image at all, by magic bytes."""
    other = _sniff_format(data)
    if other in ("tiff",):
        raise ImageRejected(UNSUPPORTED_FORMAT, "This TIFF variant cannot be read "
                                                "(e.g. float, planar or 16-bit grey+alpha).")
    if other in _FORMATS.values():
        raise ImageRejected(CORRUPT_IMAGE, f"The file looks like {other.upper()} but cannot be read.")
    if other is not None:
        raise ImageRejected(UNSUPPORTED_FORMAT, f"{other.upper()} files are not accepted; "
                                                "send JPEG, PNG, TIFF, WebP or HEIC.")
    raise ImageRejected(NOT_AN_IMAGE, "The file is not an image.")


_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"), (b"\x00\x00\x02\x00", "cur"), (b"8BPS", "psd"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"), (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"\xff\x0a", "jpegxl"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jpegxl"), (b"%PDF", "pdf"),
    (b"%!PS", "postscript"), (b"\xc5\xd0\xd3\xc6", "postscript"), (b"qoif", "qoi"), (b"DDS ", "dds"),
    (b"farbfeld", "farbfeld"), (b"\x76\x2f\x31\x01", "openexr"), (b"#?RADIANCE", "hdr"),
    (b"gimp xcf", "xcf"), (b"icns", "icns"), (b"\x59\xa6\x6a\x95", "sun raster"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"msf1", b"mif2"}


def _sniff_format(data: bytes) -> str | None:
    """Image format named by the leading bytes, or None. Used only to word a rejection."""
    head = data[:64]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        brands = {head[i:i + 4] for i in range(8, min(len(head), 32), 4)}
        if brands & {b"avif", b"avis"}:
            return "avif"
        return "heif" if brands & _HEIF_BRANDS else None
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return "netpbm"
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "svg"
    return None


def _read_header(im: Image.Image, data: bytes, limits: DecodeLimits) -> ImageInfo:
    fmt = _FORMATS[im.format]
    w, h = _stored_size(im, fmt)
    if w <= 0 or h <= 0:
        raise ImageRejected(CORRUPT_IMAGE, f"The image header declares a {w}x{h} image.")
    if w * h > limits.max_pixels:
        raise ImageRejected(TOO_MANY_PIXELS, f"The image is {w}x{h} = {w * h / 1e6:.0f} MP; "
                                             f"the limit is {limits.max_pixels / 1e6:.0f} MP.")
    if im.mode not in _SUPPORTED_MODES:
        raise ImageRejected(UNSUPPORTED_FORMAT, f"Pixel mode {im.mode} ({fmt}) is not supported.")
    if fmt == "tiff" and _is_tiff_preview(im):
        raise ImageRejected(UNSUPPORTED_FORMAT, "This TIFF's first image is a reduced preview "
                                                "(a camera raw/DNG file?); send JPEG, PNG or TIFF.")
    orientation = _orientation(im, data, fmt)
    if orientation >= 5:
        w, h = h, w
    if min(w, h) < limits.min_side:
        raise ImageRejected(IMAGE_TOO_SMALL, f"The image is {w}x{h} px; at least {limits.min_side} px "
                                             "on the short side is needed.", retake=True)
    return ImageInfo(format=fmt, width=w, height=h, orientation=orientation, mode=im.mode,
                     has_icc=bool(im.info.get("icc_profile")), bits=_bits(im))


def _stored_size(im: Image.Image, fmt: str) -> tuple[int, int]:
    """(W, H) of the pixels as stored. Recent Pillow reports a TIFF's size already turned by its
    orientation tag (and turns the pixels on load); the IFD's own width/length are the stored size."""
    if fmt == "tiff":
        try:
            w, h = im.tag_v2[256], im.tag_v2[257]
            if isinstance(w, int) and isinstance(h, int):
                return w, h
        except (KeyError, AttributeError):
            pass
    return im.size


def _is_tiff_preview(im: Image.Image) -> bool:
    """NewSubfileType bit 0 (or a DNGVersion tag): the first IFD is a thumbnail of a raw file."""
    try:
        tags = im.tag_v2
        return bool(int(tags.get(254, 0)) & 1) or 50706 in tags
    except Exception:  # noqa: BLE001 - a broken tag is not a preview marker
        return False


def _bits(im: Image.Image) -> int:
    if im.mode == "1":
        return 1
    if im.mode.startswith("I;16") or _is_16bit_rgb(im):
        return 16
    return 32 if im.mode == "I" else 8


def _rawmode(im: Image.Image) -> str:
    try:
        args = im.tile[0][3]
    except (IndexError, TypeError, AttributeError):
        return ""
    raw = args if isinstance(args, str) else (args[0] if args else "")
    return raw if isinstance(raw, str) else ""


def _is_16bit_rgb(im: Image.Image) -> bool:
    """Pillow opens 16-bit RGB(A) PNG/TIFF as 8-bit modes; the tile's raw mode tells the truth."""
    return im.mode in ("RGB", "RGBA") and im.format in ("PNG", "TIFF") and ";16" in _rawmode(im)


def _orientation(im: Image.Image, data: bytes, fmt: str) -> int:
    """EXIF orientation 1-8; 1 when absent, unreadable or out of range, and for HEIF (libheif
    applies irot/imir itself and pillow-heif resets the EXIF tag, so applying it again would
    rotate twice)."""
    if fmt == "heif":
        return 1
    try:
        if fmt == "png":  # PngImageFile.getexif() decodes the image when eXIf follows IDAT
            exif = Image.Exif()
            raw = _png_chunk(data, b"eXIf")
            if raw:
                exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - broken EXIF must not reject a readable photo
        return 1
    return value if 1 <= value <= 8 else 1


def _png_chunks(data: bytes):
    """Yield (type, payload) of PNG chunks in order, by walking the length fields; stops at IEND
    or at the first chunk that does not fit in the file (then yields (None, b""))."""
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            break
        yield kind, data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length
    yield None, b""


def _png_chunk(data: bytes, ctype: bytes) -> bytes | None:
    """Payload of the first PNG chunk of type ``ctype``, or None."""
    return next((payload for kind, payload in _png_chunks(data) if kind == ctype), None)


def _png_well_formed(data: bytes) -> bool:
    """Every chunk fits in the file and IEND is reached."""
    return all(kind is not None for kind, _ in _png_chunks(data))


# --- pixels ----------------------------------------------------------------------------------

def _load(im: Image.Image, data: bytes, info: ImageInfo,
          target: tuple[int, int]) -> tuple[np.ndarray, str, bool]:
    """Decode pixels -> (array, mode, upright) with mode "L" (H, W), "RGB" (H, W, 3) or "CMYK"
    (H, W, 4), uint8, alpha already composited over white. JPEGs come back DCT-reduced towards
    ``target`` (W, H). ``upright``: the decoder already applied the orientation (Pillow does for
    TIFF since 8.x: it turns the pixels on load and drops the tag)."""
    if info.format == "jpeg" and im.mode == "RGB":
        pixels = _decode_jpeg_rgb(data, im.size, target)
        if pixels is not None:
            return pixels, "RGB", False
    tiff_tagged = info.format == "tiff" and info.orientation != 1
    try:
        if info.format == "jpeg" and target != im.size:
            # DCT scaling. Pillow picks the largest 1/s with s <= min(W // w, H // h): ask for the
            # floor size so that s == r (the ceil size would give s < r for odd sides); libjpeg
            # then returns ceil(W / s). The size is checked again by _resize_exact.
            w, h = im.size
            r = max(1, round(w / target[0]))
            im.draft(im.mode, (max(1, w // r), max(1, h // r)))
        im.load()  # first, even for 16-bit RGB: Pillow validates the file and detects truncation
        upright = tiff_tagged and 274 not in im.tag_v2
        pixels, mode = _pil_to_array(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(TOO_MANY_PIXELS, "The image declares too many pixels.") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a property of the file
        if _is_truncation(e) or (info.format == "jpeg" and not _jpeg_has_eoi(data)):
            raise ImageRejected(TRUNCATED_IMAGE, "The image file is incomplete (truncated).") from None
        raise ImageRejected(CORRUPT_IMAGE, f"The image data is corrupt ({type(e).__name__}: {e}).") from None
    if ImageFile.LOAD_TRUNCATED_IMAGES and info.format == "jpeg" and not _jpeg_has_eoi(data):
        # Someone switched Pillow's global to pad truncated files with grey; do not analyse that.
        raise ImageRejected(TRUNCATED_IMAGE, "The image file is incomplete (truncated).")
    if info.bits == 16 and im.mode in ("RGB", "RGBA"):
        # Pillow kept only the high byte. Only now, on a file Pillow read fully, is OpenCV given
        # the bytes: on hostile PNGs (a 3 GB chunk length) libpng-in-OpenCV spins for seconds.
        # Hence also the chunk walk: Pillow tolerates a wrong length on the last IDAT, OpenCV not.
        sane = info.format != "png" or _png_well_formed(data)
        arr = _decode_16bit_rgb(data) if sane else None
        arr_upright = None if arr is None else _same_image(arr, np.asarray(im), info.orientation, upright)
        if arr_upright is not None:
            return _composite_alpha(_scale16(arr)), "RGB", arr_upright
    return pixels, mode, upright


def _decode_jpeg_rgb(data: bytes, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray | None:
    """A colour JPEG decoded by libjpeg-turbo (simplejpeg) straight into an (H, W, 3) RGB array
    of ``target`` (W, H), pixels as stored (no orientation), DCT-reduced like Pillow's ``draft``.
    None sends the file to Pillow: for a reduction other than 1/1, 1/2, 1/4, 1/8, and for any
    file libjpeg has the least complaint about (``strict``: a warning is an error here), so that
    Pillow alone judges damaged files, as before.

    The pixels are Pillow's, bit for bit (tests/test_decode.py), without Pillow's copy of every
    pixel into a numpy array, which holds the GIL: a 12 MP decode takes 27 ms instead of 67 ms,
    and other threads run meanwhile."""
    r = max(1, round(size[0] / target[0]))
    if r not in REDUCTIONS or ImageFile.LOAD_TRUNCATED_IMAGES:
        return None
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, min_factor=r,
                                     min_width=target[0], min_height=target[1])
    except (ValueError, RuntimeError):   # libjpeg's complaint; Pillow words the error
        return None
    return arr if arr.shape == (target[1], target[0], 3) else None


def _pil_to_array(im: Image.Image) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(mode)
    elif mode in ("PA", "RGBa", "La"):
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode in ("RGBX", "YCbCr"):
        im, mode = im.convert("RGB"), "RGB"
    if mode == "I" or mode.startswith("I;16"):
        # "I" (32-bit) is taken as 16-bit data: it is how older Pillow opened 16-bit PNGs.
        return _scale16(np.clip(np.asarray(im), 0, 65535)), "L"
    arr = np.asarray(im)
    if mode in ("LA", "RGBA"):
        return _composite_alpha(arr), "L" if mode == "LA" else "RGB"
    return arr, mode


def _decode_16bit_rgb(data: bytes) -> np.ndarray | None:
    """16-bit RGB(A) PNG/TIFF at full precision via OpenCV, as (H, W, 3|4) uint16 RGB(A), or
    None when OpenCV cannot read it (the caller then keeps Pillow's 8 bits)."""
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    return arr[..., [2, 1, 0, 3][:arr.shape[2]]]  # BGR(A) -> RGB(A)


def _same_image(arr16: np.ndarray, high8: np.ndarray, orientation: int, pil_upright: bool) -> bool | None:
    """Is OpenCV's 16-bit array the picture Pillow decoded (``high8``: Pillow's high bytes)?

    Returns whether arr16 is upright, or None when it is not the same picture. OpenCV applies a
    TIFF's orientation tag even with IMREAD_UNCHANGED but not PNG EXIF; Pillow applies TIFF's on
    load: rather than trust either per version, compare the pixels.
    """
    hi = (arr16 >> 8).astype(np.uint8)
    if hi.shape == high8.shape and np.array_equal(hi, high8):
        return pil_upright
    if orientation != 1 and pil_upright and np.array_equal(apply_orientation(hi, orientation), high8):
        return False
    if orientation != 1 and not pil_upright and np.array_equal(hi, apply_orientation(high8, orientation)):
        return True
    return None


def _scale16(arr: np.ndarray) -> np.ndarray:
    """uint16-range integers 0-65535 -> uint8 round(v * 255 / 65535), i.e. v / 257 rounded."""
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _composite_alpha(arr: np.ndarray) -> np.ndarray:
    """(H, W, 2|4) uint8 with straight alpha last -> (H, W) or (H, W, 3) uint8 over white."""
    if arr.shape[-1] not in (2, 4):
        return arr
    colour = arr[..., :-1].astype(np.uint32)
    alpha = arr[..., -1:].astype(np.uint32)
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def _resize_exact(pixels: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Area-average (H, W[, C]) uint8 to exactly target = (W, H), pixels; no-op when equal."""
    if (pixels.shape[1], pixels.shape[0]) == target:
        return pixels
    return cv2.resize(np.ascontiguousarray(pixels), target, interpolation=cv2.INTER_AREA)


# --- colour ----------------------------------------------------------------------------------

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_PROFILE_SPACE = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}


def _to_srgb(pixels: np.ndarray, mode: str, icc: bytes | None, nclx: dict | None) -> tuple[np.ndarray, bool]:
    """(array, mode) from _load -> ((H, W, 3) uint8 sRGB, converted?).

    The embedded ICC profile wins over nclx; a profile that cannot be parsed, does not match the
    pixel mode, or is sRGB itself is ignored (the pixels are then taken as sRGB).
    """
    transform = _icc_transform(icc, mode) if icc else None
    if transform is None and nclx and mode == "RGB":
        profile = _nclx_profile(nclx)
        transform = _icc_transform(profile, "RGB") if profile else None
    if transform is not None:
        try:
            out = transform.apply(Image.fromarray(pixels, mode))
            return np.asarray(out), True
        except Exception:  # noqa: BLE001 - a profile LittleCMS accepts but cannot apply
            pass
    if mode == "L":
        return np.repeat(pixels[..., None], 3, axis=2), False
    if mode == "CMYK":  # no usable profile: Pillow's naive complement, what viewers do
        return np.asarray(Image.fromarray(pixels, "CMYK").convert("RGB")), False
    return pixels, False


@lru_cache(maxsize=32)
def _icc_transform(icc: bytes, mode: str):
    """LittleCMS transform embedded profile -> sRGB for ``mode`` pixels, or None when the profile
    is unusable or already sRGB. NOCACHE makes the cached transform safe to share across threads."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        if space != _PROFILE_SPACE.get(mode):
            return None
        if space == "RGB" and "srgb" in (profile.profile.profile_description or "").lower():
            return None
        return ImageCms.buildTransform(profile, _SRGB, mode, "RGB",
                                       renderingIntent=ImageCms.Intent.PERCEPTUAL,
                                       flags=ImageCms.Flags.NOCACHE)
    except Exception:  # noqa: BLE001 - garbage profiles are ignored, not fatal
        return None


# nclx transfer_characteristics (ITU-T H.273) -> ICC tone curve. BT.709-family curves are
# approximated by the sRGB curve (what phone encoders mean by them); PQ/HLG (HDR) are not handled.
_NCLX_TRANSFER = {1: "srgb", 6: "srgb", 13: "srgb", 14: "srgb", 15: "srgb", 4: 2.2, 5: 2.8, 8: 1.0}


def _nclx_profile(nclx: dict) -> bytes | None:
    """ICC profile equivalent to a HEIF nclx description, or None for sRGB/unspecified/HDR."""
    try:
        if int(nclx.get("color_primaries", 2)) in (1, 2):  # BT.709 = sRGB primaries, unspecified
            return None
        transfer = _NCLX_TRANSFER.get(int(nclx.get("transfer_characteristics", 13)))
        if transfer is None:
            return None
        xy = [(float(nclx[f"color_primary_{c}_x"]), float(nclx[f"color_primary_{c}_y"]))
              for c in ("red", "green", "blue", "white")]
        return _nclx_icc(tuple(xy), transfer)
    except (KeyError, TypeError, ValueError):
        return None


@lru_cache(maxsize=8)
def _nclx_icc(xy: tuple, transfer) -> bytes:
    return rgb_matrix_profile(xy[0], xy[1], xy[2], xy[3], transfer=transfer, description="nclx")


_D50 = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def rgb_to_xyz_matrix(red, green, blue, white) -> np.ndarray:
    """3x3 matrix linear RGB -> XYZ (Y of white = 1) from CIE xy chromaticities of the primaries
    and white point."""
    def xyz(p):
        x, y = p
        return np.array([x / y, 1.0, (1 - x - y) / y])
    prim = np.stack([xyz(red), xyz(green), xyz(blue)], axis=1)
    scale = np.linalg.solve(prim, xyz(white))
    return prim * scale


def rgb_matrix_profile(red, green, blue, white, *, transfer="srgb", description="custom RGB") -> bytes:
    """A minimal ICC v2 display profile (matrix + tone curves) as bytes.

    red, green, blue, white: CIE xy chromaticities. transfer: "srgb" for the sRGB curve or a
    gamma (float, e.g. 2.2). Colorants are Bradford-adapted to the D50 PCS as ICC requires.
    Pillow can only create sRGB/LAB/XYZ profiles; this covers Display P3, Adobe RGB, etc.
    """
    m = rgb_to_xyz_matrix(red, green, blue, white)
    src_white = m.sum(axis=1)
    cone_src, cone_dst = _BRADFORD @ src_white, _BRADFORD @ _D50
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_dst / cone_src) @ _BRADFORD
    colorants = adapt @ m  # columns: D50 XYZ of R, G, B

    def s15(v):
        return struct.pack(">i", int(round(float(v) * 65536)))

    def xyz_tag(v):
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    if transfer == "srgb":
        x = np.linspace(0, 1, 1024)
        y = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
        curve = b"curv\0\0\0\0" + struct.pack(">I", 1024) + np.round(y * 65535).astype(">u2").tobytes()
    else:
        curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(float(transfer) * 256))) + b"\0\0"
    text = description.encode("ascii", "replace")
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0"
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)
    cprt = b"text\0\0\0\0" + b"No copyright, use freely\0"
    tags = [(b"desc", desc), (b"cprt", cprt), (b"wtpt", xyz_tag(_D50)),
            (b"rXYZ", xyz_tag(colorants[:, 0])), (b"gXYZ", xyz_tag(colorants[:, 1])),
            (b"bXYZ", xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]

    table, body = [], b""
    offset = 128 + 4 + 12 * len(tags)
    shared: dict[bytes, int] = {}
    for sig, payload in tags:
        if payload not in shared:  # r/g/bTRC share one curve, as real profiles do
            shared[payload] = offset + len(body)
            body += payload + b"\0" * (-len(payload) % 4)
        table.append(struct.pack(">4sII", sig, shared[payload], len(payload)))
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s6H4s4sI4sIQI", size, b"\0" * 4, 0x02100000, b"mntr", b"RGB ",
                         b"XYZ ", 2024, 1, 1, 0, 0, 0, b"acsp", b"\0" * 4, 0, b"\0" * 4, 0, 0, 0)
    header += b"".join(s15(c) for c in _D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


# --- truncation ------------------------------------------------------------------------------

def _is_truncation(e: BaseException) -> bool:
    return isinstance(e, EOFError) or "truncated" in str(e).lower()


def _jpeg_has_eoi(data: bytes) -> bool:
    """True when an EOI marker follows the start of the primary image's scan data.

    Walks the marker segments so that an EXIF thumbnail's own EOI (inside APP1) does not count.
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # SOS: entropy-coded data; 0xFFD9 cannot occur in it except as EOI
            return data.find(b"\xff\xd9", pos) != -1
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False
