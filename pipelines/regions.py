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
    raw: dict[str, np.ndarray] = {}
    polys_px: dict[str, np.ndarray] = {}
    for name, poly_mm in region_polygons_mm(frame).items():
        poly_px = spec.mm_to_px(poly_mm)
        canvas = np.zeros((h, w), np.uint8)
        cv2.fillPoly(canvas, [np.round(poly_px).astype(np.int32)], 1)
        raw[name] = canvas.view(bool)
        polys_px[name] = poly_px
    raw["forehead"] &= ~raw["glabella"]
    for side in ("left", "right"):
        raw[f"cheek_{side}"] &= ~raw[f"nasolabial_{side}"]
    px_per_cm2 = (spec.px_per_mm * 10.0) ** 2
    visible = skin_mask & frame.valid
    regions = {}
    for name in REGION_NAMES:
        mask = raw[name] & visible
        n_skin = int(np.count_nonzero(mask))
        total = int(np.count_nonzero(raw[name]))
        regions[name] = Region(
            name=name,
            polygon=polys_px[name],
            mask=mask,
            area_cm2=n_skin / px_per_cm2,
            skin_fraction=n_skin / total if total else 0.0,
        )
    return regions
