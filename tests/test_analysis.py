"""The flow of one photo, end to end: the documented outcome for each kind of input."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.analysis import SCHEMA, Analyzer
from pipelines.errors import ImageRejected
from pipelines.regions import REGION_NAMES
from tests.conftest import read_tem

ROOT = Path(__file__).resolve().parents[1]


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _encode(rgb: np.ndarray, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def baseline(analyzer, render_bytes):
    return analyzer.analyze(render_bytes).document


def _eyes(doc) -> np.ndarray:
    lm = doc["face"]["landmarks"]
    return np.array([lm["left_eye"], lm["right_eye"]])


def _ipd(doc) -> float:
    return float(np.hypot(*np.subtract(*_eyes(doc))))


def test_document_shape(baseline, render_bytes):
    doc = baseline
    assert json.loads(json.dumps(doc)) == doc     # plain JSON types only (no numpy scalars)
    assert doc["schema"] == SCHEMA
    img = _rgb(render_bytes)
    assert (doc["image"]["width"], doc["image"]["height"]) == (img.shape[1], img.shape[0])
    assert doc["image"]["format"] == "jpeg"
    assert len(doc["image"]["sha256"]) == 64
    assert doc["quality"]["status"] in ("ok", "warn")
    assert set(doc["regions"]) == set(REGION_NAMES)
    lm = doc["face"]["landmarks"]
    # Subject's left eye is on the image's right; eyes above nose above mouth.
    assert lm["left_eye"][0] > lm["right_eye"][0]
    assert lm["mouth_left"][0] > lm["mouth_right"][0]
    assert max(lm["left_eye"][1], lm["right_eye"][1]) < lm["nose"][1] < min(lm["mouth_left"][1], lm["mouth_right"][1])
    # px/mm is the IPD over 63 mm.
    assert doc["face"]["px_per_mm"] == pytest.approx(_ipd(doc) / 63.0, rel=1e-3)
    for name, region in doc["regions"].items():
        assert region["area_cm2"] > 0.5, name
        poly = np.array(region["polygon"])
        x, y, w, h = doc["face"]["box"]
        centre = poly.mean(axis=0)   # regions sit on the face, not elsewhere in the photo
        assert x - 0.2 * w < centre[0] < x + 1.2 * w and y - 0.2 * h < centre[1] < y + 1.3 * h, name


def test_region_areas_are_anatomical(baseline):
    r = baseline["regions"]
    assert 15 < r["forehead"]["area_cm2"] < 45
    assert r["forehead"]["area_cm2"] > r["glabella"]["area_cm2"]
    for side in ("left", "right"):
        assert 4 < r[f"cheek_{side}"]["area_cm2"] < 20
    pair = [r["cheek_left"]["area_cm2"], r["cheek_right"]["area_cm2"]]
    assert min(pair) / max(pair) > 0.6


@pytest.mark.parametrize("orientation, transpose", [
    (3, Image.Transpose.ROTATE_180),
    (6, Image.Transpose.ROTATE_90),     # stored turned 90 ccw; viewer turns it 90 cw
    (8, Image.Transpose.ROTATE_270),
])
def test_exif_orientation_gives_upright_coordinates(analyzer, render_bytes, baseline, orientation, transpose):
    img = Image.open(io.BytesIO(render_bytes))
    stored = img.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    doc = analyzer.analyze(_encode(np.asarray(stored), exif=exif.tobytes(), quality=92)).document
    assert doc["image"]["exif_orientation"] == orientation
    assert (doc["image"]["width"], doc["image"]["height"]) == (baseline["image"]["width"], baseline["image"]["height"])
    assert doc["image"]["rotation_applied_deg"] == 0
    err = np.abs(_eyes(doc) - _eyes(baseline)).max()
    assert err < 0.05 * _ipd(baseline)


def test_upside_down_photo_is_turned_and_mapped_back(analyzer, render_bytes, baseline):
    rgb = _rgb(render_bytes)
    flipped = np.ascontiguousarray(rgb[::-1, ::-1])
    doc = analyzer.analyze(_encode(flipped, quality=92)).document
    assert doc["image"]["rotation_applied_deg"] == 180
    assert "orientation_corrected" in [i["code"] for i in doc["quality"]["issues"]]
    h, w = rgb.shape[:2]
    expected = np.array([[w - 1 - x, h - 1 - y] for x, y in _eyes(baseline)])
    assert np.abs(_eyes(doc) - expected).max() < 0.05 * _ipd(baseline)
    assert abs(doc["face"]["roll_deg"] - baseline["face"]["roll_deg"]) < 3.0


def test_sideways_photo_without_tag_is_turned(analyzer, render_bytes, baseline):
    rgb = _rgb(render_bytes)
    doc = analyzer.analyze(_encode(np.ascontiguousarray(np.rot90(rgb, 1)), quality=92)).document
    assert doc["image"]["rotation_applied_deg"] in (90, 270)
    assert _ipd(doc) == pytest.approx(_ipd(baseline), rel=0.05)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_photo_matches_eight_bit(analyzer, render_bytes, baseline, fmt):
    rgb16 = _rgb(render_bytes).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tiff", rgb16[..., ::-1])
    assert ok
    doc = analyzer.analyze(buf.tobytes()).document
    assert doc["image"]["format"] == fmt.lower()
    assert np.abs(_eyes(doc) - _eyes(baseline)).max() < 0.03 * _ipd(baseline)
    assert doc["quality"]["skin_l_median"] == pytest.approx(baseline["quality"]["skin_l_median"], abs=1.5)


def test_rgba_photo_is_analysed(analyzer, render_bytes, baseline):
    rgb = _rgb(render_bytes)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    doc = analyzer.analyze(_encode(rgba, "PNG")).document
    assert np.abs(_eyes(doc) - _eyes(baseline)).max() < 0.03 * _ipd(baseline)


def test_grayscale_photo_is_refused(analyzer, render_bytes):
    grey = np.asarray(Image.open(io.BytesIO(render_bytes)).convert("L"))
    with pytest.raises(ImageRejected) as exc:
        analyzer.analyze(_encode(grey))
    assert exc.value.code == "grayscale_image" and exc.value.retake
    with pytest.raises(ImageRejected) as exc:   # grey content stored as RGB
        analyzer.analyze(_encode(np.dstack([grey] * 3)))
    assert exc.value.code == "grayscale_image"


def test_colour_is_judged_on_the_face_not_the_backdrop():
    """A colour face on a wide neutral backdrop is a colour photo; a grey face is not, whatever
    surrounds it."""
    from pipelines.analysis import _require_colour
    from pipelines.decode import DecodedImage, ImageInfo
    from pipelines.face_detection import FaceDetection

    canvas = np.full((1000, 2000, 3), 128, np.uint8)            # neutral grey: no colour at all
    canvas[400:500, 900:1000] = (200, 150, 120)                   # a small skin-coloured face
    info = ImageInfo("jpeg", 4000, 2000, 1, "RGB", False)
    decoded = DecodedImage(canvas, info, 2, "0" * 64, False)    # a 1/2 decode: the box is in full px
    face = FaceDetection(box=(1800.0, 800.0, 200.0, 200.0), confidence=1.0, landmarks={})
    whole = canvas.astype(np.int16)
    assert np.abs(whole[..., 0] - whole[..., 1]).mean() < 1.0   # the whole photo looks grey
    _require_colour(decoded, face)                               # but the face is in colour
    grey_face = DecodedImage(np.full_like(canvas, 128), info, 2, "0" * 64, False)
    with pytest.raises(ImageRejected) as exc:
        _require_colour(grey_face, face)
    assert exc.value.code == "grayscale_image"


def _jpeg_header_claiming(width: int, height: int) -> bytes:
    """A small, valid JPEG whose SOF0 header is patched to claim width x height."""
    data = bytearray(_encode(np.zeros((16, 16, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("make, code", [
    (lambda b: b"", "empty_file"),
    (lambda b: b"Patient notes: not an image at all.\n" * 20, "not_an_image"),
    (lambda b: b[: len(b) // 2], "truncated_image"),
    (lambda b: _encode(np.full((40, 40, 3), 128, np.uint8)), "image_too_small"),
    (lambda b: _jpeg_header_claiming(30000, 30000), "too_many_pixels"),
])
def test_bad_files_are_refused_with_a_code(analyzer, render_bytes, make, code):
    with pytest.raises(ImageRejected) as exc:
        analyzer.analyze(make(render_bytes))
    assert exc.value.code == code
    assert exc.value.message


def test_photo_without_face(analyzer):
    from pipelines.synthetic.skin import skin_patch

    with pytest.raises(ImageRejected) as exc:
        analyzer.analyze(_encode(skin_patch((900, 1200), 5.0, seed=3)))
    assert exc.value.code == "no_face" and exc.value.retake


def test_two_faces_analyse_the_larger_central_one(analyzer, render_bytes, baseline):
    rgb = _rgb(render_bytes)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w + w // 3, 3), 200, np.uint8)
    canvas[:, :w] = rgb
    canvas[h // 3:h // 3 + small.shape[0], w:] = small
    doc = analyzer.analyze(_encode(canvas, quality=92)).document
    assert len(doc["face"]["others"]) == 1
    assert "multiple_faces" in [i["code"] for i in doc["quality"]["issues"]]
    assert np.abs(_eyes(doc) - _eyes(baseline)).max() < 0.03 * _ipd(baseline)
    other = doc["face"]["others"][0]["box"]
    assert other[0] > w * 0.95


def test_blurred_photo_is_rejected_with_retake_advice(analyzer, render_bytes):
    rgb = _rgb(render_bytes)
    blurred = cv2.GaussianBlur(rgb, (0, 0), 12)
    with pytest.raises(ImageRejected) as exc:
        analyzer.analyze(_encode(blurred))
    assert exc.value.code == "blurred" and exc.value.retake
    assert exc.value.details["quality"]["status"] == "reject"


def test_dark_photo_is_flagged(analyzer, render_bytes):
    dark = (_rgb(render_bytes).astype(np.float32) * 0.18).astype(np.uint8)
    try:
        doc = analyzer.analyze(_encode(dark, quality=95)).document
        codes = [i["code"] for i in doc["quality"]["issues"]]
    except ImageRejected as exc:
        codes = [exc.code]
    assert "too_dark" in codes


def test_landmarks_on_annotated_dev_photos(analyzer, dev_photos):
    errors = []
    for photo in dev_photos:
        doc = analyzer.analyze(photo.read_bytes()).document
        tem = read_tem(photo.with_suffix(".tem"))
        truth = np.array([tem[1], tem[0]])          # subject's left pupil = image right = point 1
        ipd = float(np.hypot(*(tem[1] - tem[0])))
        errors.append(np.hypot(*(_eyes(doc) - truth).T) / ipd)
    errors = np.concatenate(errors)
    assert errors.mean() < 0.05
    assert errors.max() < 0.10


def test_a_png_is_decoded_once(analyzer, render_bytes, baseline, monkeypatch):
    """PNG, TIFF and HEIF decode whole whatever the reduction: the face is found on the full
    decode reduced in memory, not on a second decode, with the same result."""
    import pipelines.analysis as analysis

    ok, buf = cv2.imencode(".png", _rgb(render_bytes)[..., ::-1])
    calls = []
    real = analysis.decode_image
    monkeypatch.setattr(analysis, "decode_image", lambda *a, **k: calls.append(k.get("reduction", 1)) or real(*a, **k))
    doc = analyzer.analyze(buf.tobytes()).document
    assert calls == [1]
    assert doc["image"]["format"] == "png" and doc["image"]["decode_reduction"] == 1
    assert np.abs(_eyes(doc) - _eyes(baseline)).max() < 0.03 * _ipd(baseline)


@pytest.mark.parametrize("of_gate", [0.85, 0.25])
def test_a_face_under_the_resolution_gate_is_found_and_called_too_small(of_gate):
    """The detector first skips faces too small to pass the gate, but not those just under it
    (0.85x the gate's resolution); a face far under it (0.25x: 0.6 px/mm) is found by the full
    search that follows when the first finds nothing. Both are rejected as face_too_small, not
    no_face."""
    analyzer = Analyzer()
    sample = ROOT / "sample_images" / "astronaut_render.jpg"
    first = analyzer.analyze(sample.read_bytes())
    native = first.frame.native_px_per_mm
    gate = analyzer.config.quality.min_px_per_mm_reject
    f = of_gate * gate / native
    small = cv2.resize(first.decoded.rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, "PNG")
    with pytest.raises(ImageRejected) as err:
        analyzer.analyze(buf.getvalue())
    assert err.value.code == "face_too_small"


def test_roughness_layer_is_the_local_texture_severity(analyzer, render_bytes):
    """The texture family's overlay on every photo (pores need 8 px/mm): the local roughness
    mapped through the score's own anchor, 0 off skin, higher where the regions are rougher."""
    from pipelines.scoring import SCORING

    a = analyzer.analyze(render_bytes)
    heat = a.layers["roughness"]
    assert heat.shape == a.skin.shape and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() < 1.0 and not heat[~a.skin].any()
    rough = {n: r["metrics"]["texture"]["roughness"] for n, r in a.document["regions"].items() if r["measurable"]}
    roughest, smoothest = max(rough, key=rough.get), min(rough, key=rough.get)
    assert rough[roughest] > rough[smoothest] + 1.0
    mean_heat = {n: float(heat[a.regions[n].mask].mean()) for n in (roughest, smoothest)}
    assert mean_heat[roughest] > mean_heat[smoothest] + 0.1
    # through the score's curve: a region's mean heat is at most its own severity (the curve is
    # concave and the local RMS, with the spots and lines filled in, averages below the region's)
    # and of its order (a broken scale would be far off)
    anchor = SCORING["texture"]["roughness"]
    for name, value in rough.items():
        sev = anchor.severity(value) / 100.0
        assert 0.5 * sev <= float(heat[a.regions[name].mask].mean()) <= sev + 0.05, name
