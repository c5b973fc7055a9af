"""Skin texture on the canonical face frame: roughness, pores and shine, per region.

Input: the canonical frame as sRGB ``uint8`` (H, W, 3) at ``px_per_mm`` (canonical pixels per mm),
region masks (``bool`` (H, W), already intersected with skin) and the skin mask. Everything is
measured on CIE L* (see :mod:`pipelines.metrics.luminance`), in physical units:

``roughness``            RMS of L* band-passed to structures about 1-4 mm across: the
                         difference of Gaussians G(0.5 mm) - G(2 mm) of L*, in L* units (>= 0;
                         young adult faces 1.1-1.8, coarse skin 3 and more), over the skin
                         between the ``marks`` (spots and lines the other families measure).
                         The fine edge is a total blur that counts the photo's own (0.6 native
                         px), so the band is the same from 2.5 px/mm up. Illumination gradients
                         and blotches (> ~7 mm) and camera noise (< ~0.5 mm) fall outside it.
``pore_density_per_cm2`` dark round blobs 0.1-0.5 mm across per cm^2 of region: scale-normalised
                         LoG (as differences of Gaussians, sigma = d / (2 sqrt 2) for diameters d
                         a factor <= 1.41 apart), 3 x 3 local maxima of the maximum over scales,
                         best scale inside the band (a guard scale on each side rejects grain and
                         larger spots), centre contrast >= max(3 delta L*, 3 robust std of that
                         scale's response over the skin), round by their Hessian (eigenvalue
                         ratio >= 0.3: wrinkles are not pores).
``pore_diameter_mm``     mean diameter of those pores, 2 sqrt(2) x the LoG scale of best response
                         (the zero-crossing diameter of a Gaussian blob).
``shine_pct``            % of the region's area that is specular: L* above the skin's median by
                         max(8, 3 robust std) L* and HSV saturation below 0.6 x the skin's median
                         saturation.

Pores need resolution: with an effective resolution (the lower of ``px_per_mm`` and the photo's
``native_px_per_mm``) under 8 px/mm a 0.25 mm pore spans less than 2 real pixels, so the pore
metrics are None and the warning ``pores_unresolved`` is emitted. Roughness needs 2.5 px/mm
(``roughness_unresolved``), under which the quality gate rejects a photo anyway. The constants
live in :class:`TextureParams`; the overlay maps are built lazily, on first access. README.md,
section "Texture and wrinkle metrics" has the long form.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import cv2
import numpy as np

from pipelines.metrics.colour import linear_to_srgb8
from pipelines.metrics.luminance import (
    analysis_box,
    area_cm2,
    as_u8,
    check_inputs,
    check_mask,
    effective_px_per_mm,
    fill_outside,
    SkinLuminance,
    mask_box,
    mask_on_grid,
    pad_to_multiple,
    skin_luminance,
    union_mask,
)

Warning_ = tuple[str, str]


@dataclass(frozen=True)
class TextureParams:
    """Constants of the texture metrics (one versioned place; defaults are the documented ones)."""

    roughness_sigmas_mm: tuple[float, float] = (0.5, 2.0)
    roughness_map_sigma_mm: float = 2.0
    roughness_min_px_per_mm: float = 2.5  # the quality gate's own floor: every accepted photo
    native_blur_px: float = 0.6  # a photo's own blur (optics, demosaicing, pixel area), native px
    roughness_work_px_per_mm: float = 5.0
    pore_diameter_mm: tuple[float, float] = (0.1, 0.5)
    pore_min_native_px: float = 2.0  # a measurable pore spans >= 2 native pixels
    pore_min_px_per_mm: float = 8.0  # below this the 0.25 mm pores typical of faces are unresolved
    pore_scale_ratio: float = 2.0 ** 0.5
    pore_min_contrast: float = 3.0  # delta L* at the centre of a Gaussian blob
    pore_noise_k: float = 3.0  # ... and >= k x the robust std of that scale's response over the skin
    pore_min_roundness: float = 0.3  # smaller / larger Hessian eigenvalue at the pore
    shine_min_delta_l: float = 8.0
    shine_k_mad: float = 3.0
    shine_sat_frac: float = 0.6
    min_region_area_cm2: float = 0.05
    mark_margin_mm: float = 1.0  # marks (spots, lines) are filled from this far around them
    mark_fill_sigma_mm: float = 1.5
    mark_max_share: float = 0.25  # roughness is of the skin between marks while >= this share is left


@dataclass(frozen=True)
class TextureMetrics:
    """Texture of one region (or the whole face). None where not measurable (see warnings)."""

    area_cm2: float
    roughness: float | None
    pore_count: int | None
    pore_density_per_cm2: float | None
    pore_diameter_mm: float | None
    shine_pct: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextureResult:
    """``face`` pools the union of the region masks (the skin mask when no region is given).
    ``pores`` is float32 (N, 4): x, y (canonical px), diameter (mm), contrast (delta L*).
    ``warnings`` are (code, message). The overlay maps are full-frame and built on first access:
    ``pore_mask`` bool (H, W), a disc per detected pore; ``roughness_map`` float32 (H, W), the
    local RMS of the band-passed L* (2 mm window; 0 off skin)."""

    face: TextureMetrics
    regions: dict[str, TextureMetrics]
    warnings: list[Warning_]
    pores: np.ndarray
    px_per_mm: float
    params: TextureParams = field(default_factory=TextureParams)
    shape: tuple[int, int] = (0, 0)
    _skin: np.ndarray | None = field(default=None, repr=False)
    _rmap: np.ndarray | None = field(default=None, repr=False)  # on the 1/f grid of _box
    _box: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), repr=False)
    _f: int = field(default=1, repr=False)

    @cached_property
    def pore_mask(self) -> np.ndarray:
        pm = np.zeros(self.shape, np.uint8)
        ppm = self.px_per_mm
        for x, y, d in self.pores[:, :3].tolist():
            cv2.circle(pm, (int(x * 4 + 0.5), int(y * 4 + 0.5)), max(1, int(d * ppm * 2 + 0.5)), 1, -1,
                       cv2.LINE_8, 2)
        return pm.view(bool)

    @cached_property
    def roughness_map(self) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        if self._rmap is None:
            return out
        y0, y1, x0, x1 = self._box
        f = self._f
        r = self._rmap
        if f > 1:
            r = cv2.resize(r, (r.shape[1] * f, r.shape[0] * f), interpolation=cv2.INTER_LINEAR)
        cv2.copyTo(r[:y1 - y0, :x1 - x0], as_u8(self._skin[y0:y1, x0:x1]), out[y0:y1, x0:x1])
        return out

    def as_dict(self) -> dict:
        """Metrics and warnings as plain JSON-able values (no maps)."""
        return {
            "face": self.face.as_dict(),
            "regions": {k: v.as_dict() for k, v in self.regions.items()},
            "warnings": [list(w) for w in self.warnings],
        }


def measure_texture(
    rgb: np.ndarray,
    masks: Mapping[str, np.ndarray],
    px_per_mm: float,
    *,
    skin_mask: np.ndarray,
    native_px_per_mm: float | None = None,
    luminance: SkinLuminance | None = None,
    marks: np.ndarray | None = None,
    params: TextureParams | None = None,
) -> TextureResult:
    """Roughness, pores and shine per region of the canonical frame.

    ``rgb`` sRGB uint8 or linear RGB float32 (H, W, 3); ``masks`` region name -> bool (H, W);
    ``px_per_mm`` the frame's scale; ``skin_mask`` bool (H, W); ``native_px_per_mm`` the photo's own scale when the frame
    was resampled from it (None: same as ``px_per_mm``); ``luminance`` an optional
    :func:`~pipelines.metrics.luminance.skin_luminance` of the same frame, to share the L*
    conversion with the wrinkle metrics (recomputed when it does not cover the masks);
    ``marks`` an optional bool (H, W) of what the other families measure (the brown spots and
    the wrinkle lines found): roughness reads their L* filled in from the skin around them and
    is the relief of the skin between them, so a new spot or line moves its own score, not this.
    """
    p = params or TextureParams()
    rgb, masks, skin = check_inputs(rgb, masks, skin_mask, px_per_mm, native_px_per_mm)
    if marks is not None:
        marks = check_mask(marks, skin.shape, "marks")
    ppm = float(px_per_mm)
    ppm_eff = effective_px_per_mm(ppm, native_px_per_mm)
    h, w = rgb.shape[:2]
    warnings: list[Warning_] = []

    region_list = list(masks.items())
    boxes = {name: mask_box(m) for name, m in region_list}
    face_mask = union_mask([m for _, m in region_list], (h, w), list(boxes.values())) if region_list else skin
    face_box = mask_box(face_mask)
    skin_box = mask_box(skin)

    rough_ok = ppm_eff >= p.roughness_min_px_per_mm
    pores_ok = ppm_eff >= p.pore_min_px_per_mm
    if not rough_ok:
        warnings.append(("roughness_unresolved",
                         f"effective resolution {ppm_eff:.1f} px/mm < {p.roughness_min_px_per_mm:g} px/mm: "
                         "roughness not measured"))
    if not pores_ok:
        warnings.append(("pores_unresolved",
                         f"effective resolution {ppm_eff:.1f} px/mm < {p.pore_min_px_per_mm:g} px/mm: a 0.25 mm "
                         "pore spans under 2 native pixels; pore metrics not measured"))

    f_r = max(1, int(ppm // p.roughness_work_px_per_mm))
    box = analysis_box([skin_box, face_box], (h, w), margin_px=int(math.ceil(3.0 * ppm)), multiple=f_r)
    if box is None:
        warnings.append(("no_skin", "skin mask and region masks are empty"))
        empty = TextureMetrics(0.0, None, None, None, None, None)
        return TextureResult(empty, {k: empty for k, _ in region_list}, warnings,
                             np.zeros((0, 4), np.float32), ppm, p, (h, w), skin)
    if luminance is None or not luminance.covers(box, (h, w), ppm):
        luminance = skin_luminance(rgb, skin, ppm, box=box)
    y0, y1, x0, x1 = luminance.box
    rgb_c = rgb[y0:y1, x0:x1]
    skin_c = skin[y0:y1, x0:x1]
    L, Lf = luminance.lstar, luminance.filled

    # -- roughness (on a ~5 px/mm grid) ---------------------------------------------------------
    band2 = rmap = off_marks = None
    if rough_ok:
        marks_c = None if marks is None else pad_to_multiple(as_u8(marks[y0:y1, x0:x1]) * np.uint8(255), f_r)
        band2, rmap, off_marks = _roughness_maps(pad_to_multiple(Lf, f_r), ppm, ppm_eff, f_r, p, marks_c)

    # -- pores ----------------------------------------------------------------------------------
    pores = np.zeros((0, 4), np.float32)
    if pores_ok:
        pores = _detect_pores(Lf, skin_c, ppm, ppm_eff, p)
        pores[:, 0] += x0
        pores[:, 1] += y0

    # -- shine ----------------------------------------------------------------------------------
    shine_c = _shine_map(rgb_c, L, skin_c, p)

    # -- per-region statistics -------------------------------------------------------------------
    pxs = np.clip(np.rint(pores[:, 0]).astype(np.intp), 0, w - 1)
    pys = np.clip(np.rint(pores[:, 1]).astype(np.intp), 0, h - 1)

    def stats(mask: np.ndarray, b, name: str) -> TextureMetrics:
        if b is None:
            return TextureMetrics(0.0, None, None, None, None, None)
        by0, by1, bx0, bx1 = b
        m8 = as_u8(mask[by0:by1, bx0:bx1])
        n = cv2.countNonZero(m8)
        a = area_cm2(n, ppm)
        if a < p.min_region_area_cm2:
            warnings.append(("region_too_small", f"{name}: {a:.3f} cm^2 < {p.min_region_area_cm2:g} cm^2"))
            return TextureMetrics(a, None, None, None, None, None)
        rough = None
        if band2 is not None:
            grid = mask_on_grid(mask, (y0, x0), (band2.shape[0] * f_r, band2.shape[1] * f_r), f_r, b)
            if grid is not None:
                (gy0, gy1, gx0, gx1), mg = grid
                if off_marks is not None:   # the skin between the marks, unless they cover most of it
                    between = mg & off_marks[gy0:gy1, gx0:gx1]
                    if np.count_nonzero(between) >= p.mark_max_share * np.count_nonzero(mg):
                        mg = between
                rough = float(math.sqrt(max(0.0, cv2.mean(band2[gy0:gy1, gx0:gx1], mask=as_u8(mg))[0])))
        cy0, cy1, cx0, cx1 = by0 - y0, by1 - y0, bx0 - x0, bx1 - x0
        shine = 100.0 * cv2.countNonZero(cv2.bitwise_and(shine_c[cy0:cy1, cx0:cx1], m8)) / n
        count = dens = diam = None
        if pores_ok:
            inside = mask[pys, pxs]
            count = int(np.count_nonzero(inside))
            dens = count / a
            diam = float(pores[inside, 2].mean()) if count else None
        return TextureMetrics(a, rough, count, dens, diam, shine)

    regions = {name: stats(m, boxes[name], name) for name, m in region_list}
    face = stats(face_mask, face_box, "face")
    return TextureResult(face, regions, warnings, pores, ppm, p, (h, w), skin, rmap, (y0, y1, x0, x1), f_r)


def _roughness_maps(Lf: np.ndarray, ppm: float, ppm_eff: float, f: int, p: TextureParams,
                    marks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(band^2, local RMS map, off-marks mask or None), all on the 1/f working grid; ``Lf`` and
    ``marks`` (uint8, 0/255, or None) are crops whose sides are multiples of f.

    The marks, grown by ``mark_margin_mm``, are replaced by the local mean of the skin around
    them before the band-pass (it would read a spot's edge as relief); the third value is where
    the grown marks are not.

    The band's fine edge is a total blur: the photo's own blur (``native_blur_px`` at its
    effective resolution) is counted in, so a photo at 3 px/mm and one at 12 px/mm are filtered
    to the same physical band and read the same roughness.

    The wide Gaussians (the band's lower edge and the local-RMS window) run on a further 4x
    coarser grid and are interpolated back: they are smooth at that grid's spacing."""
    h, w = Lf.shape
    small = cv2.resize(Lf, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else Lf
    pw = ppm / f
    off = None
    if marks is not None and cv2.countNonZero(marks):
        # a cell touched by a mark is marked (INTER_AREA of 0/255 is > 0 there)
        m = cv2.resize(marks, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else marks
        r = max(1, int(round(p.mark_margin_mm * pw)))
        off = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) == 0
        small = fill_outside(small, off, pw, p.mark_fill_sigma_mm)
    s1, s2 = (s * pw for s in p.roughness_sigmas_mm)
    # an f x f box average already blurs by var (f^2 - 1) / 12 (in full-res px^2) -> (f^2-1)/(12 f^2) here
    pre = (f * f - 1) / (12.0 * f * f) + (p.native_blur_px / ppm_eff * pw) ** 2
    g1 = cv2.GaussianBlur(small, (0, 0), math.sqrt(max(s1 * s1 - pre, 0.09)), borderType=cv2.BORDER_REFLECT)
    g2 = _wide_blur(small, s2)
    band = cv2.subtract(g1, g2)
    b2 = cv2.multiply(band, band)
    local = _wide_blur(b2, p.roughness_map_sigma_mm * pw)
    rmap = cv2.sqrt(cv2.max(local, 0.0))
    return b2, rmap, off


def _wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of std ``sigma`` px; for sigma >= 4 px computed on a 4x coarser grid."""
    h, w = img.shape
    if sigma < 4.0 or h < 16 or w < 16:
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    hs, ws = -(-h // 4), -(-w // 4)
    padded = pad_to_multiple(img, 4)
    small = cv2.resize(padded, (ws, hs), interpolation=cv2.INTER_AREA)
    # 4x4 box averaging has variance (16 - 1) / 12 px^2 at full resolution
    s_small = math.sqrt(max(sigma * sigma - 15.0 / 12.0, 0.25)) / 4.0
    small = cv2.GaussianBlur(small, (0, 0), s_small, borderType=cv2.BORDER_REFLECT)
    big = cv2.resize(small, (ws * 4, hs * 4), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[:h, :w])


def pore_scales_px(ppm: float, ppm_eff: float, p: TextureParams) -> np.ndarray:
    """Detection scales (LoG sigma, px) covering the measurable pore band, plus one guard scale
    at each end; geometric with a ratio of at most ``pore_scale_ratio``."""
    d_lo = max(p.pore_diameter_mm[0], p.pore_min_native_px / ppm_eff)
    d_hi = max(p.pore_diameter_mm[1], d_lo * p.pore_scale_ratio)
    n = max(1, int(math.ceil(math.log(d_hi / d_lo) / math.log(p.pore_scale_ratio) - 1e-9)))
    r = (d_hi / d_lo) ** (1.0 / n)
    d = d_lo * r ** np.arange(-1, n + 2)
    return d / (2.0 * math.sqrt(2.0)) * ppm


def _detect_pores(Lf: np.ndarray, skin: np.ndarray, ppm: float, ppm_eff: float, p: TextureParams) -> np.ndarray:
    """Pores in a crop: float32 (N, 4) x, y (px), diameter (mm), contrast (delta L*).

    Scale space by difference of Gaussians: G is blurred at sigma_j = s_k r^(+-1/2) around each
    detection scale s_k, and 2 s^2 LoG ~ 4 s_k^2 (G_{j+1} - G_j) / (sigma_{j+1}^2 - sigma_j^2),
    which is the centre contrast (delta L*) of a Gaussian blob of matching size.
    """
    sig = pore_scales_px(ppm, ppm_eff, p)
    k = len(sig)
    r = float(sig[1] / sig[0])
    edges = np.concatenate([sig / math.sqrt(r), sig[-1:] * math.sqrt(r)])
    gs: list[np.ndarray] = []
    prev, prev_s = Lf, 0.0
    for s in edges[:-1]:
        inc = math.sqrt(max(s * s - prev_s * prev_s, 1e-4))
        g = cv2.GaussianBlur(prev, (0, 0), inc, borderType=cv2.BORDER_REFLECT)
        gs.append(g)
        prev, prev_s = g, s
    # constant ratio -> one gain for every scale: contrast = gain x (G_{j+1} - G_j)
    gain = 4.0 / (r - 1.0 / r)
    # maximum over the band's scales (1 .. k-2), without keeping the differences
    band = cv2.subtract(gs[2], gs[1])
    tmp = np.empty_like(band)
    for j in range(2, k - 1):
        cv2.subtract(gs[j + 1], gs[j], dst=tmp)
        cv2.max(band, tmp, dst=band)
    # the upper guard scale is only read at candidate points: compute it at half resolution
    # when the image is already smooth enough to subsample (sigma >= 1.6 px)
    half = prev_s >= 1.6
    base = cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_NEAREST) if half else prev
    inc = math.sqrt(edges[-1] ** 2 - prev_s**2) / (2.0 if half else 1.0)
    guard = cv2.subtract(cv2.GaussianBlur(base, (0, 0), inc, borderType=cv2.BORDER_REFLECT), base)
    # per-scale noise: robust std of the response over (a sparse sample of) the skin
    sm = skin[::9, ::9]
    any_skin = bool(sm.any())
    noise = np.full(k, np.inf, np.float32)
    sparse = [gj[::9, ::9] for gj in gs]
    for j in range(k - 1):  # (the upper guard is never thresholded)
        rj = sparse[j + 1] - sparse[j]
        samp = rj[sm] if any_skin else rj.ravel()
        med = float(np.median(samp))
        noise[j] = 1.4826 * float(np.median(np.abs(samp - med)))
    thr_k = np.maximum(p.pore_min_contrast / gain, p.pore_noise_k * noise)
    thr = float(thr_k[1:k - 1].min())
    # candidates: 3 x 3 local maxima of the band response above the lowest threshold
    peak = cv2.compare(band, cv2.dilate(band, np.ones((3, 3), np.uint8)), cv2.CMP_GE)
    cv2.bitwise_and(peak, cv2.compare(band, thr, cv2.CMP_GE), dst=peak)
    pts = cv2.findNonZero(peak)
    if pts is None:
        return np.zeros((0, 4), np.float32)
    pts = pts.reshape(-1, 2)
    xs, ys = pts[:, 0], pts[:, 1]
    hh, ww = Lf.shape
    on = skin[ys, xs] & (xs > 0) & (ys > 0) & (xs < ww - 1) & (ys < hh - 1)  # no blobs cut by the edge
    xs, ys = xs[on], ys[on]
    gy, gx = (ys // 2, xs // 2) if half else (ys, xs)
    gy = np.minimum(gy, guard.shape[0] - 1)
    gx = np.minimum(gx, guard.shape[1] - 1)
    at = [gj[ys, xs] for gj in gs]
    stack = np.stack([at[j + 1] - at[j] for j in range(k - 1)] + [guard[gy, gx]], axis=1)  # (N, k), / gain
    best = np.argmax(stack, axis=1)
    keep = (best > 0) & (best < k - 1) & (stack[np.arange(len(best)), best] >= thr_k[best])
    xs, ys, best, stack = xs[keep], ys[keep], best[keep], stack[keep]
    if len(xs) == 0:
        return np.zeros((0, 4), np.float32)
    # roundness from the Hessian of the image smoothed near the best scale, at the peak
    xm, xp = np.clip(xs - 1, 0, ww - 1), np.clip(xs + 1, 0, ww - 1)
    ym, yp = np.clip(ys - 1, 0, hh - 1), np.clip(ys + 1, 0, hh - 1)
    dxx = np.empty(len(xs), np.float32)
    dyy = np.empty_like(dxx)
    dxy = np.empty_like(dxx)
    for j in np.unique(best):
        sel = best == j
        g = gs[j + 1]
        x, y, x_m, x_p, y_m, y_p = xs[sel], ys[sel], xm[sel], xp[sel], ym[sel], yp[sel]
        c = g[y, x]
        dxx[sel] = g[y, x_p] + g[y, x_m] - 2 * c
        dyy[sel] = g[y_p, x] + g[y_m, x] - 2 * c
        dxy[sel] = 0.25 * (g[y_p, x_p] - g[y_p, x_m] - g[y_m, x_p] + g[y_m, x_m])
    tr = dxx + dyy
    disc = np.sqrt((dxx - dyy) ** 2 + 4 * dxy**2)
    l1, l2 = 0.5 * (tr + disc), 0.5 * (tr - disc)
    round_ = (l1 > 0) & (l2 >= p.pore_min_roundness * l1)
    xs, ys, best, stack = xs[round_], ys[round_], best[round_], stack[round_]
    # sub-scale refinement: parabola through log sigma
    idx = np.arange(len(xs))
    r0, r1, r2 = stack[idx, best - 1], stack[idx, best], stack[idx, best + 1]
    den = r0 - 2 * r1 + r2
    off = np.where(den < 0, 0.5 * (r0 - r2) / np.where(den < 0, den, -1), 0.0)
    off = np.clip(off, -0.5, 0.5)
    s_hat = sig[best] * r ** off
    diam = 2.0 * math.sqrt(2.0) * s_hat / ppm
    contrast = gain * (r1 - 0.25 * (r0 - r2) * off)
    return np.stack([xs, ys, diam, contrast], axis=1).astype(np.float32)


def _shine_map(rgb: np.ndarray, L: np.ndarray, skin: np.ndarray, p: TextureParams) -> np.ndarray:
    """uint8 0/1 map of specular pixels (bright and desaturated relative to the skin itself).
    ``rgb`` sRGB uint8 or linear float32 (saturation is judged on the sRGB encoding).

    The HSV saturation is computed only where it is read, on the sparse sample and at the bright
    skin pixels: converting the whole crop cost ~3.5 ms of ~10 (12 MP photo)."""
    step = 5
    sm = skin[::step, ::step]
    ls = L[::step, ::step][sm]
    if ls.size < 50:
        return np.zeros(L.shape, np.uint8)
    sample = _subsample_rgb(rgb, step) if rgb.dtype == np.uint8 else linear_to_srgb8(rgb[::step, ::step])
    ss = _saturation(sample)[sm]
    med_l = float(np.median(ls))
    mad_l = float(np.median(np.abs(ls - med_l))) * 1.4826
    l_thr = med_l + max(p.shine_min_delta_l, p.shine_k_mad * mad_l)
    s_thr = p.shine_sat_frac * float(np.median(ss))
    bright = cv2.bitwise_and(cv2.compare(L, l_thr, cv2.CMP_GE), as_u8(skin))  # 0/1: skin is 0/1
    idx = np.flatnonzero(bright.view(bool))
    if idx.size:
        ys, xs = np.divmod(idx, L.shape[1])
        px = rgb[ys, xs][:, None, :]
        pale = _saturation(px if px.dtype == np.uint8 else linear_to_srgb8(px))[:, 0] <= s_thr
        bright.reshape(-1)[idx[~pale]] = 0
    return bright


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (uint8, OpenCV's 0-255 scale) of an sRGB uint8 (H, W, 3) image."""
    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1])


def _subsample_rgb(rgb: np.ndarray, step: int) -> np.ndarray:
    """``rgb[::step, ::step]`` as a contiguous copy, each pixel copied as one 3-byte item (numpy
    copies a strided uint8 (H, W, 3) view byte by byte, 2x slower)."""
    px = rgb.view(np.dtype((np.void, 3)))[..., 0]
    return np.ascontiguousarray(px[::step, ::step]).view(np.uint8).reshape(px[::step, ::step].shape + (3,))
