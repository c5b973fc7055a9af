"""The skin mask with planted shading, stubble and background: shaded skin stays skin, textured
dark hair and the backdrop do not.

The frame: the sample render's canonical frame (its landmarks, hair and backdrop) with the face
oval repainted as synthetic skin of one known colour, with mottling and grain
(``pipelines.synthetic.skin``): real faces' seeds have that tight a chroma (a*/b* SD about 1.2).
It is then edited in code: the lower face darkened as a shadow does (linear RGB x 0.45), or
covered with dense dark hairs, and the mask of the edited frame is compared with the unedited
one's over the edited area.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.analysis import Analyzer
from pipelines.metrics.colour import linear_to_srgb8, srgb_to_linear
from pipelines.skin_mask import skin_mask
from pipelines.synthetic.skin import skin_patch

SAMPLE = Path(__file__).resolve().parents[1] / "sample_images" / "astronaut_render.jpg"


@pytest.fixture(scope="module")
def frame():
    render = Analyzer().analyze(SAMPLE.read_bytes()).frame
    spec = render.spec
    h, w = render.rgb.shape[:2]
    oval = np.zeros((h, w), np.uint8)
    centre = spec.mm_to_px(np.array([[0.0, 30.0]]))[0]
    cv2.ellipse(oval, (int(centre[0]), int(centre[1])), (int(62 * spec.px_per_mm), int(88 * spec.px_per_mm)),
                0, 0, 360, 1, -1)
    rgb = render.rgb.copy()
    skin = skin_patch((h, w), spec.px_per_mm, lab=(66.0, 12.0, 17.0), seed=5)
    rgb[oval > 0] = skin[oval > 0]
    return replace(render, rgb=rgb)


def _lower_face(frame) -> np.ndarray:
    """bool (H, W): the lower cheeks and the chin, 56-95 mm below the eyes, 70 mm wide."""
    spec = frame.spec
    (x0, y0), (x1, y1) = spec.mm_to_px(np.array([[-35.0, 56.0], [35.0, 95.0]])).astype(int)
    out = np.zeros(frame.rgb.shape[:2], bool)
    out[max(y0, 0):y1, max(x0, 0):x1] = True
    return out


def _share(mask: np.ndarray, where: np.ndarray) -> float:
    return float(np.count_nonzero(mask & where)) / float(np.count_nonzero(where))


def test_shadow_over_the_lower_face_stays_skin(frame):
    """A shadow below the cheeks' seed patches takes 55 % of the light off the lower face (a soft
    edge over 8 mm): it is still skin. A model of the seeds' raw chroma lost it (L* and, in
    proportion, a* and b* drop)."""
    base, _ = skin_mask(frame)
    lower = _lower_face(frame)
    spec = frame.spec
    y_edge = spec.mm_to_px(np.array([[0.0, 48.0]]))[0, 1]
    rows = np.arange(frame.rgb.shape[0], dtype=np.float32)
    ramp = np.clip((rows - y_edge) / (8.0 * spec.px_per_mm), 0.0, 1.0)
    gain = (1.0 - 0.55 * ramp)[:, None, None]
    shaded = replace(frame, rgb=linear_to_srgb8(srgb_to_linear(frame.rgb) * gain))
    mask, _ = skin_mask(shaded)
    before, after = _share(base, lower), _share(mask, lower)
    assert before > 0.6
    assert after >= 0.9 * before, f"lower face skin share {before:.2f} -> {after:.2f} in shadow"


def test_dark_stubble_is_not_skin(frame):
    """Dense dark hairs over the chin (0.5 mm dots at random, L* about 19, so many that the chin
    reads 27 L* darker than the skin, as the stubble on a development face reads 25 darker) are
    not bare skin, though their mix with the skin between them is skin-like in chroma once the
    darkening is rescaled away: the texture tells them apart."""
    spec = frame.spec
    (x0, y0), (x1, y1) = spec.mm_to_px(np.array([[-25.0, 75.0], [25.0, 95.0]])).astype(int)
    rgb = frame.rgb.copy()
    rng = np.random.default_rng(3)
    n = int(1.4 * (x1 - x0) * (y1 - y0) / (np.pi * (0.25 * spec.px_per_mm) ** 2))
    for cx, cy in zip(rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)):
        cv2.circle(rgb, (int(cx), int(cy)), max(1, int(0.25 * spec.px_per_mm)), (58, 44, 36), -1)
    stubbled = replace(frame, rgb=rgb)
    chin = np.zeros(rgb.shape[:2], bool)
    chin[y0:y1, x0:x1] = True
    base, _ = skin_mask(frame)
    mask, _ = skin_mask(stubbled)
    assert _share(base, chin) > 0.8
    assert _share(mask, chin) < 0.2, f"stubble read as skin: {_share(mask, chin):.2f}"


def test_grey_backdrop_is_not_skin(frame):
    """The frame's corners outside the face (the render's grey and dark backdrop) are never skin,
    shaded-chroma rescaling or not."""
    mask, _ = skin_mask(frame)
    h, w = mask.shape
    corners = np.zeros_like(mask)
    corners[int(0.85 * h):, : int(0.1 * w)] = True
    corners[int(0.85 * h):, int(0.9 * w):] = True
    assert _share(mask, corners) < 0.05


