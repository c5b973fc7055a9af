"""Capture wobble applied to sRGB uint8 (H, W, 3) test images: exposure, JPEG, blur."""
from __future__ import annotations

import cv2
import numpy as np


def exposure(rgb: np.ndarray, f: float) -> np.ndarray:
    """Exposure x ``f`` in (gamma 2.2) linear light, back to uint8."""
    lin = (rgb / 255.0) ** 2.2 * f
    return np.clip(np.rint(lin ** (1 / 2.2) * 255), 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, q: int = 75) -> np.ndarray:
    """A JPEG round trip at quality ``q``."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def blur(rgb: np.ndarray, s: float = 0.5) -> np.ndarray:
    """Gaussian blur of sigma ``s`` px."""
    return cv2.GaussianBlur(rgb, (0, 0), s)
