"""Overlays aligned with the photo: the face and regions, and heat maps per metric family.

Metric maps live in the canonical frame; they are warped back onto the photo with the frame's
``to_source`` transform, so an overlay lines up with the photo whatever its rotation or scale.
Overlays are drawn at the decoded resolution, capped at ``max_side`` pixels for display.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipelines.analysis import Analysis
from pipelines.errors import InvalidInput
from pipelines.regions import REGION_NAMES

# layer -> (canonical map key, colour map); "regions" is drawn from geometry.
HEAT_LAYERS = {
    "spots": ("spots", cv2.COLORMAP_INFERNO),
    "redness": ("redness", cv2.COLORMAP_HOT),
    "roughness": ("roughness", cv2.COLORMAP_PLASMA),
    "pores": ("pores", cv2.COLORMAP_VIRIDIS),
    "wrinkles": ("wrinkles", cv2.COLORMAP_TURBO),
}
LAYERS = ("regions", *HEAT_LAYERS)

_REGION_COLOURS = {  # RGB, one per region, paired sides share a hue
    "forehead": (230, 60, 60), "glabella": (60, 200, 60),
    "crows_feet_left": (60, 90, 230), "crows_feet_right": (60, 90, 230),
    "under_eye_left": (220, 60, 220), "under_eye_right": (220, 60, 220),
    "cheek_left": (240, 160, 30), "cheek_right": (240, 160, 30),
    "nasolabial_left": (40, 200, 220), "nasolabial_right": (40, 200, 220),
    "chin": (250, 230, 60),
}


def _base(analysis: Analysis, max_side: int) -> tuple[np.ndarray, float]:
    """The photo as decoded, shrunk to ``max_side``; returns it and its px per full-res px."""
    rgb = analysis.decoded.rgb
    scale = 1.0 / analysis.decoded.reduction
    f = min(1.0, max_side / max(rgb.shape[:2]))
    if f < 1.0:
        rgb = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return rgb.copy(), scale * f


def _to_photo(canonical_map: np.ndarray, analysis: Analysis, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Warp a canonical-frame map (H, W) onto the overlay image (shape) at ``scale``."""
    m = analysis.frame.to_source * scale
    return cv2.warpAffine(canonical_map.astype(np.float32), m, (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _draw_regions(img: np.ndarray, analysis: Analysis, scale: float, regions: tuple[str, ...]) -> None:
    t = max(1, int(round(max(img.shape[:2]) / 600)))
    for name in regions:
        poly = analysis.frame.map_to_source(analysis.regions[name].polygon) * scale
        cv2.polylines(img, [np.round(poly).astype(np.int32)], True, _REGION_COLOURS[name], t, cv2.LINE_AA)


def render_overlay(analysis: Analysis, layer: str = "regions", *, region: str | None = None,
                   max_side: int = 2048, alpha: float = 0.6) -> np.ndarray:
    """RGB uint8 overlay of ``layer`` (see ``LAYERS``) on the photo, optionally limited to one
    ``region``. Heat layers tint the skin by the metric's map; the region outlines are drawn too."""
    if layer not in LAYERS:
        raise InvalidInput(f"unknown overlay layer {layer!r}; choose one of {', '.join(LAYERS)}", field="layer")
    if region is not None and region not in REGION_NAMES:
        raise InvalidInput(f"unknown region {region!r}", field="region")
    img, scale = _base(analysis, max_side)
    regions = (region,) if region else REGION_NAMES
    if layer == "regions":
        face = analysis.document["face"]
        t = max(1, int(round(max(img.shape[:2]) / 500)))
        x, y, w, h = (v * scale for v in face["box"])
        cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (255, 255, 255), t, cv2.LINE_AA)
        for name, (px, py) in face["landmarks"].items():
            cv2.circle(img, (int(round(px * scale)), int(round(py * scale))), 2 * t + 1, (0, 255, 0), -1, cv2.LINE_AA)
        _draw_regions(img, analysis, scale, regions)
        return img
    key, cmap = HEAT_LAYERS[layer]
    if key not in analysis.layers:
        raise InvalidInput(f"layer {layer!r} is not available for this analysis", field="layer")
    heat = np.clip(analysis.layers[key].astype(np.float32), 0.0, 1.0)
    keep = np.zeros(heat.shape, bool)
    for name in regions:
        keep |= analysis.regions[name].mask
    heat = np.where(keep, heat, 0.0)
    heat = _to_photo(heat, analysis, img.shape[:2], scale)
    colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cmap)[..., ::-1]
    a = (alpha * np.clip(heat * 1.5, 0, 1))[..., None]
    img = np.round(img * (1 - a) + colour * a).astype(np.uint8)
    _draw_regions(img, analysis, scale, regions)
    return img
