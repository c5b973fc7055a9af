"""All skin metrics of one face in its canonical frame: colour normalisation, then
pigmentation, texture and wrinkles per region and for the whole face.

Texture and wrinkles work on the colour-normalised image too, so an exposure or white-balance
change between visits moves them as little as possible.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipelines.canonical import CanonicalFrame
from pipelines.metrics.colour import normalize_colour
from pipelines.metrics.luminance import skin_luminance
from pipelines.metrics.pigmentation import PigmentationParams, measure_pigmentation
from pipelines.metrics.texture import measure_texture
from pipelines.metrics.wrinkles import OrientationPrior, default_priors, measure_wrinkles
from pipelines.regions import Region
from pipelines.scoring import SCORING

# The metric names of the result document, per family (the contract; see README "Metrics").
METRIC_NAMES = {
    "pigmentation": ("ita_deg", "ita_category", "melanin_index", "erythema_index", "spot_count",
                     "spot_area_pct", "spot_contrast_de", "tone_unevenness", "red_area_pct"),
    "texture": ("roughness", "pore_density_per_cm2", "pore_diameter_mm", "shine_pct"),
    "wrinkles": ("wrinkle_density_pct", "wrinkle_length_mm_per_cm2", "wrinkle_depth_index", "wrinkle_count",
                 "wrinkle_depth_weighted_length"),
}

OUTER_EYE_CORNER_MM = 14.0   # pupil to outer canthus, adult mean
EYE_OPENING_MM = (14.0, 4.0)  # semi-axes of the zone searched for eye white, around each pupil
IRIS_RADIUS_MM = 6.0
FIT_MARGIN_MM = 5.0           # the lighting is fitted on skin within this of a region
ZONE_GRID_STEP = 4            # canonical px per cell of the grid that zone is grown on
MIN_SPOT_NATIVE_PX = 4.0     # smallest spot diameter in the photo's own pixels


@dataclass
class Measurements:
    """``face``: family -> name -> value; ``regions``: region -> family -> name -> value (None for
    regions not measurable); ``layers``: canonical-frame maps in 0-1 for overlays."""

    face: dict
    regions: dict
    colour_correction: dict
    warnings: list[dict] = field(default_factory=list)
    layers: dict = field(default_factory=dict)


def _clean(value):
    """JSON-safe value: NaN/inf -> None, numpy scalars -> Python, floats rounded."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    v = float(value)
    return None if not math.isfinite(v) else round(v, 4)


def _pick(family: str, values: dict | None) -> dict | None:
    if values is None:
        return None
    return {name: _clean(values.get(name)) for name in METRIC_NAMES[family]}


class LazyLayers(Mapping):
    """Overlay maps computed on first access: most analyses are never drawn (batch, API)."""

    def __init__(self, makers: dict):
        self._makers = makers
        self._made: dict = {}

    def __getitem__(self, key):
        if key not in self._made:
            self._made[key] = self._makers[key]()
        return self._made[key]

    def __iter__(self):
        return iter(self._makers)

    def __len__(self):
        return len(self._makers)


def _wrinkle_layer(response: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Wrinkle response on detected lines, scaled so the 90th percentile is 1."""
    scale = float(np.percentile(response[mask], 90)) if mask.any() else 1.0
    return np.clip(response / max(scale, 1e-6), 0.0, 1.0) * mask


def sclera_mask(frame: CanonicalFrame, skin: np.ndarray) -> np.ndarray:
    """Where the eye whites can be: each eye opening (an ellipse ``EYE_OPENING_MM`` around the
    pupil landmark) without the iris (a disc of ``IRIS_RADIUS_MM``: the iris is ~5.5-6 mm across
    its radius in the canonical frame, and MTCNN's pupils are ~2 mm off) and without skin.
    :func:`pipelines.metrics.colour.select_eye_white` then picks the white pixels in it, so the
    mask need not land on the sclera exactly (fixed patches beside the pupil caught iris, lashes
    and lid on real faces)."""
    out = np.zeros(skin.shape, np.uint8)
    k = frame.px_per_mm
    ax, ay = EYE_OPENING_MM
    for name in ("left_eye", "right_eye"):
        x, y = frame.landmarks[name]
        c = (int(round(x)), int(round(y)))
        cv2.ellipse(out, c, (int(round(ax * k)), int(round(ay * k))), 0, 0, 360, 1, -1)
        cv2.circle(out, c, int(round(IRIS_RADIUS_MM * k)), 0, -1)
    return out.astype(bool) & ~skin


def fit_zone(regions: dict[str, Region], shape: tuple[int, int], px_per_mm: float) -> np.ndarray:
    """bool (H, W): the region polygons grown by ``FIT_MARGIN_MM``. Grown on a grid 4x coarser
    (a 0.4 mm step is nothing for a lighting fit), as a distance transform: a disc this wide
    (~200 px) at full size was a slow, non-separable dilation (170 ms of a 560 ms analysis)."""
    f = ZONE_GRID_STEP
    h, w = shape
    small = np.zeros((-(-h // f), -(-w // f)), np.uint8)
    for r in regions.values():
        cv2.fillPoly(small, [np.round((r.polygon + 0.5) / f - 0.5).astype(np.int32)], 1)
    outside = cv2.compare(small, 0, cv2.CMP_EQ)
    grown = (cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_5) <= FIT_MARGIN_MM * px_per_mm / f)
    # back to full size: each coarse cell becomes an f x f block
    return np.repeat(np.repeat(grown, f, axis=0), f, axis=1)[:h, :w]


def wrinkle_priors(frame: CanonicalFrame, regions: dict[str, Region]) -> dict[str, OrientationPrior]:
    """Orientation priors for this face: crow's feet radial from the outer eye corners, the
    nasolabial folds along their own region's axis (nose wing to mouth corner)."""
    k = frame.px_per_mm
    lx, ly = frame.landmarks["left_eye"]      # subject's left, image right: corner further right
    rx, ry = frame.landmarks["right_eye"]
    priors = default_priors((lx + OUTER_EYE_CORNER_MM * k, ly), (rx - OUTER_EYE_CORNER_MM * k, ry))
    for side in ("left", "right"):
        poly = regions[f"nasolabial_{side}"].polygon
        top, bottom = (poly[0] + poly[1]) / 2.0, (poly[2] + poly[3]) / 2.0
        d = bottom - top
        angle = math.degrees(math.atan2(-d[1], d[0]))   # counter-clockwise on screen
        priors[f"nasolabial_{side}"] = OrientationPrior(angle_deg=angle, tolerance_deg=30.0)
    return priors


def measure_face(frame: CanonicalFrame, skin: np.ndarray, regions: dict[str, Region], *,
                 card_gains: np.ndarray | None = None) -> Measurements:
    """Measure every family on the face and each measurable region. ``card_gains``: linear RGB
    gains from a colour card in the photo (pipelines/colour_card.py), which then set white
    balance and exposure instead of the eye whites."""
    k = frame.px_per_mm
    # every region's visible skin is measured, so the face (the union) does not jump when a
    # region crosses the 50 % visibility line between two photos; only measurable regions report
    masks = {n: r.mask for n, r in regions.items() if r.mask.any()}
    # the lighting fit and the skin reference of the eye-white choice use the skin of the
    # measured regions (a few mm around them), not neck, ears or hair strands the skin mask kept
    zone = fit_zone(regions, skin.shape, k)
    fit_skin = skin & zone if np.count_nonzero(skin & zone) >= 1000 else skin
    linear, correction = normalize_colour(frame.rgb, fit_skin, reference_mask=sclera_mask(frame, skin),
                                          card_gains=card_gains)

    # A spot must span a few of the photo's own pixels, not just of the upsampled frame.
    min_spot_mm = max(PigmentationParams.spot_min_diameter_mm, MIN_SPOT_NATIVE_PX / frame.native_px_per_mm)
    # clipped highlights have a false colour (R clips first) that also skews the local
    # background around them: spots and red areas are not judged there
    r8, g8, b8 = cv2.split(frame.rgb)
    clipped = cv2.max(cv2.max(r8, g8), b8) >= 250
    if clipped.any():
        grow = int(round(1.0 * k))
        clipped = cv2.dilate(clipped.view(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0
    pig = measure_pigmentation(linear, masks, k, skin_mask=skin, unreliable=clipped,
                               params=PigmentationParams(spot_min_diameter_mm=min_spot_mm))
    # texture and wrinkles read L* straight from the normalised linear RGB (no 8-bit round trip)
    lum = skin_luminance(linear, skin, k, masks)
    wr = measure_wrinkles(linear, masks, k, skin_mask=skin, priors=wrinkle_priors(frame, regions),
                          native_px_per_mm=frame.native_px_per_mm, luminance=lum)
    # roughness is the relief of the skin between the spots and lines the other families measure,
    # so a new spot or line moves its own score and not texture as well
    tex = measure_texture(linear, masks, k, skin_mask=skin, native_px_per_mm=frame.native_px_per_mm,
                          luminance=lum, marks=pig.spot_mask | wr.wrinkle_mask)

    face = {
        "pigmentation": _pick("pigmentation", pig.face.as_dict()),
        "texture": _pick("texture", tex.face.as_dict()),
        "wrinkles": _pick("wrinkles", wr.face.as_dict()),
    }
    per_region = {}
    for name in regions:
        measured = regions[name].measurable
        per_region[name] = {
            "pigmentation": _pick("pigmentation", pig.regions[name].as_dict() if measured else None),
            "texture": _pick("texture", tex.regions[name].as_dict() if measured else None),
            "wrinkles": _pick("wrinkles", wr.regions[name].as_dict() if measured else None),
        }
    warnings = []
    seen = set()
    for code, message in [*tex.warnings, *wr.warnings]:
        if code not in seen:
            seen.add(code)
            warnings.append({"code": code, "message": message})
    layers = LazyLayers({
        "spots": lambda: pig.spot_mask.astype(np.float32),
        "redness": lambda: np.clip(pig.redness_map / 20.0, 0.0, 1.0) * pig.red_mask,
        "pores": lambda: tex.pore_mask.astype(np.float32),
        # the local roughness through the score's own curve: 0 up to the floor, 0.5 at the half
        "roughness": lambda: SCORING["texture"]["roughness"].severity_map(tex.roughness_map),
        "wrinkles": lambda: _wrinkle_layer(wr.wrinkle_response, wr.wrinkle_mask),
    })
    return Measurements(face=face, regions=per_region, colour_correction=correction.as_dict(),
                        warnings=warnings, layers=layers)
