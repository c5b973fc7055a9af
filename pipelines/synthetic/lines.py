"""Synthetic wrinkles: dark lines with a smooth Gaussian cross-profile, planted into CIELAB skin.

Geometry is in millimetres on the image (x to the right, y down, origin at the top-left corner of
the top-left pixel). Angles follow the on-screen convention used by the wrinkle orientation
priors: degrees counter-clockwise from the image's +x axis as displayed (0 = horizontal,
90 = vertical). A line's ``width_mm`` is the full width at half depth (FWHM) of its Gaussian
cross-profile; ``depth`` is the L* darkening on its centreline (delta L*, > 0 darker). The
centreline is ``length_mm`` long (a straight segment or a circular arc), and the profile is that
of the distance to the centreline, so ends are rounded. Everything is deterministic by seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548


@dataclass(frozen=True)
class Line:
    """One planted line. ``curvature_per_mm`` is 1/radius; positive bends counter-clockwise
    (as displayed) when walking along ``angle_deg``."""

    x_mm: float
    y_mm: float
    length_mm: float
    width_mm: float
    depth: float
    angle_deg: float
    curvature_per_mm: float = 0.0


@dataclass(frozen=True)
class LinesTruth:
    """What was planted: ``count`` lines of ``total_length_mm`` centreline length; ``mask`` (bool,
    H x W) marks the pixels within half a width (FWHM/2) of a centreline."""

    lines: tuple[Line, ...]
    count: int
    total_length_mm: float
    mean_depth: float
    mask: np.ndarray


def centreline_mm(line: Line, step_mm: float = 0.1) -> np.ndarray:
    """Points (N, 2) as (x_mm, y_mm) along the centreline, ``step_mm`` apart, ends included."""
    n = max(2, int(math.ceil(line.length_mm / step_mm)) + 1)
    t = np.linspace(-line.length_mm / 2.0, line.length_mm / 2.0, n)
    th0 = math.radians(line.angle_deg)
    k = line.curvature_per_mm
    if abs(k) < 1e-9:
        xu = t * math.cos(th0)
        yu = t * math.sin(th0)
    else:  # in y-up coordinates: p(t) = p0 + (sin(th0 + k t) - sin th0, cos th0 - cos(th0 + k t)) / k
        xu = (np.sin(th0 + k * t) - math.sin(th0)) / k
        yu = (math.cos(th0) - np.cos(th0 + k * t)) / k
    return np.stack([line.x_mm + xu, line.y_mm - yu], axis=1)


def _distance_mm(line: Line, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Distance (mm) from points (xs, ys in image mm, y down) to the line's centreline."""
    # Work in y-up coordinates relative to the line's centre.
    px = xs - line.x_mm
    py = -(ys - line.y_mm)
    th0 = math.radians(line.angle_deg)
    half = line.length_mm / 2.0
    k = line.curvature_per_mm
    if abs(k) < 1e-9:
        ux, uy = math.cos(th0), math.sin(th0)
        t = np.clip(px * ux + py * uy, -half, half)
        return np.hypot(px - t * ux, py - t * uy)
    # Circle of radius 1/|k| centred at c = (-sin th0, cos th0) / k.
    cx, cy = -math.sin(th0) / k, math.cos(th0) / k
    vx, vy = px - cx, py - cy
    rad = 1.0 / abs(k)
    alpha = np.arctan2(vy, vx)
    base = th0 - math.pi / 2.0 if k > 0 else th0 + math.pi / 2.0
    dalpha = np.mod(alpha - base + math.pi, 2.0 * math.pi) - math.pi
    t = dalpha / k
    on_arc = np.abs(t) <= half
    d_arc = np.abs(np.hypot(vx, vy) - rad)
    ends = []
    for s in (-half, half):
        ex = (math.sin(th0 + k * s) - math.sin(th0)) / k
        ey = (math.cos(th0) - math.cos(th0 + k * s)) / k
        ends.append(np.hypot(px - ex, py - ey))
    return np.where(on_arc, d_arc, np.minimum(ends[0], ends[1]))


def line_profile(line: Line, shape: tuple[int, int], px_per_mm: float) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Darkening (delta L*, float32) of one line over its bounding box (y0, y1, x0, x1) in an
    image of ``shape``; None when the line falls outside the image."""
    s_mm = line.width_mm / _FWHM_PER_SIGMA
    pts = centreline_mm(line, step_mm=max(0.05, line.length_mm / 200.0))
    reach = 4.0 * s_mm + 1.0 / px_per_mm
    h, w = shape
    x0 = max(0, int(math.floor((pts[:, 0].min() - reach) * px_per_mm)))
    x1 = min(w, int(math.ceil((pts[:, 0].max() + reach) * px_per_mm)) + 1)
    y0 = max(0, int(math.floor((pts[:, 1].min() - reach) * px_per_mm)))
    y1 = min(h, int(math.ceil((pts[:, 1].max() + reach) * px_per_mm)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = (np.arange(x0, x1, dtype=np.float64) + 0.5) / px_per_mm
    ys = (np.arange(y0, y1, dtype=np.float64) + 0.5) / px_per_mm
    d = _distance_mm(line, xs[None, :], ys[:, None])
    prof = line.depth * np.exp(-0.5 * (d / s_mm) ** 2)
    return prof.astype(np.float32), (y0, y1, x0, x1)


def plant_lines(lab: np.ndarray, px_per_mm: float, lines: list[Line] | tuple[Line, ...]) -> tuple[np.ndarray, LinesTruth]:
    """Darken L* of a CIELAB image (float, H x W x 3) along ``lines``; returns (new lab, truth).

    Where lines overlap the deeper darkening wins (no double counting).
    """
    out = np.array(lab, dtype=np.float32, copy=True)
    h, w = out.shape[:2]
    dark = np.zeros((h, w), np.float32)
    truth_mask = np.zeros((h, w), bool)
    for ln in lines:
        res = line_profile(ln, (h, w), px_per_mm)
        if res is None:
            continue
        prof, (y0, y1, x0, x1) = res
        np.maximum(dark[y0:y1, x0:x1], prof, out=dark[y0:y1, x0:x1])
        truth_mask[y0:y1, x0:x1] |= prof >= 0.5 * ln.depth
    out[..., 0] -= dark
    lines = tuple(lines)
    truth = LinesTruth(
        lines=lines,
        count=len(lines),
        total_length_mm=float(sum(ln.length_mm for ln in lines)),
        mean_depth=float(np.mean([ln.depth for ln in lines])) if lines else 0.0,
        mask=truth_mask,
    )
    return out, truth


def _draw(occ: np.ndarray, line: Line, px_per_mm: float, thickness_mm: float) -> None:
    pts = np.round(centreline_mm(line, 0.25) * px_per_mm * 4).astype(np.int32)  # 2 fractional bits
    cv2.polylines(occ, [pts.reshape(-1, 1, 2)], False, 1, max(1, int(round(thickness_mm * px_per_mm))), cv2.LINE_8, 2)


def _uniform(rng: np.random.Generator, v: float | tuple[float, float]) -> float:
    if isinstance(v, (tuple, list)):
        return float(rng.uniform(v[0], v[1]))
    return float(v)


def random_lines(
    mask: np.ndarray,
    px_per_mm: float,
    n: int,
    *,
    length_mm: float | tuple[float, float] = (15.0, 30.0),
    width_mm: float | tuple[float, float] = (0.5, 1.0),
    depth: float | tuple[float, float] = (5.0, 8.0),
    angle_deg: float | tuple[float, float] = (0.0, 180.0),
    curvature_per_mm: float | tuple[float, float] = 0.0,
    radial_from_mm: tuple[float, float] | None = None,
    min_gap_mm: float = 3.0,
    margin_mm: float = 2.0,
    seed: int = 0,
    max_tries: int = 5000,
) -> list[Line]:
    """``n`` random lines lying inside ``mask`` (bool, H x W) at least ``margin_mm`` from its edge
    and ``min_gap_mm`` apart (no crossings, so each is one countable segment). Each parameter is
    a fixed value or a (low, high) range drawn uniformly. With ``radial_from_mm`` (x, y) a line
    runs away from that point (crow's feet from the outer eye corner) and ``angle_deg`` is its
    deviation from that direction. Raises ValueError if they do not fit.
    """
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    m8 = np.ascontiguousarray(mask).astype(np.uint8)
    r = max(1, int(round(margin_mm * px_per_mm)))
    inner = cv2.erode(m8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    ys, xs = np.nonzero(inner)
    if len(xs) == 0:
        raise ValueError("mask too small for lines")
    occ = np.zeros((h, w), np.uint8)
    out: list[Line] = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        i = int(rng.integers(len(xs)))
        ln = Line(
            x_mm=float((xs[i] + rng.uniform()) / px_per_mm),
            y_mm=float((ys[i] + rng.uniform()) / px_per_mm),
            length_mm=_uniform(rng, length_mm),
            width_mm=_uniform(rng, width_mm),
            depth=_uniform(rng, depth),
            angle_deg=_uniform(rng, angle_deg),
            curvature_per_mm=_uniform(rng, curvature_per_mm),
        )
        if radial_from_mm is not None:
            ln = replace(ln, angle_deg=ln.angle_deg + math.degrees(
                math.atan2(radial_from_mm[1] - ln.y_mm, ln.x_mm - radial_from_mm[0])))
        pts = np.floor(centreline_mm(ln, 0.25) * px_per_mm).astype(int)
        if (pts[:, 0] < 0).any() or (pts[:, 0] >= w).any() or (pts[:, 1] < 0).any() or (pts[:, 1] >= h).any():
            continue
        if not inner[pts[:, 1], pts[:, 0]].all():
            continue
        cand = np.zeros((h, w), np.uint8)
        _draw(cand, ln, px_per_mm, ln.width_mm + min_gap_mm)
        if (cand & occ).any():
            continue
        _draw(occ, ln, px_per_mm, ln.width_mm + min_gap_mm)
        out.append(ln)
    if len(out) < n:
        raise ValueError(f"could place only {len(out)} of {n} lines in the mask")
    return out
