"""Tests for pipelines.decode. Every image is generated in code (numpy + Pillow into BytesIO)."""
from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, features

from pipelines import decode as d
from pipelines.decode import DecodeLimits, choose_reduction, decode_image, probe_image
from pipelines.errors import ImageRejected

ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06), (0.3127, 0.3290))
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.3127, 0.3290))
RED, GREEN = (255, 0, 0), (0, 255, 0)


# --- helpers -----------------------------------------------------------------------------------

def encode(img, fmt: str, **kw) -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def with_orientation(upright: np.ndarray, orientation: int) -> Image.Image:
    """The stored image a camera writes with this EXIF orientation for the given upright picture
    (Pillow's transposes, independent of the module's apply_orientation)."""
    inverse = {1: None, 3: Image.Transpose.ROTATE_180,
               6: Image.Transpose.ROTATE_90,    # stored turned counter-clockwise, shown turned CW
               8: Image.Transpose.ROTATE_270}[orientation]
    im = Image.fromarray(upright)
    return im if inverse is None else im.transpose(inverse)


def exif_bytes(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def marked_upright(h=80, w=120) -> np.ndarray:
    """Grey picture, red square top-left, green square top-right: any flip or turn moves them."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:20, :20] = RED
    a[:20, -20:] = GREEN
    return a


def assert_marked_upright(rgb: np.ndarray, tol: float = 12.0):
    assert np.abs(rgb[2:18, 2:18].reshape(-1, 3).mean(0) - RED).max() < tol
    assert np.abs(rgb[2:18, -18:-2].reshape(-1, 3).mean(0) - GREEN).max() < tol
    assert np.abs(rgb[-18:-2, 2:18].reshape(-1, 3).mean(0) - 128).max() < tol


def smooth_scene(h=600, w=800, seed=0) -> np.ndarray:
    """Smooth colour gradients plus soft blobs, uint8 RGB (a stand-in for skin)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([180 + 40 * np.sin(x / 97), 130 + 30 * np.cos(y / 71),
                     110 + 20 * np.sin((x + y) / 53)], -1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        base -= 40 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None] * np.array([0.5, 1, 1])
    return np.clip(base, 0, 255).astype(np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def srgb_reference(rgb8, primaries, gamma=None) -> np.ndarray:
    """Independent colour maths: RGB in a space with these xy primaries (D65 white), encoded
    with a pure gamma or (gamma=None) the sRGB curve -> sRGB uint8-scale floats."""
    v = np.asarray(rgb8, float) / 255
    lin = v ** gamma if gamma else np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    cols = [np.array([x / y, 1, (1 - x - y) / y]) for x, y in primaries]
    prim = np.stack(cols[:3], 1)
    m = prim * np.linalg.solve(prim, cols[3])
    srgb_to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]])
    out = np.clip(np.linalg.solve(srgb_to_xyz, m @ lin), 0, 1)
    enc = np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)
    return enc * 255


def rejected(data, **kw) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **kw)
    return info.value


# --- formats and pixel modes -------------------------------------------------------------------

COLOUR = (200, 120, 90)


@pytest.mark.parametrize("fmt,kw,tol", [
    ("JPEG", {"quality": 95}, 3), ("PNG", {}, 0), ("TIFF", {}, 0), ("TIFF", {"compression": "tiff_lzw"}, 0),
    ("WEBP", {"lossless": True}, 0), ("WEBP", {"quality": 90}, 6), ("HEIF", {"quality": -1}, 2),
    ("HEIF", {"quality": 90}, 6),
])
def test_formats_round_trip(fmt, kw, tol):
    a = np.empty((70, 90, 3), np.uint8)
    a[...] = COLOUR
    data = encode(a, fmt, **kw)
    out = decode_image(data)
    assert out.info.format == fmt.lower()
    assert (out.info.width, out.info.height, out.reduction) == (90, 70, 1)
    assert out.rgb.shape == (70, 90, 3) and out.rgb.dtype == np.uint8 and out.rgb.flags.c_contiguous
    assert not out.rgb.flags.writeable
    assert np.abs(out.rgb.astype(int) - COLOUR).max() <= tol
    assert not out.icc_converted
    assert out.sha256 == hashlib.sha256(data).hexdigest()


def test_mpo_is_read_as_jpeg():
    a = np.full((70, 90, 3), COLOUR, np.uint8)
    data = encode(Image.fromarray(a), "MPO", save_all=True, append_images=[Image.fromarray(a[::-1])],
                  quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = decode_image(data, reduction=2)
    assert out.info.format == "jpeg" and out.rgb.shape == (35, 45, 3)
    assert np.abs(out.rgb.astype(int) - COLOUR).max() <= 3


def test_grayscale_jpeg_and_png_become_three_equal_channels():
    g = np.tile(np.linspace(0, 255, 100).round().astype(np.uint8), (80, 1))
    for data in (encode(g, "PNG"), encode(g, "JPEG", quality=95)):
        out = decode_image(data)
        assert out.info.mode == "L" and out.rgb.shape == (80, 100, 3)
        assert (out.rgb == out.rgb[..., :1]).all()  # R == G == B
        assert np.abs(out.rgb[..., 0].astype(int) - g).max() <= 3


def gradient16(h=64, w=300) -> np.ndarray:
    """Every row 0..65535 across, plus values where the high byte and round(v/257) disagree."""
    g = np.tile(np.linspace(0, 65535, w).round().astype(np.uint16), (h, 1))
    g[0, :6] = [1000, 383, 65279, 129, 32895, 40000]
    return g


def test_16bit_gray_png_and_tiff_scale_by_257():
    g = gradient16()
    want = np.round(g / 257)
    for data in (encode(g, "PNG"), encode(g, "TIFF")):
        out = decode_image(data)
        assert out.info.mode.startswith("I;16") and out.info.bits == 16
        assert np.abs(out.rgb[..., 0] - want).max() <= 1
        # exact rounding, not clipping (Pillow's convert("L") clips: 1000 -> 255) nor v >> 8
        assert np.array_equal(out.rgb[..., 1], want.astype(np.uint8))


def test_16bit_rgb_png_and_tiff_keep_full_precision():
    g = gradient16()
    rgb16 = np.dstack([g, g[:, ::-1], np.full_like(g, 1000)])
    want = np.round(rgb16 / 257).astype(np.uint8)
    png = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))[1].tobytes()
    tif = cv2.imencode(".tiff", np.ascontiguousarray(rgb16[..., ::-1]))[1].tobytes()
    for data in (png, tif):
        assert Image.open(io.BytesIO(data)).mode == "RGB"  # Pillow alone would keep the high byte
        out = decode_image(data)
        assert out.info.bits == 16
        assert np.abs(out.rgb.astype(int) - want).max() <= 1
        assert np.array_equal(out.rgb, want)  # v >> 8 would be off by one for 1000 (3 vs 4)


def png_with_exif(png: bytes, orientation: int) -> bytes:
    """Insert an eXIf chunk just before IEND (after IDAT, where Pillow's getexif must load)."""
    iend = png.rfind(b"IEND") - 4
    return png[:iend] + png_chunk(b"eXIf", exif_bytes(orientation)) + png[iend:]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_rgb_with_orientation_keeps_precision_and_turns_once(fmt):
    up = marked_upright().astype(np.uint16) * 257
    up[40:60, 40:60] = 1000                       # -> 4 exactly; the high byte would give 3
    stored = np.ascontiguousarray(np.rot90(up, 1))  # orientation 6: stored turned counter-clockwise
    if fmt == "PNG":
        data = png_with_exif(cv2.imencode(".png", np.ascontiguousarray(stored[..., ::-1]))[1].tobytes(), 6)
    else:
        tifffile = pytest.importorskip("tifffile")
        buf = io.BytesIO()
        tifffile.imwrite(buf, stored, photometric="rgb", extratags=[(274, 3, 1, 6, True)])
        data = buf.getvalue()
    out = decode_image(data)
    assert out.info.orientation == 6 and out.info.bits == 16 and out.rgb.shape == (80, 120, 3)
    assert_marked_upright(out.rgb, tol=1)
    assert (out.rgb[42:58, 42:58] == 4).all()


def test_16bit_rgba_png_composites_over_white():
    a = np.zeros((64, 64, 4), np.uint16)
    a[..., 0], a[..., 3] = 65535, 32768   # red at ~50 % alpha
    data = cv2.imencode(".png", a[..., [2, 1, 0, 3]])[1].tobytes()
    out = decode_image(data)
    assert np.abs(out.rgb[0, 0].astype(int) - (255, 128, 128)).max() <= 1


def test_rgba_and_la_composite_over_white():
    a = np.zeros((64, 80, 4), np.uint8)
    a[..., :3] = (200, 100, 50)
    a[:, :40, 3] = 128   # half transparent
    a[:, 40:, 3] = 0     # fully transparent: white
    out = decode_image(encode(a, "PNG"))
    assert np.abs(out.rgb[0, 0].astype(int) - (227, 177, 152)).max() <= 1   # c*a + 255*(1-a)
    assert (out.rgb[:, 40:] == 255).all()
    la = np.dstack([np.full((64, 80), 100, np.uint8), np.full((64, 80), 64, np.uint8)])
    out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert abs(int(out.rgb[5, 5, 0]) - round(100 * 64 / 255 + 255 * 191 / 255)) <= 1


def test_palette_with_transparency():
    idx = np.zeros((64, 64), np.uint8)
    idx[:, 32:] = 1
    idx[:8] = 2
    im = Image.fromarray(idx, "P")
    im.putpalette([10, 200, 30, 240, 20, 60, 0, 0, 0] + [0] * 759)
    out = decode_image(encode(im, "PNG", transparency=2))
    assert out.info.mode == "P"
    assert tuple(out.rgb[20, 5]) == (10, 200, 30) and tuple(out.rgb[20, 50]) == (240, 20, 60)
    assert (out.rgb[:8] == 255).all()


def test_cmyk_jpeg_and_tiff():
    a = np.full((64, 64, 3), (200, 100, 50), np.uint8)
    cmyk = Image.fromarray(a).convert("CMYK")
    for data in (encode(cmyk, "JPEG", quality=95), encode(cmyk, "TIFF")):
        out = decode_image(data)
        assert out.info.mode == "CMYK"
        assert np.abs(out.rgb[10, 10].astype(int) - (200, 100, 50)).max() <= 3


def test_bilevel_image():
    a = np.zeros((64, 64), bool)
    a[:, 32:] = True
    out = decode_image(encode(Image.fromarray(a), "PNG"))
    assert (out.rgb[:, :32] == 0).all() and (out.rgb[:, 32:] == 255).all()


# --- EXIF orientation ------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_gives_upright_pixels(fmt, orientation):
    up = marked_upright()
    stored = with_orientation(up, orientation)
    if fmt == "TIFF":  # orientation lives in the TIFF's own IFD
        data = encode(stored, fmt, tiffinfo={274: orientation})
    else:
        data = encode(stored, fmt, exif=exif_bytes(orientation), **({"quality": 95} if fmt != "PNG" else {}))
    out = decode_image(data)
    assert out.info.orientation == orientation
    assert (out.info.height, out.info.width) == up.shape[:2] == out.rgb.shape[:2]
    assert_marked_upright(out.rgb)
    assert probe_image(data) == out.info


def test_orientation_applied_after_reduction():
    up = marked_upright(160, 240)
    data = encode(with_orientation(up, 6), "JPEG", exif=exif_bytes(6), quality=95)
    out = decode_image(data, reduction=2)
    assert out.rgb.shape == (80, 120, 3)
    # the 20 px squares are 10 px now
    assert np.abs(out.rgb[1:9, 1:9].reshape(-1, 3).mean(0) - RED).max() < 12
    assert np.abs(out.rgb[1:9, -9:-1].reshape(-1, 3).mean(0) - GREEN).max() < 12


def test_heif_orientation_is_applied_once():
    up = marked_upright()
    data = encode(with_orientation(up, 6), "HEIF", exif=exif_bytes(6), quality=-1)
    out = decode_image(data)
    assert out.info.orientation == 1   # libheif returns upright pixels; not turned a second time
    assert out.rgb.shape[:2] == up.shape[:2]
    assert_marked_upright(out.rgb)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(orientation):
    a = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    im = Image.open(io.BytesIO(encode(a, "PNG", exif=exif_bytes(orientation))))
    assert np.array_equal(d.apply_orientation(a, orientation), np.asarray(ImageOps.exif_transpose(im)))


def test_invalid_orientation_value_is_ignored():
    data = encode(marked_upright(), "JPEG", exif=exif_bytes(9), quality=95)
    out = decode_image(data)
    assert out.info.orientation == 1
    assert_marked_upright(out.rgb)


# --- colour management -----------------------------------------------------------------------

SKIN_AND_SATURATED = np.array([[200, 150, 120], [230, 60, 50], [90, 160, 80], [128, 128, 128]], np.uint8)


def patches(colours, size=64) -> np.ndarray:
    return np.repeat(np.repeat(colours[None], size, 0), size, 1)


def patch_means(rgb, n, size=64) -> np.ndarray:
    return np.array([rgb[4:size - 4, i * size + 4:(i + 1) * size - 4].reshape(-1, 3).mean(0)
                     for i in range(n)])


def test_built_profile_is_a_real_icc_profile():
    from PIL import ImageCms
    prof = ImageCms.ImageCmsProfile(io.BytesIO(d.rgb_matrix_profile(*ADOBE_RGB, transfer=563 / 256,
                                                                    description="Adobe RGB like")))
    assert prof.profile.profile_description == "Adobe RGB like"
    # Adobe RGB (1998) red colorant, D50-adapted, as published in Adobe's profile
    assert np.allclose(prof.profile.red_colorant[0], (0.6097, 0.3111, 0.0195), atol=5e-4)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "JPEG"])
def test_adobe_rgb_profile_is_converted_to_srgb(fmt):
    icc = d.rgb_matrix_profile(*ADOBE_RGB, transfer=563 / 256, description="Adobe RGB like")
    src = patches(SKIN_AND_SATURATED)
    kw = {"quality": 98, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    data = encode(src, fmt, icc_profile=icc, **kw)
    out = decode_image(data)
    assert out.info.has_icc and out.icc_converted
    got = patch_means(out.rgb, len(SKIN_AND_SATURATED))
    # reference from the file's own (lossy-coded) numbers: near black the sRGB curve is so steep
    # that one input level moves the output by several
    stored = patch_means(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), len(SKIN_AND_SATURATED))
    want = srgb_reference(stored.T, ADOBE_RGB, gamma=563 / 256).T
    assert np.abs(got - want).max() <= 3
    # direction: the same numbers mean more saturated colours in the wider Adobe RGB, so the sRGB
    # numbers spread further apart (skin: red up by ~17); green leaves the sRGB gamut (red -> 0)
    skin_in, skin_out = SKIN_AND_SATURATED[0].astype(int), got[0]
    assert skin_out[0] - skin_in[0] > 10 and np.ptp(skin_out) > np.ptp(skin_in) + 10
    assert got[2][0] < 10
    assert np.ptp(got[3]) <= 2 and abs(got[3].mean() - 128) <= 2


def test_display_p3_in_jpeg_and_heif_nclx():
    src = patches(SKIN_AND_SATURATED)
    icc = d.rgb_matrix_profile(*DISPLAY_P3, description="Display P3")
    jpeg = encode(src, "JPEG", icc_profile=icc, quality=98, subsampling=0)
    heif_nclx = encode(src, "HEIF", quality=-1, color_primaries=12, transfer_characteristics=13,
                       matrix_coefficients=6, full_range_flag=1)
    for data, tol in ((jpeg, 3), (heif_nclx, 4)):
        out = decode_image(data)
        assert out.icc_converted
        stored = patch_means(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), 4)
        want = srgb_reference(stored.T, DISPLAY_P3).T
        assert np.abs(patch_means(out.rgb, 4) - want).max() <= tol
        assert patch_means(out.rgb, 4)[1][0] > 245  # P3 (230, 60, 50) is a red sRGB barely holds


def test_srgb_profile_and_mismatched_profile_are_left_alone():
    from PIL import ImageCms
    src = patches(SKIN_AND_SATURATED)
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = decode_image(encode(src, "PNG", icc_profile=srgb_icc))
    assert out.info.has_icc and not out.icc_converted and np.array_equal(out.rgb, src)
    gray = np.full((64, 64), 90, np.uint8)  # an RGB profile on a grey image is ignored, not fatal
    out = decode_image(encode(gray, "PNG", icc_profile=d.rgb_matrix_profile(*ADOBE_RGB)))
    assert not out.icc_converted and (out.rgb == 90).all()
    out = decode_image(encode(src, "PNG", icc_profile=b"not a profile at all" * 10))
    assert not out.icc_converted and np.array_equal(out.rgb, src)


# --- reduced decode --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_reduced_sizes_are_exact_ceilings(fmt):
    a = smooth_scene(301, 403)
    data = encode(a, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    for r in (1, 2, 4, 8):
        out = decode_image(data, reduction=r)
        assert out.reduction == r
        assert out.rgb.shape == (-(-301 // r), -(-403 // r), 3)
        assert (out.info.width, out.info.height) == (403, 301)  # info stays full resolution


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_reducing_a_full_decode_gives_the_reduced_decode(fmt, orientation):
    """Formats other than JPEG decode whole whatever the reduction, so the analysis decodes them
    once and reduces the pixels: the same pixels as a reduced decode (to a rounding, for a turned
    photo of odd size)."""
    stored = with_orientation(smooth_scene(301, 403), orientation)
    kw = {"tiffinfo": {274: orientation}} if fmt == "TIFF" else {"exif": exif_bytes(orientation)}
    data = encode(stored, fmt, **kw)
    full = decode_image(data)
    for r in (1, 2, 4, 8):
        got = d.reduce_decoded(full, r)
        want = decode_image(data, reduction=r)
        assert got.reduction == r and got.info == want.info and got.sha256 == want.sha256
        if orientation == 1:
            assert np.array_equal(got.rgb, want.rgb)
        else:   # turned before or after an area average of odd sizes: a rare rounding apart
            assert np.abs(got.rgb.astype(int) - want.rgb).max() <= 1 and np.mean(got.rgb != want.rgb) < 1e-3
        assert not got.rgb.flags.writeable
    with pytest.raises(ValueError):
        d.reduce_decoded(d.reduce_decoded(full, 2), 2)     # only a full decode is reduced
    with pytest.raises(ValueError):
        d.reduce_decoded(full, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_reduced_content_matches_downscaled_full_decode(fmt):
    data = encode(smooth_scene(), fmt, quality=92)
    full = decode_image(data).rgb
    for r in (2, 4, 8):
        small = decode_image(data, reduction=r).rgb
        ref = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(float) - ref).mean() < 1.5
        assert np.abs(small.astype(float) - ref).max() < 40


@pytest.mark.parametrize("w,h,r,want", [(800, 600, 4, (200, 150)), (803, 601, 4, (201, 151)),
                                        (803, 601, 8, (101, 76)), (803, 601, 2, (402, 301))])
@pytest.mark.parametrize("fast", [True, False], ids=["simplejpeg", "pillow"])
def test_jpeg_reduction_uses_dct_scaling(monkeypatch, w, h, r, want, fast):
    if not fast:
        monkeypatch.setattr(d, "_decode_jpeg_rgb", lambda *a: None)
    resized = []
    real_resize = d.cv2.resize
    monkeypatch.setattr(d.cv2, "resize", lambda *a, **k: resized.append(1) or real_resize(*a, **k))
    out = decode_image(encode(smooth_scene(h, w), "JPEG"), reduction=r)
    assert out.rgb.shape == (want[1], want[0], 3)
    assert resized == []  # libjpeg decodes straight to ceil(size / r): no resize afterwards


def pillow_jpeg_decode(data: bytes, r: int) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    if r > 1:
        im.draft("RGB", (im.size[0] // r, im.size[1] // r))
    return np.asarray(im.convert("RGB"))


@pytest.fixture
def fast_path(monkeypatch):
    """One entry per decode: did simplejpeg's fast path deliver the pixels?"""
    delivered = []
    real = d._decode_jpeg_rgb

    def spy(*args):
        pixels = real(*args)
        delivered.append(pixels is not None)
        return pixels
    monkeypatch.setattr(d, "_decode_jpeg_rgb", spy)
    return delivered


@pytest.mark.parametrize("kw", [dict(subsampling=0), dict(subsampling=1), dict(subsampling=2),
                                dict(subsampling=2, progressive=True), dict(subsampling=2, quality=60)],
                         ids=["444", "422", "420", "progressive", "q60"])
@pytest.mark.parametrize("r", [1, 2, 4, 8])
def test_simplejpeg_decode_is_pillows_bit_for_bit(fast_path, kw, r):
    """Colour JPEGs take simplejpeg's decoder (no copy out of Pillow): the same pixels, every one."""
    data = encode(smooth_scene(601, 803, seed=r), "JPEG", **kw)
    out = decode_image(data, reduction=r)
    assert fast_path == [True]
    np.testing.assert_array_equal(out.rgb, pillow_jpeg_decode(data, r))


def test_jpeg_falls_back_to_pillow_when_simplejpeg_refuses_it(monkeypatch):
    data = encode(smooth_scene(300, 400), "JPEG")

    def refuse(*args, **kwargs):
        raise ValueError("simplejpeg refuses")
    monkeypatch.setattr(d.simplejpeg, "decode_jpeg", refuse)
    np.testing.assert_array_equal(decode_image(data, reduction=2).rgb, pillow_jpeg_decode(data, 2))


def test_bad_reduction_is_a_programming_error():
    with pytest.raises(ValueError):
        decode_image(encode(smooth_scene(80, 80), "PNG"), reduction=3)


@pytest.mark.parametrize("full,needed,want", [(20, 5, 4), (20, 2.5, 8), (20, 2.6, 4), (16, 2, 8),
                                              (10, 10, 1), (3, 5, 1), (12, 5.9, 2)])
def test_choose_reduction(full, needed, want):
    assert choose_reduction(full, needed) == want


@pytest.mark.parametrize("bad", [(0, 5), (5, 0), (float("nan"), 1), (1, float("inf")), (-3, 1)])
def test_choose_reduction_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        choose_reduction(*bad)


# --- guards ------------------------------------------------------------------------------------

def huge_png_header(w=30000, h=30000) -> bytes:
    """A 100-byte PNG whose IHDR claims w x h RGB pixels; the data is a few bytes of zlib."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + png_chunk(b"IEND", b""))


def huge_jpeg_header(w=30000, h=30000) -> bytes:
    data = bytearray(encode(smooth_scene(64, 64), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


@pytest.fixture
def no_pixel_decode(monkeypatch):
    """Fails the test if any Pillow plugin starts decoding pixels."""
    calls = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(self.format) or real(self))
    return calls


@pytest.mark.parametrize("make", [huge_png_header, huge_jpeg_header])
def test_header_claiming_30000_square_is_refused_without_decoding(make, no_pixel_decode):
    data = make()
    assert len(data) < 2000
    t0 = time.perf_counter()
    err = rejected(data)
    assert err.code == d.TOO_MANY_PIXELS and not err.retake
    assert time.perf_counter() - t0 < 0.5
    assert no_pixel_decode == []


def test_our_pixel_limit_is_checked_from_the_header(no_pixel_decode):
    # 9000 x 9000 = 81 MP: above our 80 MP default, below Pillow's own warning threshold
    for data in (huge_png_header(9000, 9000), huge_jpeg_header(9000, 9000)):
        assert rejected(data).code == d.TOO_MANY_PIXELS
        assert probe_image(data, limits=DecodeLimits(max_pixels=90_000_000)).width == 9000
    assert no_pixel_decode == []
    small = encode(smooth_scene(100, 100), "PNG")
    assert rejected(small, limits=DecodeLimits(max_pixels=9_999)).code == d.TOO_MANY_PIXELS


def test_pillow_bomb_error_is_converted_even_with_a_generous_limit():
    err = rejected(huge_png_header(), limits=DecodeLimits(max_pixels=10**10))
    assert err.code == d.TOO_MANY_PIXELS


def test_pillow_bomb_warning_raised_as_error_is_converted():
    # 9500 x 9500 = 90 MP: above Pillow's warning threshold (89.5 MP), within a raised limit of ours
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        err = rejected(huge_png_header(9500, 9500), limits=DecodeLimits(max_pixels=100_000_000))
    assert err.code == d.TOO_MANY_PIXELS


def test_pillow_globals_are_untouched():
    before = Image.MAX_IMAGE_PIXELS
    decode_image(encode(smooth_scene(80, 80), "JPEG"))
    assert Image.MAX_IMAGE_PIXELS == before and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_file_too_large_is_refused_before_parsing():
    data = encode(smooth_scene(80, 80), "PNG")
    err = rejected(data, limits=DecodeLimits(max_bytes=len(data) - 1))
    assert err.code == d.FILE_TOO_LARGE
    assert rejected(b"x" * 2000, limits=DecodeLimits(max_bytes=1000)).code == d.FILE_TOO_LARGE


def test_tiny_image_asks_for_a_retake():
    err = rejected(encode(smooth_scene(40, 300), "JPEG"))
    assert err.code == d.IMAGE_TOO_SMALL and err.retake
    # the short side is judged upright: a 300x40 stored image rotated by EXIF is still too small
    assert rejected(encode(smooth_scene(300, 40), "JPEG", exif=exif_bytes(6))).code == d.IMAGE_TOO_SMALL
    assert decode_image(encode(smooth_scene(64, 64), "PNG")).rgb.shape == (64, 64, 3)


def test_empty_text_and_random_bytes():
    assert rejected(b"").code == d.EMPTY_FILE
    assert rejected(bytearray()).code == d.EMPTY_FILE
    text = "Patient: Jane Doe\nNotes: first session, forehead lines.\n".encode() * 20
    assert rejected(text).code == d.NOT_AN_IMAGE
    rng = np.random.default_rng(7)
    for _ in range(20):
        assert rejected(rng.bytes(int(rng.integers(1, 5000)))).code == d.NOT_AN_IMAGE
    with pytest.raises(TypeError):
        decode_image("not bytes")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "ICO", "PPM", "JPEG2000", "AVIF"])
def test_other_image_formats_are_unsupported(fmt):
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("Pillow built without AVIF")
    if fmt == "JPEG2000" and not features.check("jpg_2000"):
        pytest.skip("Pillow built without OpenJPEG")
    err = rejected(encode(smooth_scene(80, 80), fmt))
    assert err.code == d.UNSUPPORTED_FORMAT and not err.retake


def test_raw_preview_tiff_is_unsupported():
    data = encode(smooth_scene(80, 120), "TIFF", tiffinfo={254: 1})  # NewSubfileType: reduced image
    assert rejected(data).code == d.UNSUPPORTED_FORMAT


def test_truncated_jpeg():
    data = encode(smooth_scene(), "JPEG", quality=90)
    for cut in (len(data) // 2, len(data) - 50, 400):
        err = rejected(data[:cut])
        assert err.code == d.TRUNCATED_IMAGE and not err.retake


def test_truncated_jpeg_is_caught_even_if_someone_enables_load_truncated(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(smooth_scene(), "JPEG", quality=90)
    assert rejected(data[:len(data) // 2]).code == d.TRUNCATED_IMAGE
    assert decode_image(data).rgb.shape == (600, 800, 3)  # complete files still pass


def test_truncated_png():
    data = encode(smooth_scene(), "PNG")
    assert rejected(data[:len(data) // 2]).code == d.TRUNCATED_IMAGE


def test_corrupt_png_data_is_corrupt_image():
    data = bytearray(encode(smooth_scene(200, 200), "PNG"))
    idat = data.find(b"IDAT")
    data[idat + 20:idat + 60] = b"\xaa" * 40
    assert rejected(bytes(data)).code == d.CORRUPT_IMAGE


def test_exif_thumbnail_eoi_does_not_hide_truncation():
    thumb = encode(smooth_scene(40, 40), "JPEG")
    assert d._jpeg_has_eoi(encode(smooth_scene(), "JPEG"))
    full = encode(smooth_scene(), "JPEG", exif=b"Exif\0\0" + thumb)  # an EOI inside APP1
    assert d._jpeg_has_eoi(full) and not d._jpeg_has_eoi(full[:len(full) // 2])


# --- probe -------------------------------------------------------------------------------------

def test_probe_reads_headers_without_decoding(no_pixel_decode):
    up = marked_upright()
    stored = with_orientation(up, 6)
    # PNG with the eXIf chunk after IDAT: Pillow's getexif() would decode the image to find it
    late_exif = png_with_exif(encode(stored, "PNG"), 6)
    cases = [encode(stored, "JPEG", exif=exif_bytes(6)), late_exif, encode(stored, "TIFF", tiffinfo={274: 6}),
             encode(stored, "WEBP", exif=exif_bytes(6))]
    for data in cases:
        info = probe_image(data)
        assert (info.width, info.height, info.orientation) == (120, 80, 6)
    heif = probe_image(encode(up, "HEIF"))
    assert (heif.format, heif.width, heif.height) == ("heif", 120, 80)
    assert no_pixel_decode == []
    assert_marked_upright(decode_image(late_exif).rgb)


# --- fuzz ----------------------------------------------------------------------------------------

def fuzz_seeds() -> list[bytes]:
    a = smooth_scene(96, 96, seed=3)
    g16 = (a[..., 0].astype(np.uint16) * 257)
    return [encode(a, "JPEG", quality=80, exif=exif_bytes(6)), encode(a, "JPEG", progressive=True),
            encode(a, "PNG"), encode(g16, "PNG"), encode(a, "TIFF", compression="tiff_adobe_deflate"),
            encode(a, "WEBP", quality=80), encode(a, "HEIF", quality=70)]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken EXIF it meets
def test_fuzz_truncations_and_bit_flips_never_escape():
    rng = np.random.default_rng(2024)
    outcomes = {}
    t0 = time.perf_counter()
    for seed in fuzz_seeds():
        for i in range(40):
            buf = bytearray(seed)
            if i % 2:
                buf = buf[:int(rng.integers(0, len(buf)))]
            else:
                for pos in rng.integers(0, len(buf), int(rng.integers(1, 8))):
                    buf[pos] ^= 1 << int(rng.integers(0, 8))
            try:
                out = decode_image(bytes(buf), reduction=int(rng.choice([1, 2])))
            except ImageRejected as e:
                assert e.code in d.REASON_CODES
                outcomes[e.code] = outcomes.get(e.code, 0) + 1
            else:
                h, w = out.rgb.shape[:2]
                assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3
                assert (h, w) == (-(-out.info.height // out.reduction), -(-out.info.width // out.reduction))
                outcomes["ok"] = outcomes.get("ok", 0) + 1
    assert time.perf_counter() - t0 < 10
    assert outcomes.get("ok", 0) > 0 and outcomes.get(d.TRUNCATED_IMAGE, 0) > 0


def test_a_jpeg_libjpeg_complains_about_is_left_to_pillow(fast_path):
    """Damaged scan data: simplejpeg (strict) refuses, Pillow decodes it as before."""
    rng = np.random.default_rng(0)
    clean = encode(smooth_scene(300, 400), "JPEG")
    for _ in range(50):
        data = bytearray(clean)
        for i in rng.integers(1000, len(data) - 2, size=3):
            data[i] = rng.integers(0, 256)
        data = bytes(data)
        try:
            want = pillow_jpeg_decode(data, 1)
        except OSError:
            continue
        fast_path.clear()
        got = decode_image(data).rgb
        if fast_path == [False]:
            np.testing.assert_array_equal(got, want)
            return
    pytest.fail("no damaged JPEG that Pillow reads and libjpeg complains about was found")
