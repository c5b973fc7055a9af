"""Wrinkles on the canonical face frame: dark lines found by a multi-scale Hessian filter on L*.

Input as for :mod:`pipelines.metrics.texture`: sRGB ``uint8`` (H, W, 3) at ``px_per_mm``, region
masks and the skin mask (``bool`` (H, W)), plus an orientation prior per region.

Detection
    For line widths 0.3, 0.6, 1.2 and 2 mm (FWHM of the valley) the Hessian of L* smoothed at
    sigma = 0.6 x width (the scale at which a Gaussian valley responds most) gives eigenvalues
    l1 >= l2. The line response is ``sigma^2 max(0, l1 - |l2|) / 0.385``: zero for round blobs
    (pores) and ridges, and equal to the depth in delta L* of a Gaussian valley matched in scale.
    Coarse scales run on an image pyramid (every scale at >= 1.5 px); a scale whose response to
    the skin's own grain is strong (robust std x 3.5 > 3 delta L*) is attenuated so lines must
    stand out of the texture. A scale's response counts only from 1.5 sigma inside the skin mask
    (ramping in over one sigma more): the skin's edge (hairline, brows, lips) is a step in L* that
    the Hessian answers as a valley. Where a region has an :class:`OrientationPrior`, a response is kept
    only where the line's direction is within the prior's tolerance. The maximum over scales is
    hysteresis-thresholded (3 / 1.5 delta L*) on a ~5 px/mm geometry grid; each segment is
    trimmed where its response falls under half its own mean (the FWHM rule, along and across),
    skeletonised, side branches up to 1.5 mm pruned, and kept as a wrinkle when its skeleton is
    >= 3 mm long and elongated (length^2 / area >= 4) and is a valley: it rises on both sides (not
    the dark side of a step: a spot's rim, a shadow's edge) and its floor runs on along it (not
    the rim of a dark blob).

Metrics per region (and ``face``: the union of the regions)
    ``wrinkle_density_pct``        % of the region's area covered by detected lines.
    ``wrinkle_length_mm_per_cm2``  skeleton length (steps of 1 or sqrt 2 pixels) in mm per cm^2.
    ``wrinkle_depth_index``        mean over skeleton pixels of the valley's depth in delta L*:
                                   mean L* of the two sides (2.5 sigma away across the line) minus
                                   the L* minimum near the skeleton; 0 when no line is found.
    ``wrinkle_count``              segments whose skeleton lies mostly in the region.
    ``wrinkle_depth_weighted_length``  the skeleton's length weighted by its depth index, in delta
                                   L* x mm per cm^2: rises with every line added and with every
                                   line deepened (the mean depth index can fall when a shallow
                                   line joins deep ones), so the score uses it and not the mean.

Constants live in :class:`WrinkleParams`; overlay maps are built lazily on first access.
README.md, section "Texture and wrinkle metrics" has the long form.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import cv2
import numpy as np
from skimage.morphology import skeletonize

from pipelines.errors import InvalidInput
from pipelines.metrics.luminance import (
    analysis_box,
    area_cm2,
    as_u8,
    check_inputs,
    effective_px_per_mm,
    SkinLuminance,
    mask_box,
    mask_on_grid,
    pad_to_multiple,
    skin_luminance,
    union_mask,
)

Warning_ = tuple[str, str]

# sigma^2 * second derivative of a Gaussian valley of depth A at the best scale = A * 2 / (3 sqrt 3)
_LINE_GAIN = 2.0 / (3.0 * math.sqrt(3.0))
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_SIGMA_PER_WIDTH = math.sqrt(2.0) / _FWHM_PER_SIGMA  # best Hessian scale of a Gaussian valley, per FWHM


@dataclass(frozen=True)
class OrientationPrior:
    """Expected direction of the lines in a region.

    ``angle_deg``: a fixed direction, degrees counter-clockwise from the image's +x axis as
    displayed (0 horizontal, 90 vertical; lines are undirected so 60 == -120).
    ``radial_from``: lines radiate from this point (x, y) in canonical pixels (crow's feet from
    the outer eye corner). Neither: every direction is accepted. A response is kept where the
    line's direction is within ``tolerance_deg`` of the prior.
    """

    angle_deg: float | None = None
    radial_from: tuple[float, float] | None = None
    tolerance_deg: float = 30.0

    def __post_init__(self):
        if self.angle_deg is not None and self.radial_from is not None:
            raise InvalidInput("an orientation prior is either a fixed angle or radial, not both", field="priors")
        if not (0.0 < float(self.tolerance_deg) <= 90.0):
            raise InvalidInput(f"tolerance_deg must be in (0, 90], got {self.tolerance_deg}", field="priors")


def default_priors(
    outer_eye_corner_left: tuple[float, float] | None = None,
    outer_eye_corner_right: tuple[float, float] | None = None,
    *,
    tolerance_deg: float = 30.0,
    nasolabial_deg: float = 60.0,
) -> dict[str, OrientationPrior]:
    """The usual priors: forehead horizontal, glabella vertical, crow's feet radial from the outer
    eye corners (canonical px (x, y); "left" is the subject's left, the image's right), nasolabial
    folds oblique (down and outwards: +``nasolabial_deg`` on the image's left, i.e. the subject's
    right, and its mirror on the other side). Crow's feet without a corner get no prior."""
    pri = {
        "forehead": OrientationPrior(angle_deg=0.0, tolerance_deg=tolerance_deg),
        "glabella": OrientationPrior(angle_deg=90.0, tolerance_deg=tolerance_deg),
        "nasolabial_right": OrientationPrior(angle_deg=nasolabial_deg, tolerance_deg=tolerance_deg),
        "nasolabial_left": OrientationPrior(angle_deg=-nasolabial_deg, tolerance_deg=tolerance_deg),
    }
    if outer_eye_corner_left is not None:
        pri["crows_feet_left"] = OrientationPrior(radial_from=tuple(outer_eye_corner_left), tolerance_deg=tolerance_deg)
    if outer_eye_corner_right is not None:
        pri["crows_feet_right"] = OrientationPrior(radial_from=tuple(outer_eye_corner_right), tolerance_deg=tolerance_deg)
    return pri


@dataclass(frozen=True)
class WrinkleParams:
    """Constants of the wrinkle metrics (one versioned place; defaults are the documented ones)."""

    line_widths_mm: tuple[float, ...] = (0.3, 0.6, 1.2, 2.0)
    min_sigma_px: float = 1.5
    geometry_min_px_per_mm: float = 4.0
    min_line_native_px: float = 2.0  # a measurable line is >= 2 native pixels wide (FWHM) ...
    full_line_native_px: float = 3.0  # ... and a scale counts fully from this many: in between its
    # response is scaled down linearly, so a photo slightly sharper or softer than another
    # (camera distance, resampling) does not switch a whole scale on or off
    high_threshold: float = 3.0  # delta L*-equivalent response
    low_threshold: float = 1.5
    noise_k: float = 3.5  # ... and a line stands this many robust std of the skin's response out
    min_length_mm: float = 3.0
    min_elongation: float = 4.0
    trim_fraction: float = 0.5  # ends and edges: response < this x the segment's mean response
    spur_max_mm: float = 1.5  # skeleton side branches up to this long are dropped
    depth_side_sigmas: float = 2.5
    # soft acceptance (repeatability): a segment that passes the peak-response (high_threshold),
    # length and elongation tests counts in length, density and depth by a weight that ramps
    # from 0 at each threshold to 1 at (1 + soft_fraction) x it, so a faint or short line near a
    # threshold does not jump the metrics by its whole length when it flickers between photos
    soft_fraction: float = 0.5
    # the edge of the skin (hairline, fringe, brows, lashes, lips) is a step in L* that a Hessian
    # of scale sigma answers as a "valley" up to ~2 sigma into the skin: a scale's response counts
    # from border_guard_sigmas x sigma inside the skin mask, ramping to full over one sigma more
    border_guard_sigmas: float = 1.5
    # a step in L* (a dark spot's rim, a shadow's edge) answers on its dark side like a valley:
    # a segment whose lower sides rise less than this share of its mean rise starts losing its
    # weight, and at half of it it is gone (a wrinkle rises on both sides, a step on one); 0: off
    valley_min_symmetry: float = 0.4
    # a blob (a brown spot seen at a scale near its size) rings with "lines" around its rim: there
    # the floor, sampled floor_run_sigmas x sigma along the line each way, rises; a segment whose
    # floor rises more than floor_max_rise of its depth starts losing its weight, at twice that it
    # is gone (a valley floor runs on); 0: off
    floor_run_sigmas: float = 1.5
    floor_max_rise: float = 0.2
    min_region_area_cm2: float = 0.05


@dataclass(frozen=True)
class WrinkleMetrics:
    """Wrinkles of one region (or the whole face). None where the region is too small."""

    area_cm2: float
    wrinkle_density_pct: float | None
    wrinkle_length_mm_per_cm2: float | None
    wrinkle_depth_index: float | None
    wrinkle_count: int | None
    wrinkle_length_mm: float | None
    wrinkle_depth_weighted_length: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class WrinkleResult:
    """``face`` pools the union of the region masks (the skin mask when no region is given).
    ``segments`` is float32 (N, 2): length (mm) and depth index (delta L*) of each wrinkle.
    ``warnings`` are (code, message). The overlay maps are full-frame and built on first access:
    ``wrinkle_mask`` bool (H, W), the detected lines; ``wrinkle_response`` float32 (H, W), the
    line response in delta L*-equivalent after the orientation priors (0 off skin)."""

    face: WrinkleMetrics
    regions: dict[str, WrinkleMetrics]
    warnings: list[Warning_]
    segments: np.ndarray
    px_per_mm: float
    params: WrinkleParams = field(default_factory=WrinkleParams)
    shape: tuple[int, int] = (0, 0)
    _skin: np.ndarray | None = field(default=None, repr=False)
    _resp: np.ndarray | None = field(default=None, repr=False)  # on the geometry grid of _box
    _lines: np.ndarray | None = field(default=None, repr=False)
    _box: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), repr=False)
    _f: int = field(default=1, repr=False)

    def _full(self, grid: np.ndarray | None, dtype, interpolation: int) -> np.ndarray:
        out = np.zeros(self.shape, dtype)
        if grid is None:
            return out
        y0, y1, x0, x1 = self._box
        f = self._f
        src = grid.view(np.uint8) if grid.dtype == np.bool_ else grid
        if f > 1:
            src = cv2.resize(src, (src.shape[1] * f, src.shape[0] * f), interpolation=interpolation)
        dst = out[y0:y1, x0:x1]
        cv2.copyTo(src[:y1 - y0, :x1 - x0], as_u8(self._skin[y0:y1, x0:x1]),
                   dst.view(np.uint8) if dtype == np.bool_ else dst)
        return out

    @cached_property
    def wrinkle_mask(self) -> np.ndarray:
        return self._full(self._lines, np.bool_, cv2.INTER_NEAREST)

    @cached_property
    def wrinkle_response(self) -> np.ndarray:
        return self._full(self._resp, np.float32, cv2.INTER_LINEAR)

    def as_dict(self) -> dict:
        return {
            "face": self.face.as_dict(),
            "regions": {k: v.as_dict() for k, v in self.regions.items()},
            "warnings": [list(w) for w in self.warnings],
        }


@dataclass
class _Scale:
    sigma_mm: float
    level: int
    sigma_px: float  # at its level
    r: np.ndarray | None = None  # response at its level (delta L*-equivalent)
    a: np.ndarray | None = None  # Dxx - Dyy (scaled)
    b: np.ndarray | None = None  # 2 Dxy (scaled)
    weight: float = 1.0  # resolution weight of the scale (see WrinkleParams.full_line_native_px)


def _plan_scales(ppm: float, ppm_eff: float, p: WrinkleParams) -> tuple[list[_Scale], int, list[float]]:
    """Scales to run (each on the coarsest pyramid level where it spans >= min_sigma_px), the
    geometry level, and the widths skipped as finer than the native resolution."""
    g = 0
    while ppm / 2 ** (g + 1) >= p.geometry_min_px_per_mm:
        g += 1
    scales, skipped = [], []
    for wmm in p.line_widths_mm:
        if wmm <= p.min_line_native_px / ppm_eff:
            skipped.append(wmm)
            continue
        span = max(p.full_line_native_px - p.min_line_native_px, 1e-6)
        weight = min(1.0, (wmm * ppm_eff - p.min_line_native_px) / span)
        s_mm = wmm * _SIGMA_PER_WIDTH
        lvl = 0
        while s_mm * ppm / 2 ** (lvl + 1) >= p.min_sigma_px:
            lvl += 1
        scales.append(_Scale(s_mm, lvl, s_mm * ppm / 2**lvl, weight=weight))
    return scales, g, skipped


def measure_wrinkles(
    rgb: np.ndarray,
    masks: Mapping[str, np.ndarray],
    px_per_mm: float,
    *,
    skin_mask: np.ndarray,
    priors: Mapping[str, OrientationPrior] | None = None,
    native_px_per_mm: float | None = None,
    luminance: SkinLuminance | None = None,
    params: WrinkleParams | None = None,
) -> WrinkleResult:
    """Wrinkle density, length, depth index and count per region of the canonical frame.

    ``rgb`` sRGB uint8 or linear RGB float32 (H, W, 3); ``masks`` region name -> bool (H, W);
    ``px_per_mm`` the frame's scale; ``skin_mask`` bool (H, W); ``priors`` region name -> :class:`OrientationPrior`
    (regions without one accept every direction; see :func:`default_priors`);
    ``native_px_per_mm`` the photo's own scale (lines narrower than 2 native px are not
    searched); ``luminance`` an optional :func:`~pipelines.metrics.luminance.skin_luminance`
    of the same frame, to share the L* conversion with the texture metrics.
    """
    p = params or WrinkleParams()
    priors = dict(priors or {})
    rgb, masks, skin = check_inputs(rgb, masks, skin_mask, px_per_mm, native_px_per_mm)
    for name, pr in priors.items():
        if not isinstance(pr, OrientationPrior):
            raise InvalidInput(f"priors[{name!r}] must be an OrientationPrior", field="priors")
    ppm = float(px_per_mm)
    ppm_eff = effective_px_per_mm(ppm, native_px_per_mm)
    h, w = rgb.shape[:2]
    warnings: list[Warning_] = []

    region_list = list(masks.items())
    boxes = {name: mask_box(m) for name, m in region_list}
    face_mask = union_mask([m for _, m in region_list], (h, w), list(boxes.values())) if region_list else skin
    face_box = mask_box(face_mask)
    skin_box = mask_box(skin)
    none = WrinkleMetrics(0.0, None, None, None, None, None)
    no_segments = np.zeros((0, 2), np.float32)

    scales, g, skipped = _plan_scales(ppm, ppm_eff, p)
    if skipped:
        warnings.append(("fine_lines_unresolved",
                         f"effective resolution {ppm_eff:.1f} px/mm: lines narrower than "
                         f"{p.min_line_native_px / ppm_eff:.2f} mm are not measured (widths {skipped} mm skipped)"))
    if not scales:
        return WrinkleResult(none, {k: none for k, _ in region_list}, warnings, no_segments, ppm, p, (h, w), skin)
    top = max(max(sc.level for sc in scales), g)
    mult = 2**top
    box = analysis_box([skin_box, face_box], (h, w), margin_px=int(math.ceil(3.0 * ppm)), multiple=mult)
    if box is None:
        warnings.append(("no_skin", "skin mask and region masks are empty"))
        return WrinkleResult(none, {k: none for k, _ in region_list}, warnings, no_segments, ppm, p, (h, w), skin)
    if luminance is None or not luminance.covers(box, (h, w), ppm):
        luminance = skin_luminance(rgb, skin, ppm, box=box)
    y0, y1, x0, x1 = luminance.box
    Lf = pad_to_multiple(luminance.filled, mult)
    ph, pw = Lf.shape
    fg = 2**g
    hg, wg = ph // fg, pw // fg
    ppm_g = ppm / fg

    # regions on the geometry grid; prior map: 0 = no prior, i = used[i - 1]
    region_g = {name: mask_on_grid(m, (y0, x0), (ph, pw), fg, boxes[name]) for name, m in region_list}
    face_g = mask_on_grid(face_mask, (y0, x0), (ph, pw), fg, face_box)
    used: list[OrientationPrior] = []
    prior_idx = np.zeros((hg, wg), np.uint8)
    for name, _ in region_list:
        pr, rg = priors.get(name), region_g[name]
        if pr is not None and rg is not None and (pr.angle_deg is not None or pr.radial_from is not None):
            used.append(pr)
            (gy0, gy1, gx0, gx1), mg = rg
            prior_idx[gy0:gy1, gx0:gx1][mg] = len(used)

    # -- multi-scale line response -------------------------------------------------------------
    pyr = [Lf]
    for _ in range(top):
        pyr.append(cv2.pyrDown(pyr[-1]))
    resp_g = np.zeros((hg, wg), np.float32)
    inside_mm = _distance_inside_mm(skin, (y0, x0), (ph, pw), fg, ppm_g)
    for sc in scales:
        _line_response(pyr[sc.level], sc)
        _normalise_to_noise(sc, skin, (y0, x0), p)
        if sc.weight < 1.0:
            cv2.multiply(sc.r, sc.weight, dst=sc.r)
        _apply_priors(sc, used, prior_idx, g, (x0, y0), p)
        r = sc.r
        if sc.level < g:
            r = _max_pool(r, 2 ** (g - sc.level))
        elif sc.level > g:
            r = cv2.resize(r, (wg, hg), interpolation=cv2.INTER_LINEAR)
        guard = (inside_mm - p.border_guard_sigmas * sc.sigma_mm) / sc.sigma_mm
        r = cv2.multiply(r[:hg, :wg], np.clip(guard, 0.0, 1.0))
        resp_g = cv2.max(resp_g, r)
    skin_g = mask_on_grid(skin, (y0, x0), (ph, pw), fg, skin_box)
    on_skin = np.zeros((hg, wg), np.float32)
    if skin_g is not None:
        (gy0, gy1, gx0, gx1), mg = skin_g
        on_skin[gy0:gy1, gx0:gx1] = mg
    resp_g = cv2.multiply(resp_g, on_skin)

    # -- hysteresis, trimming, skeleton, elongation ---------------------------------------------
    lines, skel, wlen, labels, seg_w = _segments(resp_g, ppm_g, p)
    sy, sx = np.divmod(np.flatnonzero(skel), wg)  # as np.nonzero, without its 2-D overhead
    if len(sx):
        depth, low_side, floor_rise = _depth_at(sx, sy, g, scales, Lf, ppm, p)
        seg_w = _valleys_only(seg_w, labels[sy, sx], depth, low_side, floor_rise, p)
        dropped = seg_w[labels[sy, sx]] <= 0
        if dropped.any():   # the segments' pixels leave the line and skeleton maps too
            lines &= (seg_w > 0)[labels]
            skel[sy[dropped], sx[dropped]] = False
            sy, sx, depth = sy[~dropped], sx[~dropped], depth[~dropped]
    keep_lab = seg_w > 0
    pix_w = np.zeros((hg, wg), np.float32)  # each line pixel weighs as its segment (read on lines only)
    pix_w[lines] = seg_w.astype(np.float32)[labels[lines]]
    n_lab = len(keep_lab)
    depth_px = np.zeros((hg, wg), np.float32)
    segments = no_segments
    if len(sx):
        depth_px[sy, sx] = depth
        comp = labels[sy, sx]
        seg_len = np.bincount(comp, weights=wlen[sy, sx], minlength=n_lab)
        seg_n = np.bincount(comp, minlength=n_lab)
        seg_d = np.bincount(comp, weights=depth, minlength=n_lab)
        ids = np.nonzero(keep_lab)[0]
        segments = np.stack([seg_len[ids] / ppm_g, seg_d[ids] / np.maximum(seg_n[ids], 1)], axis=1)
        segments = segments.astype(np.float32)

    # -- per-region statistics -----------------------------------------------------------------
    # a segment belongs to the region holding most of its skeleton length
    owner = np.full(n_lab, -1, np.intp)
    if len(sx):
        best_share = np.zeros(n_lab)
        for i, (name, _) in enumerate(region_list):
            rg = region_g[name]
            if rg is None:
                continue
            (gy0, gy1, gx0, gx1), mg = rg
            sub = skel[gy0:gy1, gx0:gx1] & mg
            share = np.bincount(labels[gy0:gy1, gx0:gx1][sub], weights=wlen[gy0:gy1, gx0:gx1][sub],
                                minlength=n_lab)
            better = share > best_share
            owner[better] = i
            best_share = np.maximum(best_share, share)
        owner[~keep_lab] = -1

    def stats_for(mask: np.ndarray, mask_g, b, label: str, index: int | None) -> WrinkleMetrics:
        if b is None or mask_g is None:
            return none
        a = area_cm2(cv2.countNonZero(as_u8(mask[b[0]:b[1], b[2]:b[3]])), ppm)
        if a < p.min_region_area_cm2:
            warnings.append(("region_too_small", f"{label}: {a:.3f} cm^2 < {p.min_region_area_cm2:g} cm^2"))
            return WrinkleMetrics(a, None, None, None, None, None)
        (gy0, gy1, gx0, gx1), mg = mask_g
        n_g = max(1, int(np.count_nonzero(mg)))
        sub_s = skel[gy0:gy1, gx0:gx1] & mg
        pw = pix_w[gy0:gy1, gx0:gx1]
        sw = pw[sub_s]
        step_w = wlen[gy0:gy1, gx0:gx1][sub_s] * sw    # each skeleton step's length, weighted
        length_mm = float(step_w.sum(dtype=np.float64)) / ppm_g
        dens = 100.0 * float(pw[lines[gy0:gy1, gx0:gx1] & mg].sum(dtype=np.float64)) / n_g
        dvals = depth_px[gy0:gy1, gx0:gx1][sub_s]
        depth = float((dvals * sw).sum() / sw.sum()) if sw.sum() > 0 else 0.0
        depth_length = float((np.maximum(dvals, 0.0) * step_w).sum(dtype=np.float64)) / ppm_g
        if index is None:  # face: segments with most of their length on the union of regions
            count = 0
            if len(sx):
                share = np.bincount(labels[gy0:gy1, gx0:gx1][sub_s], weights=wlen[gy0:gy1, gx0:gx1][sub_s],
                                    minlength=n_lab)
                tot = np.bincount(labels[sy, sx], weights=wlen[sy, sx], minlength=n_lab)
                count = int(np.count_nonzero(keep_lab & (tot > 0) & (share >= 0.5 * tot)))
        else:
            count = int(np.count_nonzero(owner == index))
        per_cm2 = 1.0 / area_cm2(n_g, ppm_g)
        return WrinkleMetrics(a, dens, length_mm * per_cm2, depth, count, length_mm, depth_length * per_cm2)

    regions = {name: stats_for(m, region_g[name], boxes[name], name, i) for i, (name, m) in enumerate(region_list)}
    face = stats_for(face_mask, face_g, face_box, "face", None)
    return WrinkleResult(face, regions, warnings, segments, ppm, p, (h, w), skin, resp_g, lines,
                         (y0, y1, x0, x1), fg)


# ---------------------------------------------------------------------------------------------
def _segments(resp: np.ndarray, ppm_g: float, p: WrinkleParams):
    """Hysteresis + FWHM trimming + skeleton + elongation on the geometry grid.

    Returns (line mask bool, skeleton bool, per-pixel step length float32, component labels
    int32, per-component weight float64 (n_labels,) in 0-1: the product of linear ramps of the
    peak response, the skeleton length and the elongation from their thresholds up to
    (1 + ``soft_fraction``) x them; the kept segments are those of weight > 0)."""
    hg, wg = resp.shape
    lines = np.zeros((hg, wg), bool)
    skel = np.zeros((hg, wg), bool)
    wlen = np.zeros((hg, wg), np.float32)
    low = cv2.compare(resp, p.low_threshold, cv2.CMP_GE)
    # Grana's algorithm: the same labels and stats as the default one, 3x faster with stats here
    n_lab, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(low, 8, cv2.CV_32S, cv2.CCL_GRANA)
    sf = p.soft_fraction
    keep = np.zeros(n_lab, bool)
    weight = np.zeros(n_lab)
    if n_lab <= 1:
        return lines, skel, wlen, labels, weight
    # peak response per component: only pixels >= high_threshold can make a component pass
    hi = cv2.compare(resp, p.high_threshold, cv2.CMP_GE).view(bool)
    peak = np.zeros(n_lab)
    np.maximum.at(peak, labels[hi], resp[hi])
    keep = peak >= p.high_threshold
    keep[0] = False
    diag = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep &= diag >= 0.7 * p.min_length_mm * ppm_g
    if not keep.any():
        return lines, skel, wlen, labels, weight
    # The surviving components are thin lines spread over the face: their union box is most of
    # the grid but their own boxes are ~5x smaller in all. Every step below is local (3 x 3) or
    # per component, and distinct components are not 8-adjacent, so the steps run on a mosaic of
    # the components' boxes (1 px apart) with the same result as on the grid.
    ids = np.nonzero(keep)[0]
    lab, rsp, place, (dy, dx) = _pack(labels, resp, low, stats, ids)
    cand = lab > 0
    sk = _skeletonize_boxes(cand, place)
    # A line ends (and is as wide as) where its response falls under half its own typical
    # response (its mean on the skeleton): the FWHM rule, along and across the line.
    sl = lab[sk]
    ref = np.bincount(sl, weights=rsp[sk], minlength=n_lab) / np.maximum(np.bincount(sl, minlength=n_lab), 1)
    cut = np.maximum(p.low_threshold, p.trim_fraction * ref).astype(np.float32)
    # from here on the line pixels are handled by index (a few % of the mosaic)
    at = np.flatnonzero(cand)
    lab_at = lab.reshape(-1)[at]
    strong = rsp.reshape(-1)[at] >= cut[lab_at]
    sk.reshape(-1)[at[~strong]] = False
    at, lab_at = at[strong], lab_at[strong]
    sk = _prune_spurs(sk, max(2, int(round(p.spur_max_mm * ppm_g))))
    wl = _step_lengths(sk)
    on_sk = sk.reshape(-1)[at]
    comp_len = np.bincount(lab_at[on_sk], weights=wl.reshape(-1)[at[on_sk]], minlength=n_lab)
    area = np.bincount(lab_at, minlength=n_lab).astype(np.float64)
    elong = comp_len**2 / np.maximum(area, 1.0)
    weight = (_ramp(peak, p.high_threshold, sf) * _ramp(comp_len / ppm_g, p.min_length_mm, sf)
              * _ramp(elong, p.min_elongation, sf))
    weight[~keep] = 0.0
    weight[0] = 0.0
    kept = (weight > 0)[lab_at]
    at, lab_at, on_sk = at[kept], lab_at[kept], on_sk[kept]
    # back to the grid
    my, mx = np.divmod(at, lab.shape[1])
    back = (my - dy[lab_at]) * wg + (mx - dx[lab_at])
    lines.reshape(-1)[back] = True
    skel.reshape(-1)[back[on_sk]] = True
    wlen.reshape(-1)[back[on_sk]] = wl.reshape(-1)[at[on_sk]]
    return lines, skel, wlen, labels, weight


def _valleys_only(seg_w: np.ndarray, comp: np.ndarray, depth: np.ndarray, low_side: np.ndarray,
                  floor_rise: np.ndarray, p: WrinkleParams) -> np.ndarray:
    """Segment weights with what is not a valley taken out. The dark side of a step in L* curves
    up like a valley floor, and the line filter answers it: the rim of a dark spot (a ring just
    inside its edge), the edge of a shadow. A wrinkle rises on both sides; a step on one only.
    And the rim of a dark blob seen at a scale near its size rings too: there the floor rises
    along the "line", where a valley's floor runs on. Per skeleton cell of segment ``comp``, in
    delta L*: ``depth`` (mean rise of the two sides), ``low_side`` (rise of the lower side),
    ``floor_rise`` (rise along the line). A segment loses its weight as its lower sides rise
    less than ``valley_min_symmetry`` of its mean rise (gone at half that), and as its floor
    rises more than ``floor_max_rise`` of it (gone at twice that)."""
    n = len(seg_w)
    rise = np.bincount(comp, np.maximum(depth, 0.0).astype(np.float64), n)
    low = np.bincount(comp, np.maximum(low_side, 0.0).astype(np.float64), n)
    symmetry = low / np.maximum(rise, 1e-6)
    floor = np.bincount(comp, np.maximum(floor_rise, 0.0).astype(np.float64), n) / np.maximum(rise, 1e-6)
    out = seg_w.copy()
    if p.valley_min_symmetry > 0:
        out *= _ramp(symmetry, 0.5 * p.valley_min_symmetry, 1.0)
    if p.floor_max_rise > 0:
        out *= 1.0 - _ramp(floor, p.floor_max_rise, 1.0)
    return out


def _pack(labels: np.ndarray, resp: np.ndarray, low: np.ndarray, stats: np.ndarray, ids: np.ndarray):
    """Copy components ``ids`` of ``labels`` (their pixels only, with their labels and
    responses) into a mosaic of their bounding boxes, placed on shelves 1 px apart. ``low`` is
    the uint8 mask that was labelled.

    Returns (mosaic labels int32, mosaic responses float32, placements: per component
    (mosaic y, x, height, width), per-label offsets (dy, dx) from the grid to the mosaic)."""
    bx = stats[ids, cv2.CC_STAT_LEFT]
    by = stats[ids, cv2.CC_STAT_TOP]
    bw = stats[ids, cv2.CC_STAT_WIDTH]
    bh = stats[ids, cv2.CC_STAT_HEIGHT]
    width = max(labels.shape[1], int(bw.max())) + 2
    place = [None] * len(ids)
    dy = np.zeros(len(stats), np.intp)
    dx = np.zeros(len(stats), np.intp)
    x = y = shelf = 0
    for k in np.argsort(-bh, kind="stable"):  # tallest first: shelves waste little height
        w_, h_ = int(bw[k]), int(bh[k])
        if x + w_ + 2 > width:
            y += shelf + 1
            x = shelf = 0
        place[k] = (y + 1, x + 1, h_, w_)
        dy[ids[k]], dx[ids[k]] = y + 1 - by[k], x + 1 - bx[k]
        x += w_ + 1
        shelf = max(shelf, h_)
    lab = np.zeros((y + shelf + 2, width), np.int32)
    rsp = np.zeros(lab.shape, np.float32)
    # the pixels of the components, moved by index (the labelled pixels are a few % of the grid)
    on = np.flatnonzero(low.view(bool))
    lab_on = labels.reshape(-1)[on]
    chosen = np.zeros(len(stats), bool)
    chosen[ids] = True
    sel = chosen[lab_on]
    on, lab_on = on[sel], lab_on[sel]
    gy, gx = np.divmod(on, labels.shape[1])
    at = (gy + dy[lab_on]) * width + (gx + dx[lab_on])
    lab.reshape(-1)[at] = lab_on
    rsp.reshape(-1)[at] = resp.reshape(-1)[on]
    return lab, rsp, place, (dy, dx)


def _skeletonize_boxes(mask: np.ndarray, place) -> np.ndarray:
    """Zhang-Suen skeleton of the components of a mosaic (:func:`_pack`), each thinned in its own
    box: thinning is local, so this equals thinning the whole mosaic, minus the gaps' cost."""
    out = np.zeros(mask.shape, bool)
    for my, mx, h_, w_ in place:
        out[my:my + h_, mx:mx + w_] = skeletonize(mask[my:my + h_, mx:mx + w_])
    return out


def _ramp(x: np.ndarray, threshold: float, soft: float) -> np.ndarray:
    """0 at or below threshold, 1 from threshold (1 + soft), linear between."""
    if soft * threshold <= 0:
        return (x > threshold).astype(np.float64)
    return np.clip((np.asarray(x, np.float64) - threshold) / (soft * threshold), 0.0, 1.0)


_K_A = np.array([[0, -1, 0], [1, 0, 1], [0, -1, 0]], np.float32)  # Dxx - Dyy


def _line_response(img: np.ndarray, sc: _Scale) -> None:
    """Fill sc.r (line response in delta L*-equivalent; may be negative where there is no dark
    line, callers clip at 0), sc.a = Dxx - Dyy and sc.b = 2 Dxy (same scaling)."""
    # pyrDown has already blurred level l by ~0.55 px (in its own pixels)
    pre = 0.0 if sc.level == 0 else 0.3
    s_apply = math.sqrt(max(sc.sigma_px**2 - pre, 0.25))
    gimg = cv2.GaussianBlur(img, (0, 0), s_apply, borderType=cv2.BORDER_REFLECT)
    k = sc.sigma_px**2 / _LINE_GAIN
    t = cv2.Laplacian(gimg, cv2.CV_32F, ksize=1, scale=k, borderType=cv2.BORDER_REFLECT)  # Dxx + Dyy
    a = cv2.filter2D(gimg, cv2.CV_32F, _K_A * np.float32(k), borderType=cv2.BORDER_REFLECT)
    b = cv2.Sobel(gimg, cv2.CV_32F, 1, 1, ksize=3, scale=0.5 * k, borderType=cv2.BORDER_REFLECT)
    # l1 - |l2| = min(D, T) when l1 > 0, with D = sqrt(a^2 + b^2) = l1 - l2 and T = l1 + l2
    sc.r = cv2.min(cv2.magnitude(a, b), t)
    sc.a, sc.b = a, b


def _distance_inside_mm(skin: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], f: int,
                        ppm_g: float) -> np.ndarray:
    """float32 (shape // f): distance in mm from each geometry-grid pixel to the nearest non-skin
    pixel of the padded analysis box (0 off the skin)."""
    oy, ox = origin
    ph, pw = shape
    box = np.zeros((ph, pw), np.uint8)
    sub = skin[oy:oy + ph, ox:ox + pw]
    box[:sub.shape[0], :sub.shape[1]] = sub
    if f > 1:
        box = cv2.resize(box, (pw // f, ph // f), interpolation=cv2.INTER_AREA)
    dist = cv2.distanceTransform(box, cv2.DIST_L2, 5)
    # a box that is all skin has no non-skin pixel: OpenCV then gives ~FLT_MAX, capped so the
    # guard's arithmetic does not overflow (any distance this large is "far from the edge")
    np.minimum(dist, np.float32(1e6), out=dist)
    return dist / np.float32(ppm_g)


def _normalise_to_noise(sc: _Scale, skin: np.ndarray, origin: tuple[int, int], p: WrinkleParams) -> None:
    """Attenuate a scale whose response to the skin's own grain is strong, so that a line must
    stand out of the texture by ``noise_k`` robust standard deviations (and always by
    ``high_threshold`` delta L*). On ordinary skin the gain is 1 and the response stays in
    delta L*-equivalent units."""
    f = 2**sc.level
    step = 6
    oy, ox = origin
    r = sc.r
    ys = np.arange(0, r.shape[0], step)
    xs = np.arange(0, r.shape[1], step)
    fy = np.minimum(oy + ys * f + f // 2, skin.shape[0] - 1)
    fx = np.minimum(ox + xs * f + f // 2, skin.shape[1] - 1)
    on = skin[np.ix_(fy, fx)]
    samp = r[::step, ::step][: len(ys), : len(xs)][on]
    if samp.size < 100:
        return
    med = float(np.median(samp))
    noise = 1.4826 * float(np.median(np.abs(samp - med)))
    if noise * p.noise_k > p.high_threshold:
        cv2.multiply(r, p.high_threshold / (noise * p.noise_k), dst=r)


def _apply_priors(sc: _Scale, used: list[OrientationPrior], prior_idx: np.ndarray, g: int,
                  origin: tuple[int, int], p: WrinkleParams) -> None:
    """Zero the response where the line direction disagrees with the region's prior."""
    if not used:
        return
    cand = np.flatnonzero(cv2.compare(sc.r, p.low_threshold, cv2.CMP_GE).view(bool))  # 3x faster than findNonZero
    if not cand.size:
        return
    y, x = np.divmod(cand, sc.r.shape[1])
    f = 2**sc.level
    # pixel centre in crop coordinates -> geometry grid cell
    xc = (x + 0.5) * f - 0.5
    yc = (y + 0.5) * f - 0.5
    fg = 2**g
    gi = np.clip((yc // fg).astype(np.intp), 0, prior_idx.shape[0] - 1)
    gj = np.clip((xc // fg).astype(np.intp), 0, prior_idx.shape[1] - 1)
    pid = prior_idx[gi, gj]
    sel = pid > 0
    if not sel.any():
        return
    x, y, xc, yc, pid = x[sel], y[sel], xc[sel], yc[sel], pid[sel]
    a = sc.a[y, x]
    b = sc.b[y, x]
    d = np.hypot(a, b)
    c2 = np.empty(len(x), np.float32)
    s2 = np.empty(len(x), np.float32)
    ct = np.empty(len(x), np.float32)
    for i, pr in enumerate(used, start=1):
        m = pid == i
        if not m.any():
            continue
        ct[m] = math.cos(2.0 * math.radians(pr.tolerance_deg))
        if pr.angle_deg is not None:
            phi = -math.radians(pr.angle_deg)  # on-screen CCW -> image coordinates (y down)
            c2[m], s2[m] = math.cos(2 * phi), math.sin(2 * phi)
        else:
            dx = xc[m] + origin[0] - pr.radial_from[0]
            dy = yc[m] + origin[1] - pr.radial_from[1]
            r2 = np.maximum(dx * dx + dy * dy, 1e-6)
            c2[m], s2[m] = (dx * dx - dy * dy) / r2, 2 * dx * dy / r2
    # line direction (doubled angle) = -(a, b) / d ; keep where cos(2 (theta - phi)) >= cos(2 tol)
    ok = -(a * c2 + b * s2) >= ct * d
    bad = ~ok
    sc.r[y[bad], x[bad]] = 0.0


def _max_pool(r: np.ndarray, f: int) -> np.ndarray:
    """Maximum over f x f blocks (sides are multiples of f)."""
    out = None
    for dy in range(f):
        for dx in range(f):
            v = r[dy::f, dx::f]
            out = np.array(v) if out is None else np.maximum(out, v, out=out)
    return out


def _prune_spurs(skel: np.ndarray, max_px: int) -> np.ndarray:
    """Drop side branches of a skeleton: pieces between an end pixel and a junction that are at
    most ``max_px`` pixels long (the forks a thinning leaves at the blunt end of a wide line).
    Neighbourhoods are read at the skeleton pixels only, by index."""
    h, w = skel.shape
    w2 = w + 2
    s = np.zeros((h + 2, w2), bool)  # a margin: no neighbours beyond the edge
    s[1:-1, 1:-1] = skel
    flat = s.reshape(-1)
    idx = np.flatnonzero(flat)
    around = (-w2 - 1, -w2, -w2 + 1, -1, 1, w2 - 1, w2, w2 + 1)
    nb = np.zeros(len(idx), np.int16)
    for o in around:
        nb += flat[idx + o]
    junction = nb >= 3
    if not junction.any():
        return skel
    jmap = np.zeros_like(flat)
    jmap[idx[junction]] = True
    flat[idx[junction]] = False  # s now holds the branches
    n, lab = cv2.connectedComponents(s.view(np.uint8), connectivity=8)
    bidx, bnb = idx[~junction], nb[~junction]
    blab = lab.reshape(-1)[bidx]
    size = np.bincount(blab, minlength=n)
    has_end = np.bincount(blab[bnb == 1], minlength=n) > 0
    near_j = np.zeros(len(bidx), bool)
    for o in around:
        near_j |= jmap[bidx + o]
    touches = np.bincount(blab[near_j], minlength=n) > 0
    spur = has_end & touches & (size <= max_px)
    spur[0] = False
    if not spur.any():
        return skel
    out = skel.copy()
    y, x = np.divmod(bidx[spur[blab]], w2)
    out[y - 1, x - 1] = False
    return out


def _step_lengths(skel: np.ndarray) -> np.ndarray:
    """Per skeleton pixel, the length (px) of the steps to its forward neighbours: 1 for a
    horizontal/vertical step, sqrt 2 for a diagonal one not already covered by two unit steps.
    The sum over a segment is its polyline length. Computed at the skeleton pixels only."""
    h, w = skel.shape
    s = np.zeros((h + 2, w + 2), bool)  # a margin: no neighbours beyond the edge
    s[1:-1, 1:-1] = skel
    w2 = w + 2
    idx = np.flatnonzero(s)
    flat = s.reshape(-1)
    east, south, west = flat[idx + 1], flat[idx + w2], flat[idx - 1]
    south_east, south_west = flat[idx + w2 + 1], flat[idx + w2 - 1]
    step = np.zeros(len(idx), np.float32)
    step += east
    step += south
    step += math.sqrt(2.0) * (south_east & ~east & ~south)  # "\" step
    step += math.sqrt(2.0) * (south_west & ~west & ~south)  # "/" step
    out = np.zeros((h, w), np.float32)
    y, x = np.divmod(idx, w2)
    out[y - 1, x - 1] = step
    return out


def _depth_at(sx: np.ndarray, sy: np.ndarray, g: int, scales: list[_Scale], Lf: np.ndarray,
              ppm: float, p: WrinkleParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At skeleton cells (geometry grid), in delta L*: the valley depth, L* of the sides (2.5
    sigma across the line, sigma of the best scale) minus the L* minimum near the centre; the
    rise of the lower side alone (about 0 on the dark side of a step); and the rise of the floor
    1.5 sigma along the line each way (about 0 along a valley, large on a blob's rim)."""
    fg = 2**g
    xc = (sx + 0.5) * fg - 0.5
    yc = (sy + 0.5) * fg - 0.5
    best_r = np.full(len(sx), -np.inf, np.float32)
    a = np.zeros(len(sx), np.float32)
    b = np.zeros(len(sx), np.float32)
    sig = np.zeros(len(sx), np.float32)
    for sc in scales:
        f = 2**sc.level
        hl, wl = sc.r.shape
        if sc.level < g:  # strongest fine pixel of the cell
            k = 2 ** (g - sc.level)
            ys = (sy[:, None] * k + np.arange(k)[None, :]).repeat(k, axis=1)
            xs = np.tile(sx[:, None] * k + np.arange(k)[None, :], (1, k))
            rr = sc.r[ys, xs]
            j = rr.argmax(axis=1)
            lx, ly = xs[np.arange(len(sx)), j], ys[np.arange(len(sx)), j]
        else:
            lx = np.clip(np.rint((xc + 0.5) / f - 0.5).astype(np.intp), 0, wl - 1)
            ly = np.clip(np.rint((yc + 0.5) / f - 0.5).astype(np.intp), 0, hl - 1)
        r = sc.r[ly, lx]
        better = r > best_r
        best_r[better] = r[better]
        a[better] = sc.a[ly[better], lx[better]]
        b[better] = sc.b[ly[better], lx[better]]
        sig[better] = sc.sigma_mm * ppm
    th = 0.5 * np.arctan2(b, a)  # direction of the largest curvature = across the line
    nx, ny = np.cos(th), np.sin(th)
    # centre: minimum of L* within +-sigma across the line; sides 2.5 sigma beyond it
    ts = np.linspace(-1.0, 1.0, 5, dtype=np.float32)
    cx = xc[:, None] + ts[None, :] * sig[:, None] * nx[:, None]
    cy = yc[:, None] + ts[None, :] * sig[:, None] * ny[:, None]
    Ls = Lf
    vals = cv2.remap(Ls, cx.astype(np.float32), cy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)
    j = vals.argmin(axis=1)
    idx = np.arange(len(sx))
    centre = vals[idx, j]
    mx, my = cx[idx, j], cy[idx, j]
    off = p.depth_side_sigmas * sig
    sxs = np.stack([mx + off * nx, mx - off * nx], axis=1).astype(np.float32)
    sys_ = np.stack([my + off * ny, my - off * ny], axis=1).astype(np.float32)
    sides = cv2.remap(Ls, sxs, sys_, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # along the line (a valley floor runs on; the rim of a blob turns away and rises)
    run = p.floor_run_sigmas * sig
    axs = np.stack([mx - run * ny, mx + run * ny], axis=1).astype(np.float32)
    ays = np.stack([my + run * nx, my - run * nx], axis=1).astype(np.float32)
    along = cv2.remap(Ls, axs, ays, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return ((sides.mean(axis=1) - centre).astype(np.float32),
            (sides.min(axis=1) - centre).astype(np.float32),
            (along.mean(axis=1) - centre).astype(np.float32))
