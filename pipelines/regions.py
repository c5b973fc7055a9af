"""Named facial regions in the canonical frame.

Each region is a polygon placed from the landmarks in millimetres (eye line, nose, mouth
corners), so it follows the face's proportions, then intersected with the skin mask. Left and
right follow the subject: ``*_left`` is the subject's left, on the image's right (+x).
The anthropometric offsets below are adult averages; they only place the windows in which
the skin mask and the metrics then work.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.canonical import CanonicalFrame

REGION_NAMES = (
    "forehead", "glabella",
    "crows_feet_left", "crows_feet_right",
    "under_eye_left", "under_eye_right",
    "cheek_left", "cheek_right",
    "nasolabial_left", "nasolabial_right",
    "chin",
)

# Regions with too little visible skin (hair, glasses, a hand, out of frame) are not measured.
MIN_SKIN_FRACTION = 0.5


@dataclass(frozen=True)
class Region:
    """One region. ``mask``: bool (H, W) canonical, region AND skin. ``polygon``: canonical px
    (N, 2) before the skin mask. ``skin_fraction``: share of the polygon that is visible skin."""

    name: str
    polygon: np.ndarray
    mask: np.ndarray
    area_cm2: float
    skin_fraction: float

    @property
    def measurable(self) -> bool:
        return self.skin_fraction >= MIN_SKIN_FRACTION


def _side_polygons(nose: np.ndarray, mouth: np.ndarray, side: float) -> dict[str, np.ndarray]:
    """Polygons (mm) of the paired regions on one side; ``side`` +1 = subject's left (+x)."""
    s = side
    mouth_y = mouth[1]
    alar = np.array([nose[0] + s * 16.0, nose[1] - 4.0])       # beside the nose wing
    corner = np.array([mouth[0] + s * 4.0, mouth_y + 4.0])        # just outside the mouth corner
    along = corner - alar
    normal = np.array([-along[1], along[0]]) / (np.hypot(*along) + 1e-9) * 6.0
    nasolabial = np.array([alar - normal, alar + normal, corner + normal, corner - normal])
    cheek_bottom = max(mouth_y - 6.0, 32.0)
    return {
        "crows_feet": np.array([[s * 47, -12], [s * 62, -14], [s * 64, 14], [s * 49, 14]]),
        "under_eye": np.array([[s * 17, 10], [s * 45, 8], [s * 43, 22], [s * 19, 22]]),
        "cheek": np.array([[alar[0] + s * 4, 27], [s * 58, 24], [s * 58, cheek_bottom],
                           [alar[0] + s * 8, cheek_bottom]]),
        "nasolabial": nasolabial,
    }


def region_polygons_mm(frame: CanonicalFrame) -> dict[str, np.ndarray]:
    """Region polygons in eye-midpoint-relative mm, adapted to this face's nose and mouth."""
    nose = frame.landmark_mm("nose")
    ml, mr = frame.landmark_mm("mouth_left"), frame.landmark_mm("mouth_right")
    mouth_c = (ml + mr) / 2.0
    polys = {
        "forehead": np.array([[-42, -24], [42, -24], [46, -45], [30, -62], [-30, -62], [-46, -45]]),
        "glabella": np.array([[-8, -6], [8, -6], [9, -26], [-9, -26]]),
        "chin": np.array([[mouth_c[0] - 20, mouth_c[1] + 13], [mouth_c[0] + 20, mouth_c[1] + 13],
                          [mouth_c[0] + 15, mouth_c[1] + 38], [mouth_c[0] - 15, mouth_c[1] + 38]]),
    }
    for side, suffix, corner in ((+1.0, "left", ml), (-1.0, "right", mr)):
        for base, poly in _side_polygons(nose, corner, side).items():
            polys[f"{base}_{suffix}"] = poly
    return {name: np.asarray(polys[name], np.float64) for name in REGION_NAMES}


def build_regions(frame: CanonicalFrame, skin_mask: np.ndarray) -> dict[str, Region]:
    """Rasterise every region in the canonical frame and intersect it with ``skin_mask``.

    The forehead excludes the glabella and the cheeks the nasolabial bands, so no pixel is
    counted in two regions.
    """
    spec = frame.spec
    h, w = skin_mask.shape
    # each region is rasterised and intersected within its own bounding box: the full-frame
    # masks are zero elsewhere, and touching 11 x 2 full frames of fresh memory was most of the
    # cost (page faults)
    raw: dict[str, tuple[np.ndarray, tuple[int, int, int, int]]] = {}
    polys_px: dict[str, np.ndarray] = {}
    for name, poly_mm in region_polygons_mm(frame).items():
        poly_px = spec.mm_to_px(poly_mm)
        pts = np.round(poly_px).astype(np.int32)
        x0, y0 = np.clip(pts.min(axis=0), 0, (w, h))
        x1, y1 = np.clip(pts.max(axis=0) + 1, 0, (w, h))
        x1, y1 = max(x1, x0), max(y1, y0)           # a polygon wholly outside the frame: empty
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        if canvas.size:
            cv2.fillPoly(canvas, [pts], 1, offset=(-int(x0), -int(y0)))
        raw[name] = (canvas.view(bool), (int(y0), int(y1), int(x0), int(x1)))
        polys_px[name] = poly_px

    def cut(name: str, other: str) -> None:
        """Remove ``other``'s pixels from ``name`` (where their boxes overlap)."""
        a, (ay0, ay1, ax0, ax1) = raw[name]
        b, (by0, by1, bx0, bx1) = raw[other]
        y0, y1, x0, x1 = max(ay0, by0), min(ay1, by1), max(ax0, bx0), min(ax1, bx1)
        if y1 > y0 and x1 > x0:
            a[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] &= ~b[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]

    cut("forehead", "glabella")
    for side in ("left", "right"):
        cut(f"cheek_{side}", f"nasolabial_{side}")
    px_per_cm2 = (spec.px_per_mm * 10.0) ** 2
    regions = {}
    for name in REGION_NAMES:
        inside, (y0, y1, x0, x1) = raw[name]
        mask = np.zeros((h, w), bool)
        box = mask[y0:y1, x0:x1]
        np.logical_and(inside, skin_mask[y0:y1, x0:x1], out=box)
        box &= frame.valid[y0:y1, x0:x1]
        n_skin = int(np.count_nonzero(box))
        total = int(np.count_nonzero(inside))
        regions[name] = Region(
            name=name,
            polygon=polys_px[name],
            mask=mask,
            area_cm2=n_skin / px_per_cm2,
            skin_fraction=n_skin / total if total else 0.0,
        )
    return regions
