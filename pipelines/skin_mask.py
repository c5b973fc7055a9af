"""Skin mask of the canonical frame: which pixels are bare facial skin.

Two parts: geometric exclusions from the landmarks (eyes, brows, lips, nostrils), then a colour
model of this face's own skin, learnt from patches that are skin on almost every face (mid
cheeks, nose bridge, lower forehead). Pixels far from that model in CIELAB are hair, brows,
glasses, background or clothing. Working on the person's own colour makes it independent of skin
tone. The colour step runs at a coarse scale (``WORK_PX_PER_MM``) because masks need no fine detail.

Shading: the same skin in shadow (temples, jaw, under a frontal light's fall-off) or with a
darker complexion on the lower face has lower L* and, in proportion, lower chroma: CIELAB's a*
and b* scale roughly with L* + 16 when a colour is only darker or lighter. The chroma is therefore
also compared at the seeds' lightness (a*, b* x (L*seed + 16) / (L* + 16) for pixels darker than
the seeds), so shaded skin keeps its place in the model and only a different colour (hair,
background, clothing) is rejected. That rescaling also makes dark stubble, a beard or dark hair
strands look like skin, so it counts only where L* is about as smooth over ~2 mm as in the
seeds. The raw chroma still counts everywhere: where the seeds sit in a highlight (a frontal
flash on the cheeks), their chroma is paler than the rest of the skin's.
Measured on the 20 development faces: a model on raw a*, b* (chroma SD about 1.2) dropped the
temples and the lower face of the darker and the shaded faces (skin regions' visible share
down to 0), and a 5 % white-balance or a 5 deg rotation wobble then tipped a face into
``face_occluded``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.canonical import CanonicalFrame

WORK_PX_PER_MM = 2.5
CHROMA_NOISE_VAR = 1.0   # added to the seeds' a*/b* covariance: 1 unit of a*/b* noise
# ... and for smooth shaded skin: its chroma, rescaled, varies across a face more than in the seeds
SHADED_CHROMA_NOISE_VAR = 4.0
SMOOTHNESS_K = 2.0   # shaded skin's L* variation over 2 mm, at most this x the seeds' (stubble: 2.5-3.5x)
SHADING_GAIN = (1.0, 2.5)   # bounds of the rescaling: darker pixels only (lighter skin is mostly shine)
SLIVER_MM = 2.0     # skin strips narrower than this (between hair strands) are not measured
MAX_HOLE_CM2 = 2.0   # enclosed non-skin blobs up to ~16 mm across are spots or moles, kept as skin

# Seed patches (centre mm, radius mm), relative to the eye midpoint: skin on nearly every face.
_SEEDS_MM = (((-32.0, 35.0), 7.0), ((32.0, 35.0), 7.0), ((0.0, 12.0), 3.5), ((0.0, -32.0), 8.0))


@dataclass(frozen=True)
class SkinModel:
    """Robust colour statistics of the face's skin (CIELAB, L* 0-100)."""

    lab_median: np.ndarray      # (3,)
    chroma_cov_inv: np.ndarray  # (2, 2) inverse covariance of (a*, b*)
    l_spread: float             # robust std of L* within the seeds
    shaded_chroma_cov_inv: np.ndarray | None = None   # (2, 2), for smooth shaded skin (module docstring)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _seed_mask(shape, frame: CanonicalFrame, scale: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    spec = frame.spec
    for (x, y), r in _SEEDS_MM:
        cx, cy = spec.mm_to_px(np.array([[x, y]]))[0] * scale
        cv2.circle(mask, (int(round(cx)), int(round(cy))), max(1, int(round(r * spec.px_per_mm * scale))), 1, -1)
    return mask.astype(bool)


def fit_skin_model(lab: np.ndarray, seeds: np.ndarray) -> SkinModel:
    """Robust skin colour model from the seed pixels of a CIELAB image."""
    px = lab[seeds]
    med = np.median(px, axis=0)
    # Keep the central 80 % by L* so a stray highlight or shadow in a seed does not dominate.
    lo, hi = np.percentile(px[:, 0], [10, 90])
    core = px[(px[:, 0] >= lo) & (px[:, 0] <= hi)]
    cov = np.cov(core[:, 1:].T)
    mad = np.median(np.abs(core[:, 0] - med[0])) * 1.4826
    return SkinModel(lab_median=med, chroma_cov_inv=np.linalg.inv(cov + np.eye(2) * CHROMA_NOISE_VAR),
                     l_spread=float(max(mad, 2.0)),
                     shaded_chroma_cov_inv=np.linalg.inv(cov + np.eye(2) * SHADED_CHROMA_NOISE_VAR))


def _chroma_distance(lab: np.ndarray, model: SkinModel, gain: np.ndarray | None = None) -> np.ndarray:
    """Mahalanobis distance of each pixel's (a*, b*) to the model (float32 (H, W)); with
    ``gain``, of (a*, b*) x gain to the shaded-skin model."""
    cov_inv = model.chroma_cov_inv if gain is None else model.shaded_chroma_cov_inv
    (caa, cab), (_, cbb) = cov_inv.astype(np.float32)
    a, b = (lab[..., 1], lab[..., 2]) if gain is None else (lab[..., 1] * gain, lab[..., 2] * gain)
    da, db = a - np.float32(model.lab_median[1]), b - np.float32(model.lab_median[2])
    # written out for the 2 x 2 case (einsum was 4x slower)
    return np.sqrt(np.maximum(caa * da * da + 2.0 * cab * da * db + cbb * db * db, 0.0))


def _shading_gain(lab: np.ndarray, model: SkinModel) -> np.ndarray:
    """Per-pixel factor taking a*, b* to the seeds' lightness: (L*seed + 16) / (L* + 16), bounded."""
    gain = np.float32(model.lab_median[0] + 16.0) / (np.maximum(lab[..., 0], 0.0) + np.float32(16.0))
    return np.clip(gain, *SHADING_GAIN, out=gain)


def _smooth(l_star: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pixels whose L* varies over ~2 mm no more than ``SMOOTHNESS_K`` x the seeds' median
    variation: shaded skin is as smooth as lit skin; stubble, beard and hair strands are not."""
    mean = cv2.blur(l_star, (5, 5))
    sd = np.sqrt(np.maximum(cv2.blur(l_star * l_star, (5, 5)) - mean * mean, 0.0))
    return sd <= SMOOTHNESS_K * max(float(np.median(sd[seeds])), 0.5)


def _geometric_exclusions(shape, frame: CanonicalFrame, scale: float) -> np.ndarray:
    """Eyes, brows, lips and nostrils as filled ellipses (True = not skin)."""
    spec = frame.spec
    k = spec.px_per_mm * scale
    out = np.zeros(shape, np.uint8)

    def ellipse(center_mm, axes_mm, angle=0.0):
        c = spec.mm_to_px(np.array([center_mm]))[0] * scale
        cv2.ellipse(out, (int(round(c[0])), int(round(c[1]))),
                    (max(1, int(round(axes_mm[0] * k))), max(1, int(round(axes_mm[1] * k)))), angle, 0, 360, 1, -1)

    for name in ("left_eye", "right_eye"):
        e = frame.landmark_mm(name)
        ellipse(e, (16.0, 7.5))                            # eye opening with lids and lashes
        ellipse((e[0] * 1.05, e[1] - 15.0), (22.0, 6.5))   # brow
    ml, mr = frame.landmark_mm("mouth_left"), frame.landmark_mm("mouth_right")
    mc = (ml + mr) / 2.0
    half_width = float(np.hypot(*(ml - mr))) / 2.0
    angle = float(np.degrees(np.arctan2(ml[1] - mr[1], ml[0] - mr[0])))
    ellipse(mc, (half_width + 3.0, 9.0), angle)           # lips
    nose = frame.landmark_mm("nose")
    ellipse((nose[0], nose[1] + 3.0), (13.0, 5.0))        # nostrils
    return out.astype(bool)


def skin_mask(frame: CanonicalFrame, *, max_distance: float = 3.5) -> tuple[np.ndarray, SkinModel]:
    """Bool (H, W) skin mask of the canonical frame, and the fitted skin colour model.

    A pixel is skin when its (a*, b*) as is, or rescaled to the seeds' lightness where the skin is
    smooth (module docstring), has a Mahalanobis distance to the model below
    ``max_distance`` and its L* lies within [median - 22 - 4 spread, median + 18 + 4 spread]
    (shadowed skin under the brows and jaw is darker, shine lighter), it is not geometrically
    excluded, and it belongs to the large skin component(s) connected to the face's seeds.
    """
    h, w = frame.rgb.shape[:2]
    scale = WORK_PX_PER_MM / frame.spec.px_per_mm
    small = cv2.resize(frame.rgb, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                       interpolation=cv2.INTER_AREA)
    valid = cv2.resize(frame.valid.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    lab = _lab(cv2.GaussianBlur(small, (0, 0), 0.8))
    seeds = _seed_mask(small.shape[:2], frame, scale) & valid
    if seeds.sum() < 20:
        return np.zeros((h, w), bool), fit_skin_model(lab, np.ones(small.shape[:2], bool))
    model = fit_skin_model(lab, seeds)
    chroma_ok = _chroma_distance(lab, model) < max_distance
    chroma_ok |= (_chroma_distance(lab, model, _shading_gain(lab, model)) < max_distance) & _smooth(lab[..., 0], seeds)
    dl = lab[..., 0] - model.lab_median[0]
    colour_ok = chroma_ok & (dl > -22.0 - 4 * model.l_spread) & (dl < 18.0 + 4 * model.l_spread)
    # Fill enclosed holes up to the largest spot we measure: a mole or a dark spot is skin.
    max_hole_px = MAX_HOLE_CM2 * (WORK_PX_PER_MM * 10.0) ** 2
    mask = _fill_small_holes(colour_ok & valid, max_hole_px)
    mask = mask & ~_geometric_exclusions(small.shape[:2], frame, scale)
    mask = _clean(mask, seeds)
    full = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
    return full & frame.valid, model


def _fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Set to True the enclosed False components of ``mask`` smaller than ``max_area_px``."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = stats.T
    touches_border = (x == 0) | (y == 0) | (x + bw >= w) | (y + bh >= h)
    fill = (area <= max_area_px) & ~touches_border
    fill[0] = False
    return mask | fill[labels]


def _clean(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Close pinholes (pores, freckles); open away skin slivers under ~2 mm wide (skin seen
    between strands of hair or behind lashes, where every metric would read the hair's edges);
    keep the components touching a seed."""
    m = mask.astype(np.uint8)
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    side = max(3, int(round(SLIVER_MM * WORK_PX_PER_MM)) | 1)
    sliver = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, small)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, sliver)
    n, labels = cv2.connectedComponents(m, connectivity=4)
    keep = np.unique(labels[seeds & (m > 0)])
    keep = keep[keep > 0]
    return np.isin(labels, keep) if n > 1 else m.astype(bool)
