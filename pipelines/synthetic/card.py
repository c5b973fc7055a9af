"""A ColorChecker Classic (24 patches) drawn in code, to place into photos with a known cast."""
from __future__ import annotations

import cv2
import numpy as np

from pipelines.colour_card import reference_linear
from pipelines.metrics.colour import linear_to_srgb8


def draw_card(patch_px: int, *, gains=(1.0, 1.0, 1.0), order=None) -> np.ndarray:
    """(H, W, 3) uint8 sRGB image of the card: 4 x 6 patches of ``patch_px`` on a near-black
    frame, each patch the published colour times the linear ``gains`` (a colour cast and
    exposure, as a camera would record it). ``order``: the patches' colours in another order (a
    permutation of 0-23), a grid that looks like a card and is not one."""
    gap = max(2, patch_px // 5)
    published = reference_linear()
    if order is not None:
        published = published[np.asarray(order)]
    linear = published.reshape(4, 6, 3) * np.asarray(gains, np.float32)
    colours = linear_to_srgb8(linear)
    h, w = 4 * patch_px + 5 * gap, 6 * patch_px + 7 * gap
    card = np.full((h, w, 3), linear_to_srgb8(np.full(3, 0.006 * float(np.mean(gains)), np.float32)), np.uint8)
    for row in range(4):
        for col in range(6):
            y, x = gap + row * (patch_px + gap), gap + col * (patch_px + gap)
            card[y:y + patch_px, x:x + patch_px] = colours[row, col]
    return card


def place_card(photo: np.ndarray, card: np.ndarray, *, corner=(0.62, 0.6), angle_deg: float = 0.0) -> np.ndarray:
    """``photo`` with ``card`` pasted at the relative (x, y) ``corner``, the whole picture then
    turned by ``angle_deg`` about its centre (edges reflected)."""
    out = photo.copy()
    h, w = out.shape[:2]
    y0, x0 = int(corner[1] * h), int(corner[0] * w)
    ch, cw = min(card.shape[0], h - y0), min(card.shape[1], w - x0)
    out[y0:y0 + ch, x0:x0 + cw] = card[:ch, :cw]
    if angle_deg:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out
