"""Synthetic visit photos made from the sample render: known skin severity planted in photo
coordinates, and capture wobble (exposure, rotation, JPEG quality) of identical content.

Severity 1.0 plants brown spots 3-5.5 mm across darkened by 10-16 L* (with the brown chroma of
``pipelines.synthetic.spots``) on both cheeks and the chin, and dark lines with a Gaussian
cross-profile (1 mm wide at half depth, 12-14 L* deep) on the forehead, the glabella and fanning
out from the outer eye corners (crow's feet). At severity s the same plan (same seed, same
places) is planted with a fraction s of the spots (the first ones) and every line shortened to
a fraction s of its length: spots clear and lines shorten visit by visit. (Fading the contrast
instead moves the metrics little until a feature drops below the detectors' thresholds, then all
at once.)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.metrics.colour import lab_to_linear, linear_to_lab, linear_to_srgb8, srgb_to_linear
from pipelines.synthetic.spots import plant_spots


def _poly(doc: Mapping, region: str) -> np.ndarray:
    return np.asarray(doc["regions"][region]["polygon"], np.float64)


def _bbox(poly: np.ndarray, shape, pad: int = 8) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + pad
    return max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    return linear_to_lab(srgb_to_linear(rgb))


def _to_rgb(lab: np.ndarray) -> np.ndarray:
    return linear_to_srgb8(lab_to_linear(lab))


def _plant_region_spots(img: np.ndarray, doc: Mapping, region: str, severity: float, px_per_mm: float,
                        seed: int, count: int) -> None:
    poly = _poly(doc, region)
    x0, y0, x1, y1 = _bbox(poly, img.shape)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(poly - (x0, y0)).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
    lab = _to_lab(img[y0:y1, x0:x1])
    edge_mm = 0.6
    out, truth = plant_spots(lab, px_per_mm, mask=mask, count=count, diameter_mm=(3.0, 5.5),
                             delta_l=(10.0, 16.0), gap_mm=0.8, edge_mm=edge_mm, seed=seed)
    keep = np.zeros(mask.shape, np.uint8)
    for spot in truth.spots[: int(round(count * severity))]:
        outer = spot.diameter_mm / 2.0 * px_per_mm + edge_mm * px_per_mm / 2.0 + 1.0
        cv2.circle(keep, (int(round(spot.centre_xy[0])), int(round(spot.centre_xy[1]))), int(math.ceil(outer)), 1, -1)
    out = lab + (out - lab) * keep[..., None].astype(np.float32)
    img[y0:y1, x0:x1] = _to_rgb(out)


def _plant_lines(img: np.ndarray, doc: Mapping, region: str, severity: float, px_per_mm: float, *,
                 vertical: bool, count: int, depth: float = 12.0, width_mm: float = 1.0,
                 band: tuple[float, float] = (0.2, 0.8)) -> None:
    """``count`` parallel lines over the middle 70 % of the region's length, along the eye line
    (forehead) or across it (glabella), spread over the ``band`` fraction of its width (0 = the
    side nearer the top for horizontal lines); a Gaussian cross-profile of ``width_mm`` FWHM."""
    poly = _poly(doc, region)
    lm = doc["face"]["landmarks"]
    eye = np.subtract(lm["left_eye"], lm["right_eye"])
    along = eye / np.hypot(*eye)                        # image direction of the eye line
    normal = np.array([-along[1], along[0]])
    if vertical:
        along, normal = normal, along
    x0, y0, x1, y1 = _bbox(poly, img.shape)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    centre = poly.mean(axis=0)
    u = (xx - centre[0]) * along[0] + (yy - centre[1]) * along[1]     # along the lines, px
    v = (xx - centre[0]) * normal[0] + (yy - centre[1]) * normal[1]   # across, px
    pu = poly @ along - centre @ along
    pv = poly @ normal - centre @ normal
    half_len = 0.35 * (pu.max() - pu.min()) * severity
    lo, hi = pv.min(), pv.max()
    offsets = lo + (hi - lo) * np.linspace(band[0], band[1], count)
    sigma = width_mm * px_per_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    prof = np.zeros_like(u)
    taper = np.clip((half_len - np.abs(u)) / (2.0 * px_per_mm), 0.0, 1.0)     # 2 mm soft ends
    for k, off in enumerate(offsets):
        wobble = 0.6 * px_per_mm * np.sin(u / (9.0 * px_per_mm) + k)        # not perfectly straight
        prof = np.maximum(prof, np.exp(-0.5 * ((v - off - wobble) / sigma) ** 2) * taper)
    lab = _to_lab(img[y0:y1, x0:x1]).astype(np.float64)
    lab[..., 0] -= depth * prof
    img[y0:y1, x0:x1] = _to_rgb(lab.astype(np.float32))


def _plant_crows_feet(img: np.ndarray, doc: Mapping, severity: float, px_per_mm: float, *,
                      depth: float = 12.0, width_mm: float = 1.0, length_mm: float = 11.0) -> None:
    """Three lines fanning out (-25, 0, +25 degrees) from beside each outer eye corner."""
    lm = doc["face"]["landmarks"]
    le, re = np.asarray(lm["left_eye"], float), np.asarray(lm["right_eye"], float)
    eye = (le - re) / np.hypot(*(le - re))
    sigma = width_mm * px_per_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    for centre, out in ((le, eye), (re, -eye)):
        start = centre + out * 20.0 * px_per_mm            # about 5 mm outside the outer corner
        for ang in (-25.0, 0.0, 25.0):
            t = math.radians(ang)
            d = np.array([out[0] * math.cos(t) - out[1] * math.sin(t), out[0] * math.sin(t) + out[1] * math.cos(t)])
            a, b = start, start + d * length_mm * severity * px_per_mm
            x0, y0 = np.floor(np.minimum(a, b) - 4 * sigma - 2).astype(int)
            x1, y1 = np.ceil(np.maximum(a, b) + 4 * sigma + 2).astype(int)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            u = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / (length_mm * severity * px_per_mm), 0.0, 1.0)
            dist = np.hypot(xx - (a[0] + u * (b[0] - a[0])), yy - (a[1] + u * (b[1] - a[1])))
            prof = np.exp(-0.5 * (dist / sigma) ** 2)
            lab = _to_lab(img[y0:y1, x0:x1]).astype(np.float64)
            lab[..., 0] -= depth * prof
            img[y0:y1, x0:x1] = _to_rgb(lab.astype(np.float32))


def plant_severity(rgb: np.ndarray, doc: Mapping, severity: float, *, seed: int = 7) -> np.ndarray:
    """A copy of ``rgb`` (the photo ``doc`` was analysed from) with spots and lines of
    ``severity`` (0 none - 1 strong) planted in photo coordinates."""
    img = np.array(rgb, copy=True)
    if severity <= 0:
        return img
    ppm = float(doc["face"]["px_per_mm"])
    _plant_region_spots(img, doc, "cheek_left", severity, ppm, seed, 14)
    _plant_region_spots(img, doc, "cheek_right", severity, ppm, seed + 1, 14)
    _plant_region_spots(img, doc, "chin", severity, ppm, seed + 2, 10)
    # the forehead window reaches into the fringe: lines on its lower, bare part
    _plant_lines(img, doc, "forehead", severity, ppm, vertical=False, count=3, band=(0.86, 0.99), depth=14.0)
    _plant_lines(img, doc, "glabella", severity, ppm, vertical=True, count=2, depth=14.0)
    _plant_crows_feet(img, doc, severity, ppm)
    return img


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return buf.tobytes()


@dataclass(frozen=True)
class Wobble:
    """A capture of the same content: exposure gain in linear light, rotation (degrees, about
    the image centre), shift (px) and JPEG quality."""

    exposure: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    quality: int = 92


# Exposure +-10 %, rotations up to 2 degrees, JPEG quality 70-95. Every capture is turned a
# little, so every one is resampled once, as every real capture is a new sampling of the face.
WOBBLES = (
    Wobble(1.00, -0.5, (3, 2), 92),
    Wobble(1.10, 1.5, (12, -8), 80),
    Wobble(0.90, -2.0, (-10, 6), 70),
    Wobble(1.05, 0.8, (5, 10), 95),
)


def apply_wobble(rgb: np.ndarray, w: Wobble) -> bytes:
    h, wd = rgb.shape[:2]
    img = rgb
    if w.rotation_deg or any(w.shift):      # Lanczos: a camera's turn, not a bilinear blur
        m = cv2.getRotationMatrix2D((wd / 2.0, h / 2.0), w.rotation_deg, 1.0)
        m[:, 2] += w.shift
        img = cv2.warpAffine(rgb, m, (wd, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    if w.exposure != 1.0:       # per 8-bit value: a 256-entry table is exact and fast
        lut = linear_to_srgb8(srgb_to_linear(np.arange(256, dtype=np.uint8)) * w.exposure)
        img = cv2.LUT(img, lut)
    return encode_jpeg(img, w.quality)
