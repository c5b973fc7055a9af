"""Base skin texture: plausible colour, mottling and grain at a known physical scale."""
from __future__ import annotations

import cv2
import numpy as np
from skimage.color import lab2rgb


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (float32)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if sigma_px > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    std = float(noise.std())
    return noise / std if std > 0 else noise


def skin_lab(
    shape: tuple[int, int],
    px_per_mm: float,
    *,
    lab: tuple[float, float, float] = (62.0, 13.0, 17.0),
    mottling: float = 0.8,
    grain: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Skin as CIELAB (D65), float32 array (H, W, 3).

    ``lab`` is the mean colour (L* 0-100, a*, b*). ``mottling`` is the std of L* (and 0.6x of a*,
    b*) of blotches about 6 mm across; ``grain`` the std of L* of a 0.15 mm grain, the finest
    texture a camera sees. ``px_per_mm`` sets the physical scale of both.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    out = np.empty((h, w, 3), np.float32)
    blotch = _smooth_noise(rng, shape, 3.0 * px_per_mm)
    fine = _smooth_noise(rng, shape, 0.15 * px_per_mm)
    out[..., 0] = lab[0] + mottling * blotch + grain * fine
    out[..., 1] = lab[1] + 0.6 * mottling * _smooth_noise(rng, shape, 3.0 * px_per_mm)
    out[..., 2] = lab[2] + 0.6 * mottling * _smooth_noise(rng, shape, 3.0 * px_per_mm)
    return out


def lab_to_srgb8(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) float array (H, W, 3) -> sRGB uint8 (H, W, 3), clipped to the gamut."""
    rgb = lab2rgb(lab.astype(np.float64))
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def skin_patch(
    shape: tuple[int, int],
    px_per_mm: float,
    *,
    lab: tuple[float, float, float] = (62.0, 13.0, 17.0),
    mottling: float = 0.8,
    grain: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Skin as sRGB uint8 (H, W, 3); see :func:`skin_lab` for the parameters."""
    return lab_to_srgb8(skin_lab(shape, px_per_mm, lab=lab, mottling=mottling, grain=grain, seed=seed))
