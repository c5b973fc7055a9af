"""Synthetic pores: small dark round blobs planted into CIELAB skin, with their ground truth.

A pore is a Gaussian darkening of L* with standard deviation ``s = diameter_mm / (2 * sqrt 2)``:
its diameter is the circle on which the profile's Laplacian changes sign (radius sqrt(2) s),
which is the size a scale-normalised LoG detector reports. The half-depth (FWHM) diameter is
0.83 x that. ``depth`` is the L* darkening at the centre (delta L*, > 0 darker). Positions are in
mm on the image (x right, y down, origin at the top-left corner). Deterministic by seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pore:
    x_mm: float
    y_mm: float
    diameter_mm: float
    depth: float


@dataclass(frozen=True)
class PoresTruth:
    """What was planted: ``count`` pores over ``area_cm2`` (the mask's area) so
    ``density_per_cm2`` = count / area; ``mean_diameter_mm`` over the pores."""

    pores: tuple[Pore, ...]
    count: int
    area_cm2: float
    density_per_cm2: float
    mean_diameter_mm: float


def random_pores(
    mask: np.ndarray,
    px_per_mm: float,
    density_per_cm2: float,
    *,
    diameter_mm: float | tuple[float, float] = (0.25, 0.4),
    depth: float | tuple[float, float] = (4.0, 8.0),
    min_gap_mm: float = 0.8,
    seed: int = 0,
    max_tries_per_pore: int = 200,
) -> list[Pore]:
    """round(density x area) pores with centres inside ``mask`` (bool, H x W), centres at least
    ``min_gap_mm`` apart. Each of ``diameter_mm`` / ``depth`` is a value or a (low, high) range
    drawn uniformly. Raises ValueError when they do not fit."""
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(mask)
    area = len(xs) / (px_per_mm**2) / 100.0
    n = int(round(density_per_cm2 * area))
    if n == 0:
        return []
    if len(xs) == 0:
        raise ValueError("empty mask")
    cell = min_gap_mm
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    out: list[Pore] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > max_tries_per_pore * n:
            raise ValueError(f"could place only {len(out)} of {n} pores (min_gap_mm too large?)")
        i = int(rng.integers(len(xs)))
        x = (xs[i] + rng.uniform()) / px_per_mm
        y = (ys[i] + rng.uniform()) / px_per_mm
        gx, gy = int(x // cell), int(y // cell)
        close = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for qx, qy in grid.get((gx + dx, gy + dy), ()):
                    if (qx - x) ** 2 + (qy - y) ** 2 < min_gap_mm**2:
                        close = True
                        break
                if close:
                    break
            if close:
                break
        if close:
            continue
        grid.setdefault((gx, gy), []).append((x, y))
        d = float(rng.uniform(*diameter_mm)) if isinstance(diameter_mm, (tuple, list)) else float(diameter_mm)
        z = float(rng.uniform(*depth)) if isinstance(depth, (tuple, list)) else float(depth)
        out.append(Pore(float(x), float(y), d, z))
    return out


def plant_pores(
    lab: np.ndarray, px_per_mm: float, pores: list[Pore] | tuple[Pore, ...], *, mask: np.ndarray | None = None
) -> tuple[np.ndarray, PoresTruth]:
    """Darken L* of a CIELAB image (float, H x W x 3) at ``pores``; returns (new lab, truth).

    ``mask`` (bool) is the area the density refers to (default: the whole image). Overlapping
    pores do not add up: the deeper darkening wins.
    """
    out = np.array(lab, dtype=np.float32, copy=True)
    h, w = out.shape[:2]
    dark = np.zeros((h, w), np.float32)
    for p in pores:
        s = p.diameter_mm / (2.0 * math.sqrt(2.0)) * px_per_mm
        cx, cy = p.x_mm * px_per_mm - 0.5, p.y_mm * px_per_mm - 0.5  # pixel-index coordinates
        r = int(math.ceil(4.0 * s)) + 1
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / s) ** 2)
        gy = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / s) ** 2)
        prof = (p.depth * gy[:, None] * gx[None, :]).astype(np.float32)
        np.maximum(dark[y0:y1, x0:x1], prof, out=dark[y0:y1, x0:x1])
    out[..., 0] -= dark
    n_px = int(np.count_nonzero(mask)) if mask is not None else h * w
    area = n_px / (px_per_mm**2) / 100.0
    pores = tuple(pores)
    truth = PoresTruth(
        pores=pores,
        count=len(pores),
        area_cm2=area,
        density_per_cm2=len(pores) / area if area > 0 else 0.0,
        mean_diameter_mm=float(np.mean([p.diameter_mm for p in pores])) if pores else 0.0,
    )
    return out, truth
