"""Colour science for the skin metrics: sRGB <-> linear RGB <-> CIELAB (D65), delta-E 2000, and
the colour normalisation every colour metric runs on.

Conventions (all functions):

- *sRGB* is IEC 61966-2-1 encoded RGB, either uint8 0-255 or float 0-1.
- *linear RGB* is float32, scene-referred, nominally 0-1 (1 = a perfect white at the exposure of
  the photo). After normalisation it may exceed 1 on highlights; nothing here clips it.
- *CIELAB* is D65 / 2 deg, float32, L* 0-100.

:func:`normalize_colour` takes a canonical face crop and returns linear RGB with the illumination
gradient across the face divided out and the white balance corrected, plus a
:class:`ColourCorrection` record of what was done, so a result can always say how its colours were
obtained.

Colour cards: a ColorChecker in the photo is found and read by :mod:`pipelines.colour_card`
(on the full photo, before the face crop this function receives); its gains arrive here as
``card_gains`` and win over the eye whites. See README.md, section "Colour and pigmentation".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipelines.errors import InvalidInput

# Rec. 709 / sRGB primaries, D65: relative luminance Y of linear RGB.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)

#: Reference names recorded in :attr:`ColourCorrection.reference`.
REFERENCE_SCLERA = "sclera"
REFERENCE_CARD = "colour_card"
REFERENCE_GREY_WORLD = "grey_world_non_skin"
REFERENCE_NONE = "none"


def _srgb_decode(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4)


_SRGB8_TO_LINEAR = _srgb_decode(np.arange(256) / 255.0).astype(np.float32)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8 0-255, or float 0-1) -> linear RGB float32 of the same shape.

    uint8 goes through a 256-entry table (about 10 ms for 3 MP); floats through the exact
    piecewise curve.
    """
    srgb = np.asarray(srgb)
    if srgb.dtype == np.uint8:
        return cv2.LUT(srgb, _SRGB8_TO_LINEAR) if srgb.ndim in (2, 3) and srgb.shape[-1] in (1, 3, 4) \
            else _SRGB8_TO_LINEAR[srgb]
    if not np.issubdtype(srgb.dtype, np.floating):
        raise InvalidInput(f"sRGB must be uint8 or float, got {srgb.dtype}", field="srgb")
    return _srgb_decode(srgb).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (float) -> sRGB float32 0-1 (clipped to 0-1)."""
    x = np.clip(np.asarray(linear, np.float32), 0.0, 1.0)
    out = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)
    return out.astype(np.float32)


_LUT_STEPS = 65535
# sRGB uint8 of each of 65536 evenly spaced linear values: a table look-up is ~5x faster than the
# power curve on a 3 MP frame, and the step (1.5e-5 linear) is under 0.1 of an 8-bit level.
_LINEAR16_TO_SRGB8 = np.clip(np.rint(linear_to_srgb(np.arange(_LUT_STEPS + 1, dtype=np.float64) / _LUT_STEPS)
                                     * 255.0), 0, 255).astype(np.uint8)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (float) -> sRGB uint8, rounded and clipped to the gamut."""
    x = np.asarray(linear, np.float32)
    if x.ndim == 3 and x.shape[2] == 3 and x.size:
        # OpenCV scales, rounds and saturates to uint16 in one pass, 4x faster than numpy's
        # multiply, clip and cast
        idx = cv2.multiply(x, (float(_LUT_STEPS),) * 4, dtype=cv2.CV_16U)
    else:
        idx = np.clip(x * np.float32(_LUT_STEPS) + np.float32(0.5), 0, _LUT_STEPS).astype(np.uint16)
    return _LINEAR16_TO_SRGB8[idx]


def luminance(linear: np.ndarray) -> np.ndarray:
    """Relative luminance Y (float32, same units as the input) of linear RGB (..., 3)."""
    return np.asarray(linear, np.float32) @ LUMA


# sRGB (D65) -> XYZ, and the D65 white, for the numpy path (inputs above 1).
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    np.float32,
)
_D65 = np.array([0.950456, 1.0, 1.088754], np.float32)


def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """Linear RGB float (H, W, 3) or (N, 3) -> CIELAB D65 float32 of the same shape.

    Uses OpenCV's float32 ``COLOR_LRGB2Lab`` (about 20 ms for 3 MP on one core) when every value is
    within 0-1; OpenCV clips above 1, so an image with highlights above 1 takes an exact vectorised
    numpy path instead. Matches ``skimage.color.rgb2lab`` of the sRGB-encoded input within 0.01.
    """
    arr = np.asarray(linear, np.float32)
    if arr.shape[-1] != 3:
        raise InvalidInput(f"linear RGB must end in 3 channels, got shape {arr.shape}", field="linear")
    shape = arr.shape
    img = arr.reshape(-1, 1, 3) if arr.ndim != 3 else arr
    if img.size and float(img.max()) <= 1.0 and float(img.min()) >= 0.0:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_LRGB2Lab).reshape(shape)
    xyz = np.maximum(img.reshape(-1, 3), 0.0) @ _RGB_TO_XYZ.T / _D65
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[:, 0] = np.where(xyz[:, 1] > 0.008856, 116.0 * f[:, 1] - 16.0, 903.3 * xyz[:, 1])
    lab[:, 1] = 500.0 * (f[:, 0] - f[:, 1])
    lab[:, 2] = 200.0 * (f[:, 1] - f[:, 2])
    return lab.astype(np.float32).reshape(shape)


def lab_to_linear(lab: np.ndarray) -> np.ndarray:
    """CIELAB D65 float (H, W, 3) or (N, 3) -> linear RGB float32 (clipped to 0-1 by OpenCV)."""
    arr = np.asarray(lab, np.float32)
    if arr.shape[-1] != 3:
        raise InvalidInput(f"CIELAB must end in 3 channels, got shape {arr.shape}", field="lab")
    img = arr.reshape(-1, 1, 3) if arr.ndim != 3 else np.ascontiguousarray(arr)
    return cv2.cvtColor(img, cv2.COLOR_Lab2LRGB).reshape(arr.shape)


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference between CIELAB arrays (..., 3) (broadcast); float64 (...).

    A thin wrapper over ``skimage.color.deltaE_ciede2000`` (kL = kC = kH = 1), meant for small
    arrays such as one mean colour per spot.
    """
    from skimage.color import deltaE_ciede2000

    a = np.asarray(lab1, np.float64)
    b = np.asarray(lab2, np.float64)
    a, b = np.broadcast_arrays(a, b)
    return deltaE_ciede2000(a, b, channel_axis=-1)


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class ColourCorrection:
    """What :func:`normalize_colour` did to the image (all gains apply to linear RGB).

    ``reference``: "colour_card" (a ColorChecker in the photo, pipelines/colour_card.py, gave white
    balance and exposure), "sclera" (the caller's eye-white mask was neutralised), "grey_world_non_skin"
    (mean of near-neutral non-skin pixels was neutralised) or "none" (no usable reference: gains 1).
    ``gains``: white-balance gains (R, G, B) applied, after bounding; they leave the luminance of
    the reference colour unchanged. ``raw_gains``: the gains before bounding.
    ``exposure_gain``: scalar applied so the sclera reaches ``reference_y`` (1.0 unless the sclera
    was used and exposure normalisation was asked for).
    ``gradient_coefficients``: (c0, cx, cy, cxx, cxy, cyy) of the skin log-luminance surface
    s(x, y) = c0 + cx x + cy y + cxx x^2 + cxy x y + cyy y^2, x and y in -1..1 over the image width
    and height; the image was multiplied by exp(mean_skin(s) - s). All zeros if not fitted.
    ``gradient_ratio``: max/min of exp(s) over the skin (1.0 = no gradient).
    ``clipped``: a gain hit its bound; ``clipped_bounds`` names which ("gain_r", "gain_g",
    "gain_b", "exposure", "gradient").
    ``saturated_fraction``: fraction of skin pixels with a channel at 255 in the input.
    ``reference_pixels``: pixels the white balance was estimated from.
    """

    reference: str
    gains: tuple[float, float, float]
    raw_gains: tuple[float, float, float]
    exposure_gain: float
    gradient_coefficients: tuple[float, float, float, float, float, float]
    gradient_ratio: float
    clipped: bool
    clipped_bounds: tuple[str, ...] = field(default_factory=tuple)
    saturated_fraction: float = 0.0
    reference_pixels: int = 0

    def as_dict(self) -> dict:
        return {
            "reference": self.reference,
            "gains": list(self.gains),
            "raw_gains": list(self.raw_gains),
            "exposure_gain": self.exposure_gain,
            "gradient_coefficients": list(self.gradient_coefficients),
            "gradient_ratio": self.gradient_ratio,
            "clipped": self.clipped,
            "clipped_bounds": list(self.clipped_bounds),
            "saturated_fraction": self.saturated_fraction,
            "reference_pixels": self.reference_pixels,
        }


def _check_mask(mask: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InvalidInput(f"{name} has shape {mask.shape}, image is {shape}", field=name)
    if mask.dtype != np.bool_:
        raise InvalidInput(f"{name} must be a bool mask, got {mask.dtype}", field=name)
    return mask


def _grid_shape(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(rows, cols) of a grid of at most ``max_side`` cells a side over an (h, w) image. When a
    whole number of pixels per cell divides both sides, that grid: OpenCV's INTER_AREA is about
    10x faster for a whole-number factor (the 1400 x 1800 canonical frame bins by 20 into 70 x 90
    cells for the lighting fit)."""
    k0 = -(-max(h, w) // max_side)
    for k in range(k0, 2 * k0 + 1) if k0 > 1 else ():   # the finest such grid, if one is near
        if h % k == 0 and w % k == 0:
            return h // k, w // k
    s = min(1.0, max_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _poly_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def fit_illumination(
    log_y: np.ndarray, weight: np.ndarray, *, min_weight: float = 0.9, iterations: int = 3
) -> tuple[np.ndarray, np.ndarray] | None:
    """Robust least-squares 2-D quadratic fit of a log-luminance grid.

    ``log_y`` float (h, w); ``weight`` float 0-1 (skin fraction of each cell). Cells with weight
    >= ``min_weight`` are fitted; cells more than 2.5 robust sigmas off the fit are dropped and the
    fit repeated (spots, shadows, highlights). Returns (coefficients (6,), fitted surface (h, w)),
    or None with fewer than 12 usable cells.
    """
    h, w = log_y.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (xs + 0.5) / w * 2.0 - 1.0
    y = (ys + 0.5) / h * 2.0 - 1.0
    terms = _poly_terms(x, y)
    use = (weight >= min_weight) & np.isfinite(log_y)
    if use.sum() < 12:
        return None
    coef = np.zeros(6)
    for _ in range(iterations):
        a = terms[use]
        coef, *_ = np.linalg.lstsq(a, log_y[use].astype(np.float64), rcond=None)
        resid = log_y - terms @ coef
        r = resid[use]
        sigma = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-6
        keep = use & (np.abs(resid) <= 2.5 * sigma)
        if keep.sum() < 12 or keep.sum() == use.sum():
            break
        use = keep
    return coef, (terms @ coef).astype(np.float32)


def _bounded(values: np.ndarray, lo: float, hi: float, names: list[str]) -> tuple[np.ndarray, list[str]]:
    out = np.clip(values, lo, hi)
    hit = [n for n, v in zip(names, values) if v < lo or v > hi]
    return out, hit


#: Fewest eye-white pixels that make a usable reference.
MIN_EYE_WHITE_PX = 30


def select_eye_white(
    lin: np.ndarray,
    zone: np.ndarray,
    skin: np.ndarray,
    valid: np.ndarray,
    corr_full: np.ndarray | None = None,
    *,
    min_redness_drop: float = 0.15,
    min_yellowness_drop: float = 0.10,
    max_darkening: float = 0.7,
    band: tuple[float, float] = (35.0, 65.0),
) -> tuple[np.ndarray, int] | None:
    """Mean linear RGB (3,) of the eye whites inside ``zone``, and how many pixels it came from;
    None when fewer than ``MIN_EYE_WHITE_PX`` qualify.

    Everything is judged relative to the face's own skin, in log space, so neither a global
    exposure change nor a white-balance change (per-channel gains) alters which pixels are
    chosen: a candidate's log(R/G) is at least ``min_redness_drop`` and its log(G/B) at least
    ``min_yellowness_drop`` below the skin's median (the sclera is far less red and yellow than
    any skin; lids, caruncle and skin left in the zone are not), and its log-luminance at most
    ``max_darkening`` below the skin's median (lashes, pupil, iris and their noisy chroma are
    out). Of the candidates, ranked by luminance (clipped pixels rank at the top), those between
    the ``band`` percentiles (the middle of the eye white's luminance distribution) are averaged:
    the brightest (catch-lights, pixels clipped on an over-exposed photo, which would move the
    estimate with exposure) and the darkest (lid shadow, vessels) are left out; clipped or black
    pixels in the band are skipped. ``lin`` float32 (H, W, 3) linear RGB; masks bool (H, W); ``corr_full`` an
    optional (H, W) illumination correction multiplied in first.
    """
    bx, by, bw, bh = cv2.boundingRect(zone.view(np.uint8))   # the zone is two small eye openings
    ys, xs = np.nonzero(zone[by:by + bh, bx:bx + bw])
    if ys.size < MIN_EYE_WHITE_PX:
        return None
    ys += by
    xs += bx
    pix = lin[ys, xs].astype(np.float64) + 1e-5
    if corr_full is not None:
        pix *= corr_full[ys, xs][:, None]
    sk = skin[::3, ::3]
    if np.count_nonzero(sk) < 50:
        return None
    sp = lin[::3, ::3][sk].astype(np.float64) + 1e-5
    if corr_full is not None:
        sp *= corr_full[::3, ::3][sk][:, None]
    luma = LUMA.astype(np.float64)

    def feats(p):
        return np.log(p[:, 0] / p[:, 1]), np.log(p[:, 1] / p[:, 2]), np.log(p @ luma)

    s_rg, s_gb, s_y = (np.median(f) for f in feats(sp))
    rg, gb, ly = feats(pix)
    cand = (rg <= s_rg - min_redness_drop) & (gb <= s_gb - min_yellowness_drop) & (ly >= s_y - max_darkening)
    if np.count_nonzero(cand) < MIN_EYE_WHITE_PX:
        return None
    lyc = ly[cand]
    lo, hi = np.percentile(lyc, band)
    chosen = cand.copy()
    chosen[cand] = (lyc >= lo) & (lyc <= hi)
    chosen &= valid[ys, xs]
    n = int(np.count_nonzero(chosen))
    if n < MIN_EYE_WHITE_PX:
        return None
    return pix[chosen].mean(axis=0), n


def normalize_colour(
    rgb: np.ndarray,
    skin_mask: np.ndarray,
    *,
    reference_mask: np.ndarray | None = None,
    card_gains: np.ndarray | None = None,
    correct_gradient: bool = True,
    reference_y: float | None = 0.50,
    reference_white: tuple[float, float, float] = (1.0, 1.0, 1.0),
    gain_bounds: tuple[float, float] = (0.7, 1.4),
    exposure_bounds: tuple[float, float] = (0.5, 2.0),
    neutral_tolerance: float = 0.12,
) -> tuple[np.ndarray, ColourCorrection]:
    """Remove the illumination gradient and correct the white balance of a face crop.

    Parameters
    ----------
    rgb : uint8 (H, W, 3) sRGB, the canonical face frame.
    skin_mask : bool (H, W), skin only (no hair, brows, eyes, lips, background).
    reference_mask : bool (H, W) or None, where the eye whites (sclera) can be: the eye openings
        from the eye landmarks, without the iris. The eye-white pixels are chosen inside it by
        :func:`select_eye_white` (whiter than this face's own skin, not dark, a luminance-rank
        band), so the choice does not move with exposure or white balance. With at least
        ``MIN_EYE_WHITE_PX`` such pixels their colour is made to match ``reference_white``.
        Otherwise near-neutral non-skin pixels are used (grey world over
        non-skin: chromaticity within ``neutral_tolerance`` of grey, refined twice at tighter
        tolerance, so a saturated background is ignored rather than neutralised); otherwise none.
    card_gains : (3,) linear RGB gains read off a colour card in the photo
        (:func:`pipelines.colour_card.find_colour_card`), or None. They win over the eye whites:
        split into white-balance gains that keep a neutral's luminance and an exposure gain, each
        bounded like the others.
    correct_gradient : fit a 2-D quadratic to the skin's log-luminance (on a grid of at most 96
        cells a side, robust to spots and shadows) and divide it out, keeping the skin's mean
        log-luminance, so a lighting ramp across the face does not read as pigmentation.
    reference_y : luminance the sclera is scaled to (exposure normalisation; 0.50 is L* 76, a
        typical eye white in a well-exposed clinic photo), or None to leave exposure alone. Only
        applied with the sclera reference: the background of a photo says nothing reliable about
        exposure.
    reference_white : relative linear RGB the reference should have (neutral by default).
    gain_bounds, exposure_bounds : each white-balance gain, and the exposure gain, are clipped to
        these; hitting one is recorded in the result.

    Returns
    -------
    linear : float32 (H, W, 3) corrected linear RGB (not clipped; highlights may exceed 1).
    correction : :class:`ColourCorrection`.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidInput(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}", field="rgb")
    h, w = rgb.shape[:2]
    skin = _check_mask(skin_mask, (h, w), "skin_mask")
    ref = _check_mask(reference_mask, (h, w), "reference_mask")
    lin = srgb_to_linear(rgb)
    clipped: list[str] = []
    # per-pixel max channel through OpenCV: numpy's reductions over the channel axis are ~10x slower
    r8, g8, b8 = cv2.split(rgb)
    max8 = cv2.max(cv2.max(r8, g8), b8)

    n_skin = int(np.count_nonzero(skin))
    saturated = float(np.count_nonzero((max8 == 255) & skin)) / max(n_skin, 1)

    # ---- illumination gradient: quadratic in log-luminance over the skin
    coef = np.zeros(6)
    ratio = 1.0
    corr_full = None  # (H, W) float32 multiplier, or None
    corr_grid = None
    if correct_gradient and n_skin >= 1000:
        gh, gw = _grid_shape(h, w, 96)
        y_full = cv2.transform(lin, LUMA.reshape(1, 3))
        wmask = skin.view(np.uint8).astype(np.float32)
        y_sum = cv2.resize(y_full * wmask, (gw, gh), interpolation=cv2.INTER_AREA)
        wgt = cv2.resize(wmask, (gw, gh), interpolation=cv2.INTER_AREA)
        log_y = np.log(np.maximum(y_sum / np.maximum(wgt, 1e-6), 1e-4))
        fit = fit_illumination(log_y, wgt)
        if fit is not None and np.any(wgt >= 0.5):
            coef, surface = fit
            on_skin = surface[wgt >= 0.5]
            lo, hi = float(on_skin.min()), float(on_skin.max())
            mean_s = float(np.average(surface, weights=wgt))
            ratio = float(np.exp(hi - lo))
            corr_grid = np.exp(mean_s - np.clip(surface, lo, hi)).astype(np.float32)
            corr_full = cv2.resize(corr_grid, (w, h), interpolation=cv2.INTER_LINEAR)

    # ---- white balance, estimated on the gradient-corrected colours
    valid = (max8 < 250) & (max8 > 12)  # not clipped, not in the noise
    reference = REFERENCE_NONE
    ref_colour = None
    n_ref = 0
    target = np.asarray(reference_white, np.float64)
    target = target / float(target @ LUMA.astype(np.float64))
    raw_gains = np.ones(3)
    gains = np.ones(3)
    exposure = 1.0
    if card_gains is not None:
        card = np.asarray(card_gains, np.float64)
        card_exposure = float(card @ LUMA.astype(np.float64))   # the gain of a neutral's luminance
        raw_gains = card / card_exposure
        gains, hit = _bounded(raw_gains, *gain_bounds, ["gain_r", "gain_g", "gain_b"])
        clipped += hit
        e, hit = _bounded(np.array([card_exposure]), *exposure_bounds, ["exposure"])
        exposure = float(e[0])
        clipped += hit
        reference = REFERENCE_CARD
    else:
        if ref is not None:
            picked = select_eye_white(lin, ref, skin, valid, corr_full)
            if picked is not None:
                ref_colour, n_ref = picked
                reference = REFERENCE_SCLERA
        if ref_colour is None:
            ref_colour, n_ref = _grey_world_non_skin(lin, corr_grid, skin if ref is None else (skin | ref), valid,
                                                     neutral_tolerance)
            if ref_colour is not None:
                reference = REFERENCE_GREY_WORLD
        if ref_colour is not None and np.all(ref_colour > 1e-6):
            y_ref = float(ref_colour @ LUMA.astype(np.float64))
            raw_gains = y_ref * target / ref_colour
            gains, hit = _bounded(raw_gains, *gain_bounds, ["gain_r", "gain_g", "gain_b"])
            clipped += hit
            if reference == REFERENCE_SCLERA and reference_y is not None:
                y_bal = float((ref_colour * gains) @ LUMA.astype(np.float64))
                e, hit = _bounded(np.array([reference_y / y_bal]), *exposure_bounds, ["exposure"])
                exposure = float(e[0])
                clipped += hit
    total = (gains * exposure).astype(np.float32)

    # ---- apply both in one pass
    if corr_grid is not None:
        # the correction is smooth: scaled per channel on its grid and resized once, then
        # multiplied in place (no full-frame temporaries)
        corr3 = cv2.resize(cv2.merge([corr_grid * t for t in total]), (w, h), interpolation=cv2.INTER_LINEAR)
        lin = cv2.multiply(lin, corr3, dst=lin)
    elif not np.allclose(total, 1.0):
        lin *= total
    lin = np.ascontiguousarray(lin, np.float32)

    return lin, ColourCorrection(
        reference=reference,
        gains=tuple(float(g) for g in gains),
        raw_gains=tuple(float(g) for g in raw_gains),
        exposure_gain=exposure,
        gradient_coefficients=tuple(float(c) for c in coef),
        gradient_ratio=ratio,
        clipped=bool(clipped),
        clipped_bounds=tuple(clipped),
        saturated_fraction=saturated,
        reference_pixels=n_ref,
    )


def _grey_world_non_skin(
    lin: np.ndarray, corr_grid: np.ndarray | None, exclude: np.ndarray, valid: np.ndarray, tolerance: float
) -> tuple[np.ndarray | None, int]:
    """Mean linear RGB of the near-neutral non-skin pixels, or (None, 0) if too few.

    Works on a grid of at most 256 cells a side. A pixel is near-neutral when each chromaticity
    r, g, b = c / (R + G + B) is within ``tolerance`` of 1/3 after the current gains; the
    tolerance is halved twice, re-estimating the gains each time.
    """
    h, w = lin.shape[:2]
    gh, gw = _grid_shape(h, w, 256)
    use = (~exclude & valid).view(np.uint8).astype(np.float32)
    small = cv2.resize(lin, (gw, gh), interpolation=cv2.INTER_AREA)
    if corr_grid is not None:  # the gradient correction is smooth: apply it on the grid
        small = small * cv2.resize(corr_grid, (gw, gh), interpolation=cv2.INTER_LINEAR)[..., None]
    small = small.reshape(-1, 3).astype(np.float64)
    frac = cv2.resize(use, (gw, gh), interpolation=cv2.INTER_AREA).reshape(-1)
    cand = small[frac >= 0.99]
    min_px = max(50, int(0.02 * gh * gw))
    if cand.shape[0] < min_px:
        return None, 0
    gains = np.ones(3)
    colour = None
    n = 0
    for tol in (tolerance, tolerance / 2, tolerance / 4):
        c = cand * gains
        chrom = c / np.maximum(c.sum(axis=1, keepdims=True), 1e-9)
        near = np.all(np.abs(chrom - 1.0 / 3.0) <= tol, axis=1)
        if near.sum() < min_px:
            break
        colour = cand[near].mean(axis=0)
        n = int(near.sum())
        gains = float(colour @ LUMA.astype(np.float64)) / colour
    if colour is None:
        return None, 0
    # report in full-resolution pixels
    return colour, int(round(n * (h * w) / (gh * gw)))
