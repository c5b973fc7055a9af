"""Regenerate the redistributable sample photos in this folder (see README.md here).

    python sample_images/make_samples.py

``astronaut.png`` is scikit-image's copy of NASA's public-domain portrait of Eileen Collins.
``astronaut_render.jpg`` is a synthetic render from it at clinic-like resolution: upscaled 6x,
edges restored by unsharp masking and a physically scaled skin grain added, so that the photo
is sharp at its own resolution. It exercises the whole pipeline; its skin detail is synthetic.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data

HERE = Path(__file__).resolve().parent


def render(scale: int = 6, seed: int = 7) -> np.ndarray:
    """RGB uint8 render of the astronaut portrait at ``scale`` x its 512 px size."""
    src = skimage.data.astronaut()
    big = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    soft = cv2.GaussianBlur(big, (0, 0), scale * 0.8)
    sharp = big + 1.2 * (big - soft)
    rng = np.random.default_rng(seed)
    grain = cv2.GaussianBlur(rng.standard_normal(big.shape[:2]).astype(np.float32), (0, 0), 0.8)
    grain *= 6.0 / grain.std()
    out = sharp + grain[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main() -> None:
    cv2.imwrite(str(HERE / "astronaut.png"), skimage.data.astronaut()[..., ::-1])
    cv2.imwrite(str(HERE / "astronaut_render.jpg"), render()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])


if __name__ == "__main__":
    main()
