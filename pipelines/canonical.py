"""Canonical face frame: upright, at a fixed physical scale, cropped around the face.

The frame's coordinates are canonical pixels; ``FrameSpec`` places the midpoint between the pupils
at a fixed point and makes the inter-pupillary distance (IPD) ``ipd_mm`` millimetres long, so every
photo is measured at the same px/mm whatever the camera. Millimetres are relative to the eye
midpoint: +x towards the image's right (the subject's left), +y down.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class FrameSpec:
    """Geometry of the canonical frame. Lengths in mm, scale in px/mm."""

    px_per_mm: float = 10.0
    ipd_mm: float = 63.0          # adult mean inter-pupillary distance
    width_mm: float = 140.0
    height_mm: float = 180.0
    eyes_from_top_mm: float = 65.0  # eye line to the frame's top edge

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in canonical pixels."""
        return int(round(self.width_mm * self.px_per_mm)), int(round(self.height_mm * self.px_per_mm))

    def mm_to_px(self, xy_mm: np.ndarray) -> np.ndarray:
        """Eye-midpoint-relative mm (N, 2) -> canonical pixel coordinates (N, 2)."""
        xy = np.asarray(xy_mm, np.float64)
        origin = np.array([self.width_mm / 2.0, self.eyes_from_top_mm])
        return (xy + origin) * self.px_per_mm

    def px_to_mm(self, xy_px: np.ndarray) -> np.ndarray:
        origin = np.array([self.width_mm / 2.0, self.eyes_from_top_mm])
        return np.asarray(xy_px, np.float64) / self.px_per_mm - origin


@dataclass(frozen=True)
class CanonicalFrame:
    """A face resampled into the canonical frame.

    ``rgb``: (H, W, 3) uint8 sRGB. ``valid``: bool (H, W), pixels that came from inside the photo.
    ``to_source``: 2x3 affine, canonical px -> source px (full-resolution upright photo).
    ``landmarks``: canonical px. ``native_px_per_mm``: the photo's own resolution at the face.
    """

    rgb: np.ndarray
    valid: np.ndarray
    spec: FrameSpec
    to_source: np.ndarray
    landmarks: dict[str, tuple[float, float]]
    roll_deg: float
    native_px_per_mm: float
    extras: dict = field(default_factory=dict)

    @property
    def px_per_mm(self) -> float:
        return self.spec.px_per_mm

    def landmark_mm(self, name: str) -> np.ndarray:
        return self.spec.px_to_mm(np.array([self.landmarks[name]]))[0]

    def map_to_source(self, xy_px: np.ndarray) -> np.ndarray:
        """Canonical px (N, 2) -> source px (N, 2)."""
        xy = np.asarray(xy_px, np.float64).reshape(-1, 2)
        return xy @ self.to_source[:, :2].T + self.to_source[:, 2]


def eye_geometry(landmarks: dict[str, tuple[float, float]]) -> tuple[np.ndarray, float, float]:
    """Eye midpoint (x, y), inter-pupillary distance (px) and roll (degrees, positive when the
    subject's left eye, on the image's right, sits lower than the right eye)."""
    left = np.asarray(landmarks["left_eye"], np.float64)    # subject's left: image right
    right = np.asarray(landmarks["right_eye"], np.float64)
    d = left - right
    return (left + right) / 2.0, float(np.hypot(*d)), float(np.degrees(np.arctan2(d[1], d[0])))


def source_to_canonical_matrix(landmarks: dict[str, tuple[float, float]], spec: FrameSpec) -> np.ndarray:
    """2x3 similarity transform: source px (full resolution) -> canonical px."""
    mid, ipd_px, roll = eye_geometry(landmarks)
    if ipd_px <= 0:
        raise ValueError("eye landmarks coincide")
    scale = spec.ipd_mm * spec.px_per_mm / ipd_px
    theta = np.radians(-roll)   # rotate the eye line onto the horizontal
    c, s = np.cos(theta) * scale, np.sin(theta) * scale
    rot = np.array([[c, -s], [s, c]])
    target = spec.mm_to_px(np.zeros((1, 2)))[0]
    return np.hstack([rot, (target - rot @ mid)[:, None]])


def build_frame(
    image: np.ndarray,
    landmarks: dict[str, tuple[float, float]],
    spec: FrameSpec = FrameSpec(),
    *,
    image_scale: float = 1.0,
) -> CanonicalFrame:
    """Resample ``image`` into the canonical frame.

    ``image``: (H, W, 3) uint8 RGB, possibly a reduced decode of the photo. ``landmarks`` are in
    FULL-resolution source pixels; ``image_scale`` is image px per full-resolution px (1/reduction).
    Downsampling uses an area-averaged pre-shrink so a high-resolution photo does not alias.
    """
    to_canon = source_to_canonical_matrix(landmarks, spec)
    # Affine acting on the given (possibly reduced) image's pixels.
    m = to_canon.copy()
    m[:, :2] /= image_scale
    work = image
    shrink = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if shrink < 0.5:
        # Pre-shrink by an integer-ish factor with INTER_AREA; warpAffine alone would alias.
        f = shrink * 1.5
        work = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        m[:, :2] /= f
    w, h = spec.size_px
    rgb = cv2.warpAffine(work, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # the frame pixels that sample the photo: its outline mapped into the frame and filled
    # (4 fractional bits; to within a pixel at the photo's edge), cheaper than warping a
    # photo-sized mask
    hh, ww = work.shape[:2]
    outline = np.array([[-0.5, -0.5], [ww - 0.5, -0.5], [ww - 0.5, hh - 0.5], [-0.5, hh - 0.5]]) @ m[:, :2].T + m[:, 2]
    valid = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(valid, np.round(outline * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    valid = valid.view(bool)
    to_source = cv2.invertAffineTransform(to_canon)
    pts = np.array([landmarks[k] for k in LANDMARK_NAMES], np.float64)
    canon_pts = pts @ to_canon[:, :2].T + to_canon[:, 2]
    _, ipd_px, roll = eye_geometry(landmarks)
    return CanonicalFrame(
        rgb=rgb,
        valid=valid,
        spec=spec,
        to_source=to_source,
        landmarks={k: (float(x), float(y)) for k, (x, y) in zip(LANDMARK_NAMES, canon_pts)},
        roll_deg=roll,
        native_px_per_mm=ipd_px / spec.ipd_mm,
    )
