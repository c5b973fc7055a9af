"""Plant known spots, lines and pores onto a real face photo.

Features are drawn in the canonical frame of an analysis of the clean photo (so sizes are in mm
and positions in named regions), as a CIELAB change; the change is then warped onto the photo
with the frame's ``to_source`` transform and added there. What the photo can show is limited by
its own resolution, as it would be for real skin.

Two helpers make ground-truth subjects from a real photo: ``face_at_resolution`` takes the face
to a chosen px/mm (a clinic camera's), and ``resurface_skin`` replaces the skin's fine texture
(grain, freckles, hair strands) with a known grain, keeping the face's colour, shading and
features, so that what is on the skin afterwards is only what is planted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from skimage.color import lab2rgb, rgb2lab

from pipelines.canonical import CanonicalFrame
from pipelines.measure import wrinkle_priors
from pipelines.regions import Region
from pipelines.synthetic.lines import plant_lines, random_lines
from pipelines.synthetic.pores import plant_pores, random_pores
from pipelines.synthetic.skin import skin_lab
from pipelines.synthetic.spots import plant_spots

# Line orientation (degrees counter-clockwise on screen) per region, as wrinkles run there; crow's
# feet fan out from the outer eye corner: theirs is the deviation from that direction.
LINE_ANGLES = {
    "forehead": (-6.0, 6.0), "glabella": (84.0, 96.0),
    "crows_feet_left": (-12.0, 12.0), "crows_feet_right": (-12.0, 12.0),
    "under_eye_left": (-15.0, 15.0), "under_eye_right": (-15.0, 15.0),
    "nasolabial_left": (-75.0, -65.0), "nasolabial_right": (65.0, 75.0),
    "cheek_left": (-80.0, -50.0), "cheek_right": (50.0, 80.0), "chin": (-10.0, 10.0),
}

# Regions too small for the default line length get lines that fit them (mm).
LINE_LENGTHS = {
    "glabella": (6.0, 10.0), "crows_feet_left": (6.0, 10.0), "crows_feet_right": (6.0, 10.0),
    "under_eye_left": (8.0, 14.0), "under_eye_right": (8.0, 14.0),
    "nasolabial_left": (12.0, 20.0), "nasolabial_right": (12.0, 20.0),
}


@dataclass(frozen=True)
class Planting:
    """What to plant, per region. Sizes in mm, depths as L* darkening."""

    spots: dict[str, int] = field(default_factory=dict)
    spot_diameter_mm: tuple[float, float] = (2.5, 4.0)
    spot_delta_l: tuple[float, float] = (7.0, 10.0)
    lines: dict[str, int] = field(default_factory=dict)
    line_length_mm: tuple[float, float] = (10.0, 22.0)   # where LINE_LENGTHS has no entry
    line_width_mm: tuple[float, float] = (0.7, 1.1)
    line_depth: tuple[float, float] = (6.0, 9.0)
    pores_per_cm2: dict[str, float] = field(default_factory=dict)
    pore_diameter_mm: tuple[float, float] = (0.25, 0.4)
    seed: int = 0

    def in_measurable(self, regions: dict[str, Region]) -> "Planting":
        """This planting restricted to the regions this face lets us measure (hair, a beard or the
        frame's edge can hide one): features planted elsewhere count in no metric."""
        ok = {name for name, region in regions.items() if region.measurable}
        return replace(self, **{f: {n: v for n, v in getattr(self, f).items() if n in ok}
                                for f in ("spots", "lines", "pores_per_cm2")})


@dataclass(frozen=True)
class PlantedTruth:
    spot_count: dict[str, int]
    line_count: dict[str, int]
    line_length_mm: dict[str, float]
    pore_count: dict[str, int]


def _inner(mask: np.ndarray, px_per_mm: float, margin_mm: float) -> np.ndarray:
    k = max(1, int(round(margin_mm * px_per_mm)))
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0


def plant_on_photo(
    rgb: np.ndarray, frame: CanonicalFrame, regions: dict[str, Region], planting: Planting
) -> tuple[np.ndarray, PlantedTruth]:
    """Return a copy of ``rgb`` (uint8 (H, W, 3), the photo ``frame`` was built from, at full
    resolution) with the planted features, and what was planted per region."""
    k = frame.px_per_mm
    canon_lab = rgb2lab(frame.rgb).astype(np.float32)
    lab = canon_lab.copy()
    spots, lines_n, lines_mm, pores = {}, {}, {}, {}
    for i, (name, count) in enumerate(sorted(planting.spots.items())):
        lab, truth = plant_spots(lab, k, mask=_inner(regions[name].mask, k, 1.5), count=count,
                                 diameter_mm=planting.spot_diameter_mm, delta_l=planting.spot_delta_l,
                                 seed=planting.seed + 101 * i)
        spots[name] = truth.spot_count
    priors = wrinkle_priors(frame, regions) if planting.lines else {}
    for i, (name, count) in enumerate(sorted(planting.lines.items())):
        length = LINE_LENGTHS.get(name, planting.line_length_mm)
        centre = priors[name].radial_from if name in priors else None
        radial = None if centre is None else (centre[0] / k, centre[1] / k)
        inner = _inner(regions[name].mask, k, 1.0)
        for n in range(count, 0, -1):   # a region partly hidden may hold fewer lines
            try:
                lines = random_lines(inner, k, n, length_mm=length, width_mm=planting.line_width_mm,
                                     depth=planting.line_depth, angle_deg=LINE_ANGLES[name],
                                     radial_from_mm=radial, seed=planting.seed + 211 * i)
                break
            except ValueError:
                lines = []
        lab, truth = plant_lines(lab, k, lines)
        lines_n[name], lines_mm[name] = truth.count, truth.total_length_mm
    for i, (name, density) in enumerate(sorted(planting.pores_per_cm2.items())):
        mask = _inner(regions[name].mask, k, 0.5)
        found = random_pores(mask, k, density, diameter_mm=planting.pore_diameter_mm, seed=planting.seed + 307 * i)
        lab, truth = plant_pores(lab, k, found, mask=mask)
        pores[name] = len(found)
    delta = lab - canon_lab
    h, w = rgb.shape[:2]
    # Warp the change onto the photo, over the face's bounding box only.
    corners = frame.map_to_source(np.array([[0, 0], [frame.rgb.shape[1], 0], [0, frame.rgb.shape[0]],
                                            [frame.rgb.shape[1], frame.rgb.shape[0]]], float))
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), [w, h])
    m = frame.to_source.copy()
    m[:, 2] -= (x0, y0)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < 1.0:   # the photo is coarser than the frame: average, don't alias
        delta = cv2.GaussianBlur(delta, (0, 0), 0.5 / scale)
    patch_delta = cv2.warpAffine(delta, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    out = rgb.copy()
    patch = rgb2lab(rgb[y0:y1, x0:x1]).astype(np.float32) + patch_delta
    out[y0:y1, x0:x1] = np.clip(np.rint(lab2rgb(patch) * 255.0), 0, 255).astype(np.uint8)
    return out, PlantedTruth(spots, lines_n, lines_mm, pores)


def resurface_skin(rgb: np.ndarray, frame: CanonicalFrame, skin: np.ndarray, regions: dict[str, Region], *,
                   smooth_mm: float = 1.5, grain: float = 0.6, seed: int = 0) -> np.ndarray:
    """A copy of ``rgb`` (uint8 (H, W, 3), the photo ``frame`` was built from) whose skin keeps
    its colour, shading and shape but not its fine texture: over the skin mask ``skin`` (bool,
    canonical) and the region polygons, warped onto the photo with a soft edge, CIELAB is
    smoothed with a Gaussian of ``smooth_mm`` (features under ~3 smooth_mm across go: grain,
    freckles, pores, fine lines, hair strands) and a fresh grain of ``grain`` L* SD at 0.15 mm
    (:func:`pipelines.synthetic.skin.skin_lab`) is added. What is on the skin is then only what
    is planted afterwards: a ground-truth subject with a real face's geometry and lighting."""
    h, w = rgb.shape[:2]
    canon = skin.astype(np.uint8)
    for region in regions.values():
        cv2.fillPoly(canon, [np.round(region.polygon).astype(np.int32)], 1)
    ppm = frame.px_per_mm * math.sqrt(abs(np.linalg.det(frame.to_source[:, :2])))   # photo px per mm
    alpha = cv2.warpAffine(canon.astype(np.float32), frame.to_source, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.5 * ppm)[..., None]
    lab = rgb2lab(rgb).astype(np.float32)
    smooth = cv2.GaussianBlur(lab, (0, 0), smooth_mm * ppm)
    new = smooth + skin_lab((h, w), ppm, lab=(0.0, 0.0, 0.0), mottling=0.0, grain=grain, seed=seed)
    out_lab = alpha * new + (1.0 - alpha) * lab
    return np.clip(np.rint(lab2rgb(out_lab) * 255.0), 0, 255).astype(np.uint8)


def face_at_resolution(rgb: np.ndarray, frame: CanonicalFrame, px_per_mm: float) -> np.ndarray:
    """The photo's face (the canonical frame's extent, uint8 (h, w, 3)) resampled (Lanczos) so the
    face is at ``px_per_mm``: a sample photo taken to a clinic camera's resolution, with no more
    detail than the photo had (what is planted afterwards is at the new resolution)."""
    h, w = frame.rgb.shape[:2]
    corners = frame.map_to_source(np.array([[0, 0], [w, 0], [0, h], [w, h]], float))
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    f = px_per_mm / frame.native_px_per_mm
    return cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_LANCZOS4)
