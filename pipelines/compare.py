"""Before/after: two photos of one patient aligned by their landmarks, side by side, with a
CIELAB colour-difference map per region.

Pure: arrays and landmark/polygon coordinates in, dataclasses and RGB arrays out.

    cmp = compare_photos(before_rgb, after_rgb, before_landmarks, after_landmarks, regions=polygons)
    cmp.regions["cheek_left"].mean_delta_e       # CIEDE2000, after vs before, in the region
    img = render_comparison(cmp, labels=("2025-01-06", "2025-03-03"))
    crop = render_comparison(cmp, region="forehead")

How
---
1. **Alignment**: a similarity transform (rotation, uniform scale, translation) from the after
   photo's five landmarks onto the before photo's, by :func:`cv2.estimateAffinePartial2D`
   (RANSAC with a threshold of 4 % of the inter-pupillary distance, then Levenberg-Marquardt on
   the inliers). A similarity and not a full affine: the face does not shear between visits, and
   five points are too few to estimate more without fitting expression changes.
2. **View**: both photos are resampled into one upright view of the before face (eye line
   level, ``view_px_per_mm``, never finer than the before photo's own resolution), around the
   regions, so the two sides and the map share pixels.
3. The landmark alignment is then **refined** on the images themselves (ECC, affine, coarse to
   fine at 1 and 2 px/mm, on band-passed grey levels inside the hull of the face's regions): the
   five landmarks are only good to a few percent of the inter-pupillary distance (several mm at
   the forehead), which would show as bright edges all over a difference map. The refinement is
   kept only when it is moderate (under ``max_refine_mm``, 5 degrees, 10 % scale, 5 % shear) and
   raises the correlation; ``Comparison.refinement`` reports both correlations.
4. **Exposure**: the after photo's linear RGB is scaled per channel by the median, over the
   regions' skin, of the per-pixel ratio before/after (images smoothed by 1 mm; gains bounded to
   0.5-2): a brighter room is not a skin change, and the unchanged majority of the skin sets the
   gain, not the spots that faded. The gains are reported.
5. **Difference**: both views go to CIELAB (D65), are smoothed by ``smooth_mm`` (JPEG noise,
   residual misregistration), and CIEDE2000 is computed per pixel; the signed delta L* tells
   darker from lighter. Per region: mean and 95th percentile delta E, mean delta L*, the share of
   pixels over ``changed_de`` (a difference a trained eye sees side by side, about 3).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipelines.errors import InvalidInput
from pipelines.metrics.colour import delta_e_2000, linear_to_lab, linear_to_srgb8, srgb_to_linear

IPD_MM = 63.0
Point = tuple[float, float]


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Alignment:
    """``matrix``: 2x3 similarity, after-photo px -> before-photo px. ``scale``: before px per
    after px; ``rotation_deg``: counter-clockwise as displayed. ``residual_mm``: RMS landmark
    distance after alignment over the inliers, in mm at the before face (IPD = 63 mm)."""

    matrix: np.ndarray
    scale: float
    rotation_deg: float
    translation: tuple[float, float]
    residual_px: float
    residual_mm: float
    inliers: tuple[str, ...]
    outliers: tuple[str, ...]

    def map(self, xy: np.ndarray) -> np.ndarray:
        """After-photo px (N, 2) -> before-photo px (N, 2)."""
        return apply_affine(self.matrix, xy)

    def to_dict(self) -> dict:
        return {"matrix": np.round(self.matrix, 6).tolist(), "scale": round(self.scale, 5),
                "rotation_deg": round(self.rotation_deg, 3),
                "translation": [round(v, 2) for v in self.translation],
                "residual_px": round(self.residual_px, 3), "residual_mm": round(self.residual_mm, 3),
                "inliers": list(self.inliers), "outliers": list(self.outliers)}


def apply_affine(m: np.ndarray, xy) -> np.ndarray:
    pts = np.asarray(xy, np.float64).reshape(-1, 2)
    return pts @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``a o b`` (b first)."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def _eye_ipd(landmarks: Mapping[str, Point]) -> float:
    if "left_eye" not in landmarks or "right_eye" not in landmarks:
        raise InvalidInput("landmarks: both eyes are needed", field="landmarks")
    return float(np.hypot(*(np.subtract(landmarks["left_eye"], landmarks["right_eye"]))))


def align_landmarks(before: Mapping[str, Point], after: Mapping[str, Point], *,
                    ransac_frac: float = 0.04) -> Alignment:
    """The similarity mapping ``after`` landmarks onto ``before`` (same names, photo px).

    Raises :class:`InvalidInput` with fewer than 3 common landmarks or a degenerate fit."""
    names = [n for n in before if n in after]
    if len(names) < 3:
        raise InvalidInput(f"landmarks: {len(names)} in common, at least 3 needed", field="landmarks")
    src = np.array([after[n] for n in names], np.float64)
    dst = np.array([before[n] for n in names], np.float64)
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise InvalidInput("landmarks: coordinates must be finite numbers", field="landmarks")
    ipd = _eye_ipd(before)
    if ipd <= 1.0:
        raise InvalidInput("landmarks: the eyes coincide", field="landmarks")
    m, inl = cv2.estimateAffinePartial2D(src.reshape(-1, 1, 2), dst.reshape(-1, 1, 2), method=cv2.RANSAC,
                                         ransacReprojThreshold=max(1.0, ransac_frac * ipd),
                                         maxIters=2000, confidence=0.999, refineIters=20)
    if m is None or not np.isfinite(m).all():
        raise InvalidInput("landmarks: no similarity transform fits them", field="landmarks")
    keep = inl.ravel().astype(bool) if inl is not None else np.ones(len(names), bool)
    scale = float(math.hypot(m[0, 0], m[1, 0]))
    if not 0.1 < scale < 10.0:
        raise InvalidInput(f"landmarks: implausible scale {scale:.3f} between the photos", field="landmarks")
    resid = np.hypot(*(apply_affine(m, src) - dst).T)
    rms = float(np.sqrt(np.mean(resid[keep] ** 2))) if keep.any() else float("nan")
    return Alignment(matrix=m, scale=scale, rotation_deg=float(math.degrees(math.atan2(m[1, 0], m[0, 0]))),
                     translation=(float(m[0, 2]), float(m[1, 2])), residual_px=rms,
                     residual_mm=rms * IPD_MM / ipd,
                     inliers=tuple(n for n, k in zip(names, keep) if k),
                     outliers=tuple(n for n, k in zip(names, keep) if not k))


# --------------------------------------------------------------------------- the common view


def view_matrix(before_landmarks: Mapping[str, Point], polygons: Mapping[str, np.ndarray] | None, *,
                px_per_mm: float, margin_mm: float = 8.0) -> tuple[np.ndarray, tuple[int, int]]:
    """2x3 similarity before-photo px -> view px (eye line level, ``px_per_mm``) and the view's
    (width, height), covering the region polygons (or, without them, a 140 x 180 mm face box)."""
    le = np.asarray(before_landmarks["left_eye"], np.float64)
    re = np.asarray(before_landmarks["right_eye"], np.float64)
    d = le - re
    ipd = float(np.hypot(*d))
    k = px_per_mm * IPD_MM / ipd
    theta = -math.atan2(d[1], d[0])
    c, s = math.cos(theta) * k, math.sin(theta) * k
    rot = np.array([[c, -s], [s, c]])
    mid = (le + re) / 2.0
    m = np.hstack([rot, (-rot @ mid)[:, None]])
    if polygons:
        pts = np.vstack([apply_affine(m, p) for p in polygons.values()])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    else:
        lo = np.array([-70.0, -65.0]) * px_per_mm
        hi = np.array([70.0, 115.0]) * px_per_mm
    margin = margin_mm * px_per_mm
    lo, hi = lo - margin, hi + margin
    m[:, 2] -= lo
    size = (int(math.ceil(hi[0] - lo[0])), int(math.ceil(hi[1] - lo[1])))
    return m, size


def _hull_mask(polygons: Mapping[str, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The convex hull of all polygons (the face with its eyes, nose and mouth), as a mask."""
    pts = np.vstack(list(polygons.values()))
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _warp(rgb: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``rgb`` by ``m`` (image px -> view px) into ``size``; area pre-shrink against
    aliasing. Returns the view and its validity mask (pixels that came from inside the photo)."""
    m = np.asarray(m, np.float64).copy()
    work = rgb
    shrink = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if shrink < 0.5:
        f = shrink * 1.5
        work = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        m[:, :2] /= f
    out = cv2.warpAffine(work, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.full(work.shape[:2], 255, np.uint8)
    valid = cv2.warpAffine(ones, m, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0
    return out, valid


def _polygon_masks(polygons: Mapping[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    out = {}
    for name, poly in polygons.items():
        mask = np.zeros((size[1], size[0]), np.uint8)
        cv2.fillPoly(mask, [np.round(np.asarray(poly) * 4).astype(np.int32)], 1, cv2.LINE_8, shift=2)
        out[name] = mask.astype(bool)
    return out


def _band(gray: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Band-pass (0.5-4 mm) of a grey image: features and skin texture, not the lighting."""
    g = gray.astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), max(0.5, 0.5 * px_per_mm)) - cv2.GaussianBlur(g, (0, 0), 4.0 * px_per_mm)


def _refine_ecc(before: np.ndarray, after: np.ndarray, mask: np.ndarray, px_per_mm: float,
                *, levels_px_per_mm: tuple[float, ...] = (1.0, 2.0)) -> np.ndarray | None:
    """Affine ECC of the ``after`` view onto the ``before`` view on ``mask``, coarse to fine at
    ``levels_px_per_mm``. Returns the 2x3 correction, after-view px -> before-view px, or None
    when ECC does not converge."""
    g0 = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY)
    warp = np.eye(2, 3, dtype=np.float32)      # before-view px -> after-view px, at full view scale
    for level in levels_px_per_mm:
        f = min(1.0, level / px_per_mm)
        size = (max(8, int(round(g0.shape[1] * f))), max(8, int(round(g0.shape[0] * f))))
        b0 = _band(cv2.resize(g0, size, interpolation=cv2.INTER_AREA), px_per_mm * f)
        b1 = _band(cv2.resize(g1, size, interpolation=cv2.INTER_AREA), px_per_mm * f)
        m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        w = warp.copy()
        w[:, 2] *= f
        try:
            _, w = cv2.findTransformECC(b0, b1, w, cv2.MOTION_AFFINE,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6), m, 1)
        except cv2.error:
            return None
        warp = w.astype(np.float32)
        warp[:, 2] /= f
        if f >= 1.0:
            break
    return cv2.invertAffineTransform(warp.astype(np.float64))


def _similarity_like(m: np.ndarray) -> tuple[float, float, float, float]:
    """(shift mm-free px, rotation deg, scale, anisotropy) of a 2x3 affine's linear part."""
    a = m[:, :2]
    u, sv, vt = np.linalg.svd(a)
    rot = u @ vt
    return (float(np.hypot(*m[:, 2])), abs(math.degrees(math.atan2(rot[1, 0], rot[0, 0]))),
            float(np.sqrt(sv[0] * sv[1])), float(sv[0] / sv[1] - 1.0))


def _masked_corr(a: np.ndarray, b: np.ndarray, mask: np.ndarray, px_per_mm: float) -> float:
    """Correlation of the band-passed grey views over ``mask`` (alignment quality, -1 to 1)."""
    x = _band(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), px_per_mm)[mask]
    y = _band(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), px_per_mm)[mask]
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class RegionDifference:
    """After vs before in one region. delta E: CIEDE2000; ``mean_delta_l``: mean after - before
    L* (negative: darker after); ``changed_pct``: share of the region's pixels over the
    comparison's ``changed_de``."""

    name: str
    pixels: int
    mean_delta_e: float
    p95_delta_e: float
    mean_delta_l: float
    changed_pct: float

    def to_dict(self) -> dict:
        return {"name": self.name, "pixels": self.pixels, "mean_delta_e": round(self.mean_delta_e, 3),
                "p95_delta_e": round(self.p95_delta_e, 3), "mean_delta_l": round(self.mean_delta_l, 3),
                "changed_pct": round(self.changed_pct, 2)}


@dataclass(frozen=True)
class Comparison:
    """Two photos in one view. ``before``/``after``: RGB uint8 (H, W, 3), ``after`` aligned and
    exposure-matched; ``valid``: pixels inside both photos; ``delta_e``/``delta_l``: float32
    (H, W), 0 outside ``valid``. ``polygons``: region polygons in view px. ``to_view``: 2x3,
    before-photo px -> view px; ``after_to_view``: after-photo px -> view px."""

    alignment: Alignment
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    delta_e: np.ndarray
    delta_l: np.ndarray
    px_per_mm: float
    polygons: Mapping[str, np.ndarray]
    regions: Mapping[str, RegionDifference]
    to_view: np.ndarray
    after_to_view: np.ndarray
    exposure_gains: tuple[float, float, float]
    refined: bool
    refinement: Mapping[str, float] = field(default_factory=dict)
    changed_de: float = 3.0

    def to_dict(self) -> dict:
        return {"alignment": self.alignment.to_dict(), "px_per_mm": round(self.px_per_mm, 3),
                "view_size": [int(self.before.shape[1]), int(self.before.shape[0])],
                "exposure_gains": [round(g, 4) for g in self.exposure_gains], "refined": self.refined,
                "refinement": {k: round(v, 4) for k, v in self.refinement.items()},
                "changed_de": self.changed_de,
                "regions": {k: r.to_dict() for k, r in self.regions.items()}}


def _check_rgb(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidInput(f"{name}: expected RGB uint8 (H, W, 3), got {img.dtype} {img.shape}", field=name)
    return img


def _scaled(points: Mapping[str, Point], k: float) -> dict[str, Point]:
    return {n: (float(p[0]) * k, float(p[1]) * k) for n, p in points.items()}


def compare_photos(
    before_rgb: np.ndarray,
    after_rgb: np.ndarray,
    before_landmarks: Mapping[str, Point],
    after_landmarks: Mapping[str, Point],
    *,
    regions: Mapping[str, Sequence[Point]] | None = None,
    before_scale: float = 1.0,
    after_scale: float = 1.0,
    view_px_per_mm: float = 4.0,
    refine: bool = True,
    match_exposure: bool = True,
    smooth_mm: float = 0.3,
    changed_de: float = 3.0,
    max_refine_mm: float = 10.0,
) -> Comparison:
    """Align ``after`` onto ``before`` and measure their colour difference per region.

    ``*_rgb``: sRGB uint8 (H, W, 3), possibly reduced decodes. ``*_landmarks`` and ``regions``
    (polygons of the before photo, e.g. the analysis document's ``regions.<r>.polygon``) are in
    full-resolution photo px; ``*_scale`` is array px per full-resolution px (1 / reduction).
    ``view_px_per_mm``: resolution of the common view (capped at the before photo's own).
    """
    before_rgb = _check_rgb(before_rgb, "before")
    after_rgb = _check_rgb(after_rgb, "after")
    bl = _scaled(before_landmarks, before_scale)
    al = _scaled(after_landmarks, after_scale)
    polys = {n: np.asarray(p, np.float64).reshape(-1, 2) * before_scale for n, p in (regions or {}).items()}
    alignment = align_landmarks(bl, al)
    native = _eye_ipd(bl) / IPD_MM
    ppm = float(min(view_px_per_mm, native))
    to_view, size = view_matrix(bl, polys or None, px_per_mm=ppm)
    if size[0] * size[1] > 25_000_000:
        raise InvalidInput("the comparison view would be too large: check the landmarks", field="landmarks")
    after_to_view = compose(to_view, alignment.matrix)
    before_v, valid_b = _warp(before_rgb, to_view, size)
    after_v, valid_a = _warp(after_rgb, after_to_view, size)
    view_polys = {n: apply_affine(to_view, p) for n, p in polys.items()}
    masks = _polygon_masks(view_polys, size)
    skin = np.zeros((size[1], size[0]), bool)
    for m in masks.values():
        skin |= m
    if not skin.any():
        skin = np.ones_like(valid_b)
    valid = valid_b & valid_a

    refined, info = False, {}
    face = _hull_mask(view_polys, size) if view_polys else np.ones_like(valid)
    if refine and (face & valid).sum() > 500:
        corr_before = _masked_corr(before_v, after_v, face & valid, ppm)
        corr_m = _refine_ecc(before_v, after_v, face & valid, ppm)
        info = {"corr_landmarks": corr_before}
        if corr_m is not None:
            shift, angle, scale, aniso = _similarity_like(corr_m)
            cand = compose(corr_m, after_to_view)
            after_c, valid_c = _warp(after_rgb, cand, size)
            corr_after = _masked_corr(before_v, after_c, face & valid_b & valid_c, ppm)
            info.update({"shift_mm": shift / ppm, "angle_deg": angle, "scale": scale, "anisotropy": aniso,
                         "corr_refined": corr_after})
            if (shift / ppm < max_refine_mm and angle < 5.0 and abs(scale - 1.0) < 0.1 and abs(aniso) < 0.05
                    and corr_after > corr_before):
                after_to_view, after_v, valid_a, refined = cand, after_c, valid_c, True
                valid = valid_b & valid_a

    lin_b = srgb_to_linear(before_v)
    lin_a = srgb_to_linear(after_v)
    gains = (1.0, 1.0, 1.0)
    ref = skin & valid
    if match_exposure and ref.sum() > 100:
        # Median of the per-pixel ratio (on 1 mm smoothed images): the unchanged majority of the
        # skin all give the exposure ratio itself, changed pixels (a faded spot) are outliers.
        # A ratio of medians would move with the changes it is meant to reveal.
        sb = cv2.GaussianBlur(lin_b, (0, 0), ppm)[ref]
        sa_ = cv2.GaussianBlur(lin_a, (0, 0), ppm)[ref]
        ok = (sa_ > 1e-3).all(axis=1) & (sb > 1e-3).all(axis=1)
        g = np.median(sb[ok] / sa_[ok], axis=0) if ok.sum() > 100 else np.ones(3, np.float32)
        g = np.clip(g, 0.5, 2.0)
        gains = tuple(float(v) for v in g)
        lin_a = np.clip(lin_a * g.astype(np.float32), 0.0, 1.0)
        after_v = linear_to_srgb8(lin_a)
    lab_b = linear_to_lab(lin_b)
    lab_a = linear_to_lab(lin_a)
    sigma = smooth_mm * ppm
    if sigma >= 0.3:
        lab_b = cv2.GaussianBlur(lab_b, (0, 0), sigma)
        lab_a = cv2.GaussianBlur(lab_a, (0, 0), sigma)
    de = np.zeros(valid.shape, np.float32)
    de[valid] = delta_e_2000(lab_a[valid], lab_b[valid]).astype(np.float32)
    dl = np.where(valid, lab_a[..., 0] - lab_b[..., 0], 0.0).astype(np.float32)

    diffs = {}
    for name, mask in masks.items():
        m = mask & valid
        n = int(m.sum())
        if n == 0:
            continue
        vals = de[m]
        diffs[name] = RegionDifference(name, n, float(vals.mean()), float(np.percentile(vals, 95)),
                                       float(dl[m].mean()), float(100.0 * (vals > changed_de).mean()))
    return Comparison(alignment=alignment, before=before_v, after=after_v, valid=valid, delta_e=de, delta_l=dl,
                      px_per_mm=ppm, polygons=view_polys, regions=diffs, to_view=to_view,
                      after_to_view=after_to_view, exposure_gains=gains, refined=refined, refinement=info,
                      changed_de=changed_de)


# --------------------------------------------------------------------------- rendering

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def heat_map(cmp: Comparison, *, max_de: float = 10.0, alpha: float = 0.75) -> np.ndarray:
    """RGB uint8: the delta E map (inferno, 0 to ``max_de``) over the greyed before view; pixels
    under 1 delta E (below what anyone sees) keep the grey photo."""
    grey = cv2.cvtColor(cmp.before, cv2.COLOR_RGB2GRAY)
    base = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) * 0.8
    t = np.clip(cmp.delta_e / max_de, 0.0, 1.0)
    colour = cv2.applyColorMap(np.round(t * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].astype(np.float32)
    a = (alpha * np.clip(cmp.delta_e - 1.0, 0.0, 1.0))[..., None] * cmp.valid[..., None]
    return np.round(base * (1 - a) + colour * a).astype(np.uint8)


def _outline(img: np.ndarray, polygons: Mapping[str, np.ndarray], colour=(255, 255, 255), t: int = 1,
             offset=(0.0, 0.0), k: float = 1.0) -> None:
    for poly in polygons.values():
        p = (np.asarray(poly) - np.asarray(offset)) * k
        cv2.polylines(img, [np.round(p * 4).astype(np.int32)], True, colour, t, cv2.LINE_AA, shift=2)


def _colour_bar(height: int, max_de: float, width: int = 60) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    top, bottom = 30, height - 20
    ramp = np.linspace(1.0, 0.0, max(2, bottom - top))
    col = cv2.applyColorMap(np.round(ramp * 255).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_INFERNO)[..., ::-1]
    bar[top:bottom, 6:22] = col.reshape(-1, 1, 3)
    for v in np.linspace(0.0, max_de, 5):
        y = int(round(bottom - (bottom - top) * v / max_de))
        cv2.putText(bar, f"{v:g}", (25, min(height - 4, y + 5)), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, "dE00", (4, 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def render_comparison(cmp: Comparison, *, region: str | None = None, labels: tuple[str, str] = ("before", "after"),
                      max_de: float = 10.0, panel_height: int = 560, outlines: bool = True) -> np.ndarray:
    """RGB uint8: before | after (aligned) | delta E heat map, with a colour bar; region outlines
    on the map. With ``region``, the three panels show that region only (with a margin)."""
    if region is not None and region not in cmp.polygons:
        raise InvalidInput(f"unknown region {region!r} (known: {', '.join(cmp.polygons)})", field="region")
    panels = [cmp.before, cmp.after, heat_map(cmp, max_de=max_de)]
    polys = dict(cmp.polygons) if region is None else {region: cmp.polygons[region]}
    h, w = cmp.before.shape[:2]
    x0, y0, x1, y1 = 0, 0, w, h
    if region is not None:
        p = cmp.polygons[region]
        margin = 5.0 * cmp.px_per_mm
        x0, y0 = (np.floor(p.min(axis=0) - margin)).astype(int).clip(0)
        x1, y1 = np.ceil(p.max(axis=0) + margin).astype(int)
        x1, y1 = min(int(x1), w), min(int(y1), h)
    k = panel_height / max(1, (y1 - y0))
    size = (max(1, int(round((x1 - x0) * k))), panel_height)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    out_panels = []
    title_h = 28
    titles = (labels[0], f"{labels[1]} (aligned)", f"colour difference (max {max_de:g} dE00)")
    t = max(1, int(round(panel_height / 400)))
    for i, (img, title) in enumerate(zip(panels, titles)):
        crop = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, interpolation=interp)
        if outlines and (i == 2 or region is not None):
            _outline(crop, polys, (255, 255, 255) if i == 2 else (255, 220, 0), t, offset=(x0, y0), k=k)
        head = np.full((title_h, size[0], 3), 255, np.uint8)
        cv2.putText(head, title, (6, 20), _FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        out_panels.append(np.vstack([head, crop]))
    gap = np.full((panel_height + title_h, 6, 3), 255, np.uint8)
    bar = _colour_bar(panel_height + title_h, max_de)
    row = [out_panels[0], gap, out_panels[1], gap, out_panels[2], gap, bar]
    return np.hstack(row)
