"""Colour cards in the photo (pipelines/colour_card.py): found, read, checked, and used."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.analysis import Analyzer
from pipelines.colour_card import CardSearch, _detector, find_colour_card
from pipelines.decode import decode_image
from pipelines.metrics.colour import linear_to_srgb8, normalize_colour, srgb_to_linear
from pipelines.synthetic.card import draw_card, place_card

RENDER = "sample_images/astronaut_render.jpg"
CASTS = {"warm and dim": (1.15 * 0.75, 0.75, 0.8 * 0.75), "cool": (0.85, 1.0, 1.2)}


@pytest.fixture(scope="module")
def render_small() -> np.ndarray:
    return decode_image(open(RENDER, "rb").read(), reduction=4).rgb    # 768 x 768


def cast(rgb: np.ndarray, gains) -> np.ndarray:
    """The whole picture as a camera with this white balance and exposure would record it."""
    return linear_to_srgb8(srgb_to_linear(rgb) * np.asarray(gains, np.float32))


@pytest.mark.parametrize("name", CASTS)
def test_the_card_gives_back_the_cast(render_small, name):
    gains = CASTS[name]
    w = render_small.shape[1]
    scene = cast(place_card(render_small, draw_card(int(0.3 * w / 7.2)), corner=(0.6, 0.62), angle_deg=4), gains)
    card = find_colour_card(scene)
    assert card is not None
    np.testing.assert_allclose(card.gains, 1.0 / np.asarray(gains), rtol=0.015)
    assert card.median_de < 1.5
    assert card.patches_fitted >= 4
    centre = card.corners.mean(axis=0)       # the card's middle, in the searched image's px
    assert 0.6 * w < centre[0] < w and 0.62 * w < centre[1] < w


def test_face_photos_without_a_card_have_none(render_small):
    assert find_colour_card(render_small) is None
    assert find_colour_card(decode_image(open("sample_images/astronaut.png", "rb").read()).rgb) is None


def test_a_grid_of_the_wrong_colours_is_not_trusted(render_small):
    w = render_small.shape[1]
    order = np.random.default_rng(2).permutation(24)
    scene = place_card(render_small, draw_card(int(0.3 * w / 7.2), order=order), corner=(0.6, 0.62))
    det = _detector()
    assert det.process(np.ascontiguousarray(scene[..., ::-1]), 1)   # the detector takes it for a card
    assert find_colour_card(scene) is None                          # its colours say otherwise
    assert find_colour_card(scene, CardSearch(max_median_de=1e9)) is not None


def test_card_gains_set_white_balance_and_exposure():
    rng = np.random.default_rng(0)
    grey = np.full((200, 200, 3), 0.18, np.float32) * rng.uniform(0.98, 1.02, (200, 200, 1)).astype(np.float32)
    gains = np.array([1.2, 1.0, 0.8], np.float32) * 0.7
    photo = linear_to_srgb8(grey * gains)
    skin = np.zeros((200, 200), bool)
    skin[40:160, 40:160] = True
    linear, corr = normalize_colour(photo, skin, card_gains=1.0 / gains, correct_gradient=False)
    assert corr.reference == "colour_card"
    np.testing.assert_allclose(linear[skin].mean(axis=0), grey[skin].mean(axis=0), rtol=0.02)
    assert corr.exposure_gain == pytest.approx(float((1.0 / gains) @ np.array([0.2126, 0.7152, 0.0722])), rel=1e-4)
    # gains beyond the bounds are bounded and named, as for the other references
    _, corr = normalize_colour(photo, skin, card_gains=np.array([3.0, 1.0, 1.0]), correct_gradient=False)
    assert corr.clipped and "gain_r" in corr.clipped_bounds


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_an_analysis_takes_white_balance_from_the_card():
    base = decode_image(open(RENDER, "rb").read()).rgb
    w = base.shape[1]
    gains = CASTS["cool"]
    photo = cast(place_card(base, draw_card(int(0.3 * w / 7.2)), corner=(0.66, 0.7)), gains)
    doc = Analyzer().analyze(jpeg(photo)).document
    cc = doc["colour_correction"]
    assert cc["reference"] == "colour_card"
    np.testing.assert_allclose(cc["card"]["gains"], 1.0 / np.asarray(gains), rtol=0.02)
    corners = np.asarray(cc["card"]["corners_px"])                  # full-resolution px
    assert corners.shape == (4, 2) and corners[:, 0].min() > 0.6 * w and corners[:, 1].min() > 0.6 * w
    plain = Analyzer().analyze(jpeg(base)).document["colour_correction"]
    assert plain["reference"] != "colour_card" and "card" not in plain
