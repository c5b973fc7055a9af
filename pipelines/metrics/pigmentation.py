"""Pigmentation metrics per facial region: ITA, melanin and erythema indices, brown spots, red
areas and tone unevenness, in physical units on the canonical face frame.

Input is the colour-normalised linear RGB of :func:`pipelines.metrics.colour.normalize_colour`
(illumination gradient already divided out, white balance corrected). Definitions, units and
ranges are in README.md, section "Colour and pigmentation"; in short:

- ``melanin_index`` M = 100 log10(1 / R) and ``erythema_index`` E = 100 log10(R / G), on linear
  reflectance (Dawson / Diffey; camera R and G channels stand in for the ~650 nm and ~560 nm bands).
  Melanin absorbs more in green than in red, so melanin also raises E: by about 0.45 units of E
  per unit of M ((560/650)^-3.5 - 1 for a lambda^-3.5 melanin absorbance). Red areas are therefore
  found in the melanin-corrected haemoglobin excess  H = dE - 0.45 dM, where brown spots are ~0.
- Brown spots: melanin excess dM over a smooth local background (a Gaussian of ``background_mm``
  fitted as a local plane to the skin's reflectance on a 1 mm grid, recomputed without the first
  pass's spots and red areas). A spot pixel has dM >= ``spot_seed_melanin`` and >= half the local
  peak (the 0.3 mm-smoothed dM's maximum within ``spot_peak_window_mm``), so each spot is cut at
  half its own contrast and its area is the full width at half contrast whatever the contrast. A
  spot is kept if its equivalent diameter is within ``spot_min_diameter_mm`` ..
  ``spot_max_diameter_mm``, its mean colour differs from its local background by at least
  ``spot_min_contrast_de`` (CIEDE2000) and it is compact (major/minor axis ratio at most
  ``spot_max_elongation``: wrinkle valleys, fold shadows and pieces of the shade under the eyes
  are dark too, and elongated; brown spots are round to oval).
- Everything is measured on the skin mask eroded by ``border_mm`` (hair, brows, lashes or lips
  left at a mask edge would otherwise read as spots). Spots are found once on the whole face, so
  a spot cut by a region border is one spot: counted once in each region it touches and once for
  the face.

Work happens at ``analysis_px_per_mm`` (5 px/mm, 0.2 mm cells: the smallest spot, 0.8 mm, is
still 4 cells across), after a fixed Gaussian blur of ``harmonise_mm`` (0.25 mm): a blur larger
than the camera's own evens out how sharp photos are, so a slightly soft or heavily compressed
photo does not lose its small spots (measured: the spot area's change under a 0.8 px blur fell
from -1.0 to +0.15 % of the face). The maps are at the input's size, made on first access.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

import cv2
import numpy as np

from pipelines.errors import InvalidInput
from pipelines.metrics.colour import delta_e_2000, linear_to_lab

_LN10 = math.log(10.0)

#: Chardon et al. 1991 skin-colour categories: (name, ITA strictly above which it applies).
ITA_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("very_light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
)
ITA_DARK = "dark"
ITA_UNKNOWN = "unknown"

METRIC_KEYS: tuple[str, ...] = (
    "ita_deg",
    "ita_category",
    "melanin_index",
    "erythema_index",
    "spot_count",
    "spot_area_pct",
    "spot_contrast_de",
    "tone_unevenness",
    "red_area_pct",
)


def ita_degrees(l_star, b_star):
    """Individual Typology Angle in degrees, atan((L* - 50) / b*) * 180 / pi, -90..90.

    Computed as atan2(L* - 50, b*) with b* floored at 1e-6, so b* = 0 gives +-90 instead of a
    division by zero (b* <= 0 does not occur in skin). Scalars or arrays.
    """
    l_star = np.asarray(l_star, np.float64)
    b_star = np.maximum(np.asarray(b_star, np.float64), 1e-6)
    out = np.degrees(np.arctan2(l_star - 50.0, b_star))
    return float(out) if out.ndim == 0 else out


def ita_category(ita_deg: float) -> str:
    """Chardon 1991 category of an ITA: very_light > 55 >= light > 41 >= intermediate > 28 >= tan
    > 10 >= brown > -30 >= dark; "unknown" for NaN."""
    if ita_deg is None or not np.isfinite(ita_deg):
        return ITA_UNKNOWN
    for name, lower in ITA_CATEGORIES:
        if ita_deg > lower:
            return name
    return ITA_DARK


@dataclass(frozen=True)
class PigmentationParams:
    """Tunable constants of :func:`measure_pigmentation` (physical units)."""

    analysis_px_per_mm: float = 5.0
    background_mm: float = 8.0          # sigma of the local-background Gaussian
    # every photo is first blurred by this Gaussian (sigma, mm): a fixed blur well above the
    # camera's own makes spot contrast and area less dependent on how sharp the photo is
    harmonise_mm: float = 0.25
    border_mm: float = 1.0              # skin-mask erosion before measuring
    spot_min_diameter_mm: float = 0.8   # equivalent diameter bounds of a spot
    spot_max_diameter_mm: float = 12.0
    spot_max_elongation: float = 2.5    # major/minor axis ratio (second moments) of a spot (0.7.0: 4)
    spot_min_fill: float = 0.7          # spot area / area of its second-moment ellipse
    spot_seed_melanin: float = 2.0      # dM a spot pixel needs at the least (melanin-index units)
    spot_min_contrast_de: float = 2.8   # CIEDE2000 of a spot's mean colour vs its background (after harmonise_mm)
    red_min_excess: float = 4.0         # H = dE - k dM a red pixel needs (erythema-index units)
    red_min_diameter_mm: float = 2.0
    red_smoothing_mm: float = 0.5       # sigma of the smoothing of the haemoglobin excess
    melanin_crosstalk: float = 0.45     # k: units of E that one unit of M adds
    exclusion_melanin: float = 3.5      # dM that keeps a pixel out of the second-pass background
    peak_smoothing_mm: float = 0.3      # sigma of the smoothing before taking a spot's peak dM
    # soft acceptance (repeatability): each test above is a linear ramp of this half-width around
    # its threshold (as a fraction of it), so a blob near a threshold counts partly instead of
    # flickering in and out between two photos of the same face; the count and the spot mask
    # take the blobs with weight >= 0.5, i.e. the thresholds themselves
    soft_fraction: float = 0.3
    spot_soft_max_diameter_mm: float = 8.0  # larger blobs (fold and hairline shadows) fade out ...
    # ... reaching weight 0.5 at (this + spot_max_diameter_mm) / 2 and 0 at spot_max_diameter_mm
    edge_ramp_mm: float = 1.5           # spots and red areas fade in over this beyond the border
    spot_peak_window_mm: float = 2.0    # half-width of the window a pixel's local peak dM is taken in
    min_region_area_mm2: float = 10.0   # smaller measured regions get NaN metrics


@dataclass(frozen=True)
class PigmentationMetrics:
    """Pigmentation of one region (or the whole face). See README.md, section "Colour and pigmentation".

    ``ita_deg`` degrees (-90..90), ``ita_category`` Chardon name, ``melanin_index`` and
    ``erythema_index`` index units (mean over the measured area), ``spot_count`` spots touching
    the region, ``spot_area_pct`` and ``red_area_pct`` percent of the measured area where spots
    and red areas are looked for (not unreliable),
    ``spot_contrast_de`` mean CIEDE2000 of those spots vs their local background (0 without
    spots), ``tone_unevenness`` RMS CIE76 delta-E of 1 mm cells vs the local background,
    ``area_mm2`` the measured area (region x eroded skin). Regions under
    ``min_region_area_mm2`` have NaN floats, zero counts and category "unknown".
    """

    ita_deg: float
    ita_category: str
    melanin_index: float
    erythema_index: float
    spot_count: int
    spot_area_pct: float
    spot_contrast_de: float
    tone_unevenness: float
    red_area_pct: float
    area_mm2: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Spot:
    """One detected brown spot. ``centre_xy`` in input pixels, ``diameter_mm`` equivalent-circle
    diameter, ``contrast_de`` CIEDE2000 vs local background, ``melanin_excess`` peak dM,
    ``regions`` the region keys it touches."""

    centre_xy: tuple[float, float]
    area_mm2: float
    diameter_mm: float
    contrast_de: float
    melanin_excess: float
    regions: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class _GridMaps:
    """The analysis-grid maps behind a result's full-size maps, which are made on first use:
    only overlays read them, and nearest-neighbour copies into fresh full-size arrays cost
    ~13 ms of a 12 MP analysis (mostly page faults of the new memory)."""

    size_wh: tuple[int, int]   # the input's (W, H)
    melanin: np.ndarray        # M, float32, analysis grid
    erythema: np.ndarray       # E, float32
    mean_melanin: float        # the face's mean M, subtracted in the redness map
    crosstalk: float           # k
    spot: np.ndarray           # bool, analysis grid
    red: np.ndarray
    measured: np.ndarray

    def full(self, grid: np.ndarray) -> np.ndarray:
        """Nearest-neighbour up to the input's size (0.2 mm blocks, invisible in an overlay), so
        maps and masks agree pixel for pixel."""
        if grid.shape[::-1] == self.size_wh:
            return grid
        if grid.dtype == np.bool_:
            return cv2.resize(grid.view(np.uint8), self.size_wh, interpolation=cv2.INTER_NEAREST_EXACT) > 0
        return cv2.resize(grid, self.size_wh, interpolation=cv2.INTER_NEAREST_EXACT)


@dataclass(frozen=True)
class PigmentationResult:
    """Face and per-region metrics, the detected spots, and maps at the input's (H, W).

    ``spot_mask``/``red_mask`` bool; ``melanin_map`` M (float32); ``redness_map`` the
    melanin-corrected erythema index E - k (M - mean face M) (float32); both maps are 0 outside
    ``measured_mask`` (the eroded skin mask, bool). The maps are made on first access.
    """

    face: PigmentationMetrics
    regions: dict[str, PigmentationMetrics]
    spots: tuple[Spot, ...]
    px_per_mm: float
    grid_maps: _GridMaps = field(repr=False)
    params: PigmentationParams = field(default_factory=PigmentationParams)

    def as_dict(self) -> dict:
        return {"face": self.face.as_dict(), "regions": {k: v.as_dict() for k, v in self.regions.items()}}

    @cached_property
    def measured_mask(self) -> np.ndarray:
        return self.grid_maps.full(self.grid_maps.measured)

    @cached_property
    def spot_mask(self) -> np.ndarray:
        return self.grid_maps.full(self.grid_maps.spot)

    @cached_property
    def red_mask(self) -> np.ndarray:
        return self.grid_maps.full(self.grid_maps.red)

    @cached_property
    def melanin_map(self) -> np.ndarray:
        g = self.grid_maps
        return g.full(g.melanin * g.measured)

    @cached_property
    def redness_map(self) -> np.ndarray:
        g = self.grid_maps
        redness = g.erythema - np.float32(g.crosstalk) * (g.melanin - np.float32(g.mean_melanin))
        return g.full(redness * g.measured)


# --------------------------------------------------------------------------- helpers


def _up(x, threshold: float, soft: float):
    """Linear ramp 0 -> 1 over threshold x (1 -+ soft), 0.5 at the threshold."""
    if soft * threshold <= 0:
        return (np.asarray(x) >= threshold).astype(np.float64)
    return np.clip((np.asarray(x, np.float64) - threshold * (1.0 - soft)) / (2.0 * soft * threshold), 0.0, 1.0)


def _down(x, threshold: float, soft: float):
    """Linear ramp 1 -> 0 over threshold x (1 -+ soft), 0.5 at the threshold."""
    if soft * threshold <= 0:
        return (np.asarray(x) <= threshold).astype(np.float64)
    return 1.0 - _up(x, threshold, soft)


def _up32(x: np.ndarray, threshold: float, soft: float) -> np.ndarray:
    """:func:`_up` of a float32 map, computed in float32 (the full-grid ramps cost a tenth)."""
    if soft * threshold <= 0:
        return (x >= threshold).astype(np.float32)
    r = (x - np.float32(threshold * (1.0 - soft))) * np.float32(1.0 / (2.0 * soft * threshold))
    return np.clip(r, 0.0, 1.0, out=r)


def _fade(x, start: float, stop: float):
    """1 up to ``start``, linear down to 0 at ``stop``."""
    return np.clip((stop - np.asarray(x, np.float64)) / max(stop - start, 1e-9), 0.0, 1.0)


def _odd_columns(rows: np.ndarray) -> np.ndarray:
    """bool (h, 2 w) with contiguous rows -> its odd columns, bool (h, w). The odd bytes are the
    high bytes of their little-endian byte pairs: one vectorised compare instead of a byte-strided
    copy (half the time)."""
    return rows.view("<u2") >= 256


def _resize_mask(mask: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """bool mask -> bool mask of another size (nearest sample: the analysis grid is at most ~2x
    coarser, so the boundary moves by under one analysis cell)."""
    if mask.shape[::-1] == tuple(size_wh):
        return mask
    h, w = mask.shape
    fx, fy = w // size_wh[0], h // size_wh[1]
    if fx == fy and fx > 1 and fx * size_wh[0] == w and fy * size_wh[1] == h:
        # integer factor: the same samples as INTER_NEAREST_EXACT, as a strided copy (8x faster)
        if fx == 2 and mask.flags.c_contiguous:
            return _odd_columns(mask[1::2])
        return np.ascontiguousarray(mask[fy // 2::fy, fx // 2::fx])
    return cv2.resize(np.ascontiguousarray(mask).view(np.uint8), size_wh, interpolation=cv2.INTER_NEAREST_EXACT) > 0


def _mask_box(mask: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """bool mask -> (the bounding box of :func:`_resize_mask` of it, x, y)."""
    small = _resize_mask(mask, size_wh)
    x, y, bw, bh = cv2.boundingRect(small.view(np.uint8))
    return small[y:y + bh, x:x + bw], x, y


def _lab(lin: np.ndarray) -> np.ndarray:
    """Linear RGB (H, W, 3) clipped to 1e-4..1 -> CIELAB, float32."""
    # within 0..1, where linear_to_lab takes OpenCV's conversion too (after a min/max scan)
    return cv2.cvtColor(lin, cv2.COLOR_LRGB2Lab)


def _melanin_erythema(lin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear RGB (clipped to 1e-4..1) -> (melanin index M, erythema index E), float32."""
    ln_r, ln_g = cv2.log(cv2.extractChannel(lin, 0)), cv2.log(cv2.extractChannel(lin, 1))
    k10 = np.float32(100.0 / _LN10)
    return ln_r * -k10, (ln_r - ln_g) * k10


def _indices(lin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear RGB (clipped to 1e-4..1) -> (CIELAB, melanin index M, erythema index E), float32."""
    return (_lab(lin), *_melanin_erythema(lin))


class _Background:
    """Local background reflectance: a Gaussian of sigma ``sigma_cells`` over cells of mean
    reflectance, normalised over a weight mask (so non-skin and excluded pixels do not leak in).
    Cells are ``grid_wh`` (1 mm); the smoothing runs on cells ``coarse`` times larger (the 8 mm
    Gaussian is still well sampled at 2 mm, and it costs a fifth). The background's L*, a*, b*, M
    and E are those of the smoothed reflectance."""

    def __init__(self, grid_wh: tuple[int, int], full_wh: tuple[int, int], sigma_cells: float, coarse: int = 2):
        self.grid_wh = grid_wh
        self.full_wh = full_wh
        gw, gh = grid_wh
        self.coarse_wh = (max(2, -(-gw // coarse)), max(2, -(-gh // coarse)))
        self.sigma = sigma_cells * self.coarse_wh[0] / gw

    def cells(self, lin: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted sum (per cell, divided by the cell size) of reflectance, and of the weight."""
        w3 = cv2.merge([weight] * 3)
        num = cv2.resize(cv2.multiply(lin, w3, dst=w3), self.grid_wh, interpolation=cv2.INTER_AREA)
        den = cv2.resize(weight, self.grid_wh, interpolation=cv2.INTER_AREA)
        return num, den

    def smooth(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """Background L*, a*, b*, M, E (5 channels) on the coarse grid, from :meth:`cells`.

        First-order normalised convolution: in each cell's Gaussian neighbourhood a plane
        a + b dx + c dy is fitted to the weighted cell reflectances and a is the background, so a
        linear lighting ramp is reproduced exactly, also at the edge of the mask where a plain
        weighted mean leans towards the inside. The local moments come straight from separable
        filters with kernels g(d), d g(d), d^2 g(d) (d in sigmas), so nothing cancels in float32;
        a small ridge on the slopes keeps one-sided neighbourhoods stable.
        """
        num = cv2.resize(num, self.coarse_wh, interpolation=cv2.INTER_AREA)
        den = cv2.resize(den, self.coarse_wh, interpolation=cv2.INTER_AREA)
        r = max(1, int(math.ceil(3.0 * self.sigma)))
        d = np.arange(-r, r + 1, dtype=np.float32) / np.float32(self.sigma)
        g0 = np.exp(-0.5 * d * d).astype(np.float32)
        g0 /= g0.sum()
        g1, g2 = g0 * d, g0 * d * d

        def f(img, kx, ky):
            return cv2.sepFilter2D(img, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_CONSTANT)

        w = den.astype(np.float32)
        s0, sx, sy = f(w, g0, g0), f(w, g1, g0), f(w, g0, g1)
        sxx, syy, sxy = f(w, g2, g0) + 0.05 * s0, f(w, g0, g2) + 0.05 * s0, f(w, g1, g1)
        sv, svx, svy = f(num, g0, g0), f(num, g1, g0), f(num, g0, g1)
        c00 = sxx * syy - sxy * sxy
        c01 = sxy * sy - sx * syy
        c02 = sx * sxy - sxx * sy
        det = s0 * c00 + sx * c01 + sy * c02
        ok = (s0 > 1e-3) & (det > 1e-9)
        fallback = num.reshape(-1, 3).sum(axis=0) / max(float(w.sum()), 1e-9)
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0).astype(np.float32)
        rgb = (c00[..., None] * sv + c01[..., None] * svx + c02[..., None] * svy) * inv[..., None]
        rgb = np.where(ok[..., None], rgb, fallback[None, None, :].astype(np.float32))
        lab, mel, ery = _indices(np.clip(rgb, 1e-4, 1.0).astype(np.float32))
        return cv2.merge([lab, mel, ery])

    def sample(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear samples (n, channels) of a coarse-grid map at full-grid pixel positions x, y:
        the same values :meth:`upsample` gives there, without upsampling the whole map."""
        gw, gh = grid.shape[1], grid.shape[0]
        fx = np.clip((x + 0.5) * (gw / self.full_wh[0]) - 0.5, 0.0, gw - 1.0)
        fy = np.clip((y + 0.5) * (gh / self.full_wh[1]) - 0.5, 0.0, gh - 1.0)
        x0, y0 = np.minimum(fx.astype(np.intp), gw - 2), np.minimum(fy.astype(np.intp), gh - 2)
        tx, ty = (fx - x0)[:, None], (fy - y0)[:, None]
        g = grid.astype(np.float64)
        return ((1 - ty) * ((1 - tx) * g[y0, x0] + tx * g[y0, x0 + 1])
                + ty * ((1 - tx) * g[y0 + 1, x0] + tx * g[y0 + 1, x0 + 1]))

    def upsample(self, grid: np.ndarray, size_wh: tuple[int, int] | None = None) -> np.ndarray:
        return cv2.resize(grid, size_wh or self.full_wh, interpolation=cv2.INTER_LINEAR)

    def upsample_mel_ery(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Background M and E (channels 3, 4 of :meth:`smooth`) at full size, one channel each
        (a third of the time of upsampling both together and splitting)."""
        return self.upsample(np.ascontiguousarray(grid[..., 3])), self.upsample(np.ascontiguousarray(grid[..., 4]))


def _check_inputs(rgb_linear, masks, px_per_mm, skin_mask):
    rgb = np.asarray(rgb_linear)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.float32:
        raise InvalidInput(f"rgb_linear must be float32 (H, W, 3), got {rgb.dtype} {rgb.shape}", field="rgb_linear")
    if not (isinstance(px_per_mm, (int, float)) and math.isfinite(px_per_mm) and px_per_mm > 0):
        raise InvalidInput(f"px_per_mm must be a positive number, got {px_per_mm!r}", field="px_per_mm")
    shape = rgb.shape[:2]
    skin = np.asarray(skin_mask)
    if skin.shape != shape or skin.dtype != np.bool_:
        raise InvalidInput(f"skin_mask must be bool {shape}, got {skin.dtype} {skin.shape}", field="skin_mask")
    for name, m in masks.items():
        m = np.asarray(m)
        if m.shape != shape or m.dtype != np.bool_:
            raise InvalidInput(f"mask {name!r} must be bool {shape}, got {m.dtype} {m.shape}", field=name)
    return rgb, skin


def _nan_metrics(area_mm2: float) -> PigmentationMetrics:
    nan = float("nan")
    return PigmentationMetrics(nan, ITA_UNKNOWN, nan, nan, 0, nan, nan, nan, nan, area_mm2)


# --------------------------------------------------------------------------- main entry


def measure_pigmentation(
    rgb_linear: np.ndarray,
    masks: dict[str, np.ndarray],
    px_per_mm: float,
    *,
    skin_mask: np.ndarray,
    params: PigmentationParams | None = None,
    unreliable: np.ndarray | None = None,
) -> PigmentationResult:
    """Pigmentation metrics of the face and of each region.

    Parameters
    ----------
    rgb_linear : float32 (H, W, 3) linear RGB, colour-normalised (0-1 nominal).
    masks : region name -> bool (H, W) mask (already intersected with the skin mask).
    px_per_mm : scale of the image (canonical frame: 10).
    skin_mask : bool (H, W), all skin of the face.
    params : :class:`PigmentationParams`, defaults if None.
    unreliable : bool (H, W) or None, pixels whose colour is not to be trusted for spots and red
        areas (clipped highlights: R clips first, which reads as a colour change and skews the
        local background around them). They are left out of the local background, of spot and
        red detection and of the area the spot and red shares are taken of, but still count in
        the region's area and mean colour.

    Returns a :class:`PigmentationResult`. Raises :class:`InvalidInput` on malformed inputs or an
    empty skin mask.
    """
    p = params or PigmentationParams()
    rgb, skin = _check_inputs(rgb_linear, masks, px_per_mm, skin_mask)
    h, w = rgb.shape[:2]

    # ---- analysis grid
    scale = min(1.0, p.analysis_px_per_mm / float(px_per_mm))
    if scale > 0.8:
        scale = 1.0
    aw, ah = max(1, round(w * scale)), max(1, round(h * scale))
    ppm = float(px_per_mm) * aw / w
    lin = cv2.resize(rgb, (aw, ah), interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    if p.harmonise_mm > 0:
        lin = cv2.GaussianBlur(lin, (0, 0), p.harmonise_mm * ppm)
    skin_a = _resize_mask(skin, (aw, ah))
    r_border = max(1, round(p.border_mm * ppm))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_border + 1, 2 * r_border + 1))
    interior = cv2.erode(skin_a.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if not interior.any():
        raise InvalidInput("the skin mask is empty (after removing its border)", field="skin_mask")
    # weight 0 at the border, 1 from edge_ramp_mm further in: a mask edge that moves between two
    # photos (landmarks, hair, lighting) only moves spots and red areas near it a little
    # (in place: every fresh full-grid array costs ~1 ms of page faults here, so the arrays of
    # this function are reused or freed early where that is easy)
    edge_w = cv2.distanceTransform(skin_a.view(np.uint8), cv2.DIST_L2, 5)
    edge_w -= np.float32(p.border_mm * ppm)
    edge_w *= np.float32(1.0 / max(p.edge_ramp_mm * ppm, 1e-6))
    np.clip(edge_w, 0.0, 1.0, out=edge_w)
    edge_w *= interior
    detect = interior
    if unreliable is not None:
        bad = _resize_mask(np.asarray(unreliable, bool), (aw, ah))
        if np.count_nonzero(interior & ~bad) >= 0.5 * np.count_nonzero(interior):
            detect = interior & ~bad
            edge_w *= detect

    # ---- per-pixel quantities: M, E (L*, a*, b* only where needed: at spots and in the regions)
    lin = np.clip(lin, 1e-4, 1.0)
    mel, ery = _melanin_erythema(lin)

    # ---- local background on a 1 mm grid, two passes
    gw, gh = max(4, round(aw / ppm)), max(4, round(ah / ppm))
    bgr = _Background((gw, gh), (aw, ah), p.background_mm * gw / (aw / ppm))
    num1, den1 = bgr.cells(lin, detect.view(np.uint8).astype(np.float32))
    k_mel = np.float32(p.melanin_crosstalk)
    bg_mel, bg_ery = bgr.upsample_mel_ery(bgr.smooth(num1, den1))
    d_mel = np.subtract(mel, bg_mel, out=bg_mel)
    d_red = np.subtract(ery, bg_ery, out=bg_ery)
    d_red -= k_mel * d_mel
    # second pass without the first pass's spots and red areas (and 1 mm around them). The
    # exclusion is soft, a ramp over 0.5-1.5x each threshold: a hard cut let a broad, faintly red
    # cheek flip in or out of the background as a whole under a 15 % exposure change, and the
    # red area of the face with it (measured on one face: +4.7 % on a base of 6.8 %; +3.3 % with
    # the ramp, the rest comes from its skin mask, which moves with exposure)
    keep_bg = 1.0 - _up32(d_mel, p.exclusion_melanin, 0.5)
    keep_bg *= 1.0 - _up32(d_red, p.red_min_excess, 0.5)
    keep_bg *= detect
    r_ex = max(1, round(1.0 * ppm))
    keep_bg = cv2.erode(keep_bg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_ex + 1,) * 2))
    num2, den2 = bgr.cells(lin, keep_bg)
    del keep_bg, d_mel, d_red
    bg_grid = bgr.smooth(num2, den2)
    bg_mel, bg_ery = bgr.upsample_mel_ery(bg_grid)
    d_mel = np.subtract(mel, bg_mel, out=bg_mel)
    d_red = np.subtract(ery, bg_ery, out=bg_ery)
    d_red -= k_mel * d_mel

    # ---- brown spots
    def area_px(d_mm: float) -> float:
        return math.pi * (d_mm / 2.0 * ppm) ** 2

    sf = p.soft_fraction
    min_area, max_area = area_px(p.spot_min_diameter_mm * (1.0 - sf)), area_px(p.spot_max_diameter_mm)
    # a spot pixel is darker than the background by at least the seed excess and by at least half
    # the local peak (max of the 0.3 mm-smoothed excess within the peak window): each spot is cut
    # at half its own contrast, and a dark neighbour further than the window does not matter
    d_soft = cv2.GaussianBlur(d_mel, (0, 0), max(0.5, p.peak_smoothing_mm * ppm))
    k = 2 * max(1, round(p.spot_peak_window_mm * ppm)) + 1
    cut = cv2.dilate(d_soft, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))  # the local peak
    cut *= np.float32(0.5)
    np.maximum(cut, np.float32(p.spot_seed_melanin), out=cut)
    dark = (d_mel >= cut) & detect
    del cut
    # BBDT (CCL_GRANA): the same labels and stats as the default algorithm, in half the time
    n_s, lab_s, st_s, cen_s = cv2.connectedComponentsWithStatsWithAlgorithm(
        dark.view(np.uint8), 8, cv2.CV_32S, cv2.CCL_GRANA)
    spots_ok = np.zeros(n_s, bool)
    spot_w = np.zeros(n_s)
    contrast = np.zeros(n_s)
    peak_s = np.zeros(n_s)
    # flat index and label of every pixel of a candidate of the right size: all per-spot
    # statistics and the spot maps come from these lists, not from full-grid label lookups
    idx = ids = np.zeros(0, np.intp)
    if n_s > 1:
        areas = st_s[:, cv2.CC_STAT_AREA]
        size_ok = (areas >= min_area) & (areas <= max_area)
        size_ok[0] = False
        idx = np.flatnonzero(dark)
        ids = lab_s.ravel()[idx]
        keep = size_ok[ids]  # the many small candidates from grain and mottling go no further
        idx, ids = idx[keep], ids[keep]
        cnt = np.maximum(np.bincount(ids, minlength=n_s), 1).astype(np.float64)
        lab_flat = _lab(lin.reshape(1, -1, 3)[:, idx]).reshape(-1, 3)  # one row: OpenCV's vector path
        mean_lab = np.stack([np.bincount(ids, lab_flat[:, c], n_s) for c in range(3)], 1) / cnt[:, None]
        py, px = np.divmod(idx, aw)
        mx = np.bincount(ids, px, n_s) / cnt
        my = np.bincount(ids, py, n_s) / cnt
        # the background is smooth at 8 mm: its value at the spot's centroid is its mean over the spot
        ok_ids = np.flatnonzero(size_ok)
        mean_bg = bgr.sample(bg_grid[..., :3], mx[ok_ids], my[ok_ids])
        contrast[ok_ids] = delta_e_2000(mean_lab[ok_ids], mean_bg)
        # elongation from the second moments: wrinkle valleys and fold shadows are lines, not spots
        dx, dy = px - mx[ids], py - my[ids]
        m20 = np.bincount(ids, dx * dx, n_s) / cnt + 1.0 / 12.0
        m02 = np.bincount(ids, dy * dy, n_s) / cnt + 1.0 / 12.0
        m11 = np.bincount(ids, dx * dy, n_s) / cnt
        half_tr, root = (m20 + m02) / 2.0, np.sqrt(((m20 - m02) / 2.0) ** 2 + m11 ** 2)
        elongation = np.sqrt((half_tr + root) / np.maximum(half_tr - root, 1e-6))
        # fill of the moment ellipse (semi-axes 2 sqrt(eigenvalue)): a spot is a compact blob,
        # the ragged patches of shading and mottling fill their ellipse poorly
        ellipse_area = 4.0 * math.pi * np.sqrt(np.maximum((half_tr + root) * (half_tr - root), 1e-12))
        fill = areas / np.maximum(ellipse_area, 1e-6)
        diam = 2.0 * np.sqrt(areas / math.pi) / ppm
        weight = (_up(diam, p.spot_min_diameter_mm, sf) * _up(contrast, p.spot_min_contrast_de, sf)
                  * _down(elongation, p.spot_max_elongation, sf) * _up(fill, p.spot_min_fill, sf)
                  * _fade(diam, p.spot_soft_max_diameter_mm, p.spot_max_diameter_mm))
        weight[~size_ok] = 0.0
        weight[0] = 0.0
        spot_w[:] = weight
        spots_ok = weight >= 0.5
        # peak excess, for the report
        peak = np.full(n_s, -np.inf, np.float32)  # float32 like the values: the fast path of .at
        np.maximum.at(peak, ids, d_soft.ravel()[idx])
        peak_s[spots_ok] = peak[spots_ok]
        soft = spot_w[ids] > 0
        idx, ids = idx[soft], ids[soft]
    # from here on idx, ids: the pixels of the blobs with some weight (spot_w > 0)
    spot_a = np.zeros((ah, aw), bool)
    spot_a.ravel()[idx[spots_ok[ids]]] = True
    spot_soft = np.zeros((ah, aw), np.float32)
    spot_soft.ravel()[idx] = spot_w.astype(np.float32)[ids] * edge_w.ravel()[idx]
    spot_py, spot_px = np.divmod(idx, aw)
    del d_mel, d_soft, lab_s, dark

    # ---- red areas: melanin-corrected erythema excess
    # components at the ramp's low end; each pixel counts by a ramp of its excess around
    # red_min_excess, so pixels near the threshold do not flicker between photos
    red_lo = p.red_min_excess * (1.0 - sf)
    # red areas are >= 2 mm: judged on the excess smoothed at red_smoothing_mm, so chroma
    # subsampling, JPEG and slight blur (which smooth the photo's chroma) do not change them
    d_red = cv2.GaussianBlur(d_red, (0, 0), max(0.5, p.red_smoothing_mm * ppm))
    red_seed = ((d_red >= red_lo) & detect & ~spot_a).view(np.uint8)
    n_r, lab_r, st_r, _ = cv2.connectedComponentsWithStatsWithAlgorithm(red_seed, 8, cv2.CV_32S, cv2.CCL_GRANA)
    red_ok = st_r[:, cv2.CC_STAT_AREA] >= area_px(p.red_min_diameter_mm)
    red_ok[0] = False
    red_in = np.take(red_ok, lab_r)
    del lab_r
    red_a = red_in & (d_red >= p.red_min_excess)
    red_soft = _up32(d_red, p.red_min_excess, sf)
    red_soft *= red_in
    red_soft *= edge_w

    # ---- metrics per region, each on its mask's bounding box
    cell_lab = linear_to_lab(np.clip(num1 / np.maximum(den1, 1e-6)[..., None], 1e-4, 1.0))
    cell_de2 = ((cell_lab - bgr.upsample(bg_grid, (gw, gh))[..., :3]) ** 2).sum(axis=2)
    cell_ok = den1 >= 0.5
    # cells of f x f analysis pixels (f integer): a box's cells are those of its f-aligned window
    f = aw // gw
    whole_cells = f * gw == aw and f * gh == ah
    spot_regions: dict[int, list[str]] = {}

    def sums(planes: tuple[np.ndarray, ...], weight: np.ndarray) -> list[float]:
        """Sums of planes (boxes) weighted by a 0/1 float32 mask of the box: a product and a
        (double) sum per plane are ~10x faster than ``cv2.mean`` with a mask."""
        prod = np.empty_like(weight)  # one buffer: fresh memory costs page faults
        return [cv2.sumElems(cv2.multiply(plane, weight, dst=prod))[0] for plane in planes]

    def region_sums(reg: np.ndarray, x: int, y: int) -> np.ndarray:
        """Of a region (bool box of the analysis grid, top left at x, y): its pixel count, the
        count of its plain skin (no spot or red area), the sums of M, E and the soft spot and red
        weights over it, of L* and b* over its plain skin, and the count of its pixels where spots
        and red areas are looked for (not unreliable)."""
        if not reg.size:
            return np.zeros(9)
        sl = (slice(y, y + reg.shape[0]), slice(x, x + reg.shape[1]))
        plain = reg & ~spot_a[sl] & ~red_a[sl]
        lab_l, _, lab_b = cv2.split(_lab(lin[sl]))  # L*, b* are needed in the regions' boxes only
        return np.array([np.count_nonzero(reg), np.count_nonzero(plain),
                         *sums((mel[sl], ery[sl], spot_soft[sl], red_soft[sl]), reg.view(np.uint8).astype(np.float32)),
                         *sums((lab_l, lab_b), plain.view(np.uint8).astype(np.float32)),
                         np.count_nonzero(reg & detect[sl])])

    def region_metrics(name: str | None, reg: np.ndarray, x: int, y: int,
                       totals: np.ndarray | None = None) -> PigmentationMetrics:
        """Metrics of the region ``reg`` (bool box of the analysis grid, top left at x, y), from
        its :func:`region_sums` if given."""
        if totals is None:
            totals = region_sums(reg, x, y)
        n, n_pl = int(totals[0]), int(totals[1])
        area_mm2 = n / ppm ** 2
        if area_mm2 < p.min_region_area_mm2:
            return _nan_metrics(area_mm2)
        bh, bw = reg.shape
        sl = (slice(y, y + bh), slice(x, x + bw))
        reg_u8 = reg.view(np.uint8)
        mel_m, ery_m = (float(v) / n for v in totals[2:4])
        # spot and red area as shares of the skin where they are looked for: a clipped highlight
        # hides what lies under it, and counting it as clear skin made the areas fall as the
        # exposure rose (measured on the sample render with planted spots: spot area 5.0 -> 3.2 %
        # from 10 % less to 10 % more light, as clipped skin went 0 -> 5 %)
        seen = max(float(totals[8]), 1.0)
        spot_frac, red_frac = float(totals[4]) / seen, float(totals[5]) / seen
        # ITA of the plain skin if there is enough of it
        if n_pl >= 0.05 * n:
            l_m, b_m = (float(v) / n_pl for v in totals[6:8])
        else:
            l_m, _, b_m, _ = cv2.mean(_lab(lin[sl]), mask=reg_u8)
        ita = ita_degrees(l_m, b_m)
        # spots touching the region: its mask at the pixels of the weighted blobs
        inside = (spot_px >= x) & (spot_px < x + bw) & (spot_py >= y) & (spot_py < y + bh)
        inside[inside] = reg[spot_py[inside] - y, spot_px[inside] - x]
        soft_ids = np.unique(ids[inside])
        spot_ids = soft_ids[spots_ok[soft_ids]]
        if name is not None:
            for i in spot_ids:
                spot_regions.setdefault(int(i), []).append(name)
        sw = spot_w[soft_ids]
        mean_contrast = float((sw * contrast[soft_ids]).sum() / sw.sum()) if sw.sum() > 0 else 0.0
        # cells at least half inside the region (INTER_AREA of 0/1 rounds the cell's mean)
        if whole_cells:
            cx, cy = x // f, y // f
            cw, ch = -(-(x + bw) // f) - cx, -(-(y + bh) // f) - cy
            win = np.zeros((ch * f, cw * f), np.uint8)
            win[y - cy * f:y - cy * f + bh, x - cx * f:x - cx * f + bw] = reg_u8
            csl = (slice(cy, cy + ch), slice(cx, cx + cw))
        else:
            win = np.zeros((ah, aw), np.uint8)
            win[sl] = reg_u8
            cw, ch, csl = gw, gh, (slice(None), slice(None))
        use = (cv2.resize(win, (cw, ch), interpolation=cv2.INTER_AREA) > 0) & cell_ok[csl]
        tone = float(np.sqrt(cell_de2[csl][use].mean())) if use.any() else float("nan")
        return PigmentationMetrics(
            ita_deg=float(ita),
            ita_category=ita_category(ita),
            melanin_index=float(mel_m),
            erythema_index=float(ery_m),
            spot_count=int(spot_ids.size),
            spot_area_pct=100.0 * spot_frac,
            spot_contrast_de=mean_contrast if spot_ids.size else 0.0,
            tone_unevenness=tone,
            red_area_pct=100.0 * red_frac,
            area_mm2=float(area_mm2),
        )

    def measured_box(mask: np.ndarray, x: int, y: int) -> tuple[np.ndarray, int, int]:
        """A box of a mask of the analysis grid, cut to the measured skin."""
        return mask & interior[y:y + mask.shape[0], x:x + mask.shape[1]], x, y

    region_boxes = {name: measured_box(*_mask_box(np.asarray(m), (aw, ah))) for name, m in masks.items()}
    region_totals = {name: region_sums(*b) for name, b in region_boxes.items()}
    # the face pools the regions (as texture and wrinkles do), not the whole skin mask: neck,
    # ears, nose and hairline come and go with framing and are no treatment area
    if masks:
        face_zone = np.zeros((ah, aw), bool)
        for reg, x, y in region_boxes.values():
            face_zone[y:y + reg.shape[0], x:x + reg.shape[1]] |= reg
        x, y, bw, bh = cv2.boundingRect(face_zone.view(np.uint8))
        totals = sum(region_totals.values())
        # regions that do not overlap (the usual case): the face's sums are the sum of theirs
        disjoint = totals[0] == np.count_nonzero(face_zone)
        face = region_metrics(None, face_zone[y:y + bh, x:x + bw], x, y, totals if disjoint else None)
    else:
        face = region_metrics(None, interior, 0, 0)
    regions = {name: region_metrics(name, *b, region_totals[name]) for name, b in region_boxes.items()}

    # ---- spots list; the full-size maps are made when first read (see _GridMaps)
    sx, sy = w / aw, h / ah
    spots = tuple(
        Spot(
            centre_xy=(float((cen_s[i, 0] + 0.5) * sx - 0.5), float((cen_s[i, 1] + 0.5) * sy - 0.5)),
            area_mm2=float(st_s[i, cv2.CC_STAT_AREA] / ppm ** 2),
            diameter_mm=float(2.0 * math.sqrt(st_s[i, cv2.CC_STAT_AREA] / math.pi) / ppm),
            contrast_de=float(contrast[i]),
            melanin_excess=float(peak_s[i]),
            regions=tuple(spot_regions.get(i, ())),
        )
        for i in np.flatnonzero(spots_ok)
    )
    mean_mel = face.melanin_index if math.isfinite(face.melanin_index) else float(mel[interior].mean())
    return PigmentationResult(
        face=face,
        regions=regions,
        spots=spots,
        px_per_mm=float(px_per_mm),
        grid_maps=_GridMaps((w, h), mel, ery, mean_mel, float(k_mel), spot_a, red_a, interior),
        params=p,
    )
