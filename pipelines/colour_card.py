"""A colour reference card in the photo: found, read and checked before it is trusted.

The card is the 24-patch ColorChecker Classic, found by OpenCV's ``mcc`` detector (part of the
``opencv-python-headless`` 5 wheel the project already uses). The photo is searched at most
``CardSearch.max_side`` px on its long side with lighter detector settings than OpenCV's defaults
(no upsampling to 1000 px, 4 threshold passes instead of 9): 15-20 ms on one core instead of
60-90 ms. Cards whose patches measure about 20 px or more at that size are found (a card about
a quarter of the frame wide or more); pocket-size cards are not (bench/colour_card.py).

A detection is trusted only when the card reads like the card: per-channel gains fitted on its
unclipped neutral patches must bring the median of all 24 patches within
``CardSearch.max_median_de`` (CIEDE2000) of the card's published colours. A poster, a shirt or a
tiled wall the detector mistakes for a card does not pass. The gains carry white balance and
exposure together: after them the neutral patches have their true reflectance.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from pipelines.metrics.colour import delta_e_2000, linear_to_lab, srgb_to_linear

#: Patch indices (row-major, 0-based) of the card's neutral row: white 9.5 to black 2.
NEUTRAL_PATCHES = tuple(range(18, 24))


@dataclass(frozen=True)
class CardSearch:
    """max_side: long side (px) the photo is searched at. max_median_de: the most a trusted card's
    patches may differ from the published colours after the neutral gains (median CIEDE2000).
    clip_level: sRGB 0-1 mean above which a patch counts as clipped and is not fitted.
    max_patch_sd: the most a patch's pixels may spread (SD, 0-255 sRGB, worst channel) to be
    fitted, and the most the median patch may: a patch grid laid off the card's patches samples
    their dark borders too (SD 25-70 where well-placed patches of a photo show 2-6)."""

    max_side: int = 640
    max_median_de: float = 10.0
    clip_level: float = 0.97
    max_patch_sd: float = 10.0


@dataclass(frozen=True)
class ColourCard:
    """A card found in the photo.

    corners: (4, 2) px in the searched image's coordinates divided by its scale, i.e. px of the
    image passed to :func:`find_colour_card`. measured, reference: (24, 3) linear RGB means of the
    patches as photographed and as published. gains: (3,) linear RGB multipliers that give the
    neutral patches their published colour (white balance and exposure together).
    patches_fitted: neutral patches the gains were fitted on. median_de: median CIEDE2000 of the
    24 patches after the gains (how well the card reads like the card)."""

    corners: np.ndarray
    measured: np.ndarray
    reference: np.ndarray
    gains: np.ndarray
    patches_fitted: int
    median_de: float

    def as_dict(self) -> dict:
        return {
            "corners_px": np.round(self.corners, 1).tolist(),
            "gains": [round(float(g), 4) for g in self.gains],
            "patches_fitted": self.patches_fitted,
            "median_de": round(self.median_de, 2),
        }


def _detector() -> cv2.mcc.CCheckerDetector:
    det = cv2.mcc.CCheckerDetector.create()
    det.setColorChartType(cv2.mcc.MCC24)
    params = cv2.mcc.DetectorParametersMCC()
    params.minImageSize = 640              # OpenCV's 1000 upsamples small searches for nothing
    params.adaptiveThreshWinSizeStep = 40  # 4 threshold passes instead of 9
    det.setDetectionParams(params)
    return det


@lru_cache(maxsize=1)
def _reference() -> np.ndarray:
    bgr = np.asarray(_detector().getRefColors(), np.uint8).reshape(24, 3)
    return srgb_to_linear(bgr[:, ::-1].copy())


def reference_linear() -> np.ndarray:
    """(24, 3) linear RGB of the card's published patch colours (OpenCV's sRGB table)."""
    return _reference().copy()


def find_colour_card(rgb: np.ndarray, search: CardSearch = CardSearch()) -> ColourCard | None:
    """The ColorChecker in ``rgb`` ((H, W, 3) uint8 sRGB), or None when there is none it trusts."""
    h, w = rgb.shape[:2]
    scale = min(1.0, search.max_side / max(h, w))
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1.0 else rgb
    det = _detector()
    if not det.process(np.ascontiguousarray(small[..., ::-1]), 1):
        return None
    checker = det.getBestColorChecker()
    # getChartsRGB: for each patch three rows (R, G, B) of [pixels, mean, sd, max, min], 0-255
    stats = np.asarray(checker.getChartsRGB(), np.float64).reshape(24, 3, 5)
    mean_srgb = stats[:, :, 1] / 255.0
    spread = stats[:, :, 2].max(axis=1)
    if float(np.median(spread)) > search.max_patch_sd:
        return None
    measured = srgb_to_linear(mean_srgb).astype(np.float64)
    reference = reference_linear().astype(np.float64)
    usable = [i for i in NEUTRAL_PATCHES if mean_srgb[i].max() < search.clip_level
              and measured[i].min() > 1e-4 and spread[i] <= search.max_patch_sd]
    if len(usable) < 3:
        return None
    m, r = measured[usable], reference[usable]
    gains = (m * r).sum(axis=0) / (m * m).sum(axis=0)
    corrected = (measured * gains).astype(np.float32)
    de = delta_e_2000(linear_to_lab(corrected), linear_to_lab(reference.astype(np.float32)))
    median_de = float(np.median(de))
    if not np.isfinite(median_de) or median_de > search.max_median_de:
        return None
    corners = np.asarray(checker.getBox(), np.float64).reshape(4, 2) / scale
    return ColourCard(corners=corners, measured=measured, reference=reference, gains=gains,
                      patches_fitted=len(usable), median_de=median_de)
