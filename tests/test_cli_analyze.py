"""`mesoscan analyze`: JSON, JSON Lines in order, overlays, and one stderr line per rejection."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from service.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory, render_bytes):
    d = tmp_path_factory.mktemp("photos")
    good = d / "face.jpg"
    good.write_bytes(render_bytes)
    text = d / "notes.jpg"
    text.write_text("not an image\n" * 10)
    return good, text


def test_single_photo_json(photos, capsys):
    good, _ = photos
    assert main(["analyze", str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "mesoscan.analysis/1"
    assert doc["face"]["landmarks"]["left_eye"][0] > doc["face"]["landmarks"]["right_eye"][0]


def test_several_photos_json_lines_in_order_with_errors(photos, capsys):
    good, text = photos
    status = main(["analyze", str(text), str(good), "--json"])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.strip().split("\n")]
    assert status == 1                                 # one was rejected
    assert [line["path"] for line in lines] == [str(text), str(good)]
    assert lines[0]["error"]["code"] == "not_an_image"
    assert lines[1]["schema"] == "mesoscan.analysis/1"
    assert err.strip().count("\n") == 0 and "not_an_image" in err


def test_rejected_photo_exits_nonzero_with_code_on_stderr(photos, capsys):
    _, text = photos
    assert main(["analyze", str(text)]) == 1
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 1 and "not_an_image" in err[0]


def test_missing_file_is_reported_not_raised(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope.jpg")]) == 1
    assert "unreadable_file" in capsys.readouterr().err


def test_overlay_draws_on_the_photo(photos, tmp_path, render_bytes):
    good, _ = photos
    out = tmp_path / "overlay.png"
    assert main(["analyze", str(good), "--overlay", str(out)]) == 0
    overlay = np.asarray(Image.open(out).convert("RGB")).astype(int)
    photo = np.asarray(Image.open(good).convert("RGB").resize(overlay.shape[1::-1])).astype(int)
    changed = (np.abs(overlay - photo).sum(axis=2) > 60).mean()
    assert 0.001 < changed < 0.2     # outlines and landmarks drawn, the photo still shows


def test_the_summary_says_what_set_the_colours():
    from service.commands.analyze import _summary

    doc = {"quality": {"status": "ok", "issues": []},
           "face": {"confidence": 0.99, "px_per_mm": 8.0, "roll_deg": 1.0, "yaw_deg": -2.0},
           "colour_correction": {"reference": "colour_card", "gains": [1.1, 1.0, 0.9], "exposure_gain": 1.25,
                                 "card": {"median_de": 0.34}},
           "scores": {"pigmentation": 20.0}, "regions": {}}
    assert "colour: reference colour_card (card median dE 0.3), gains 1.10 1.00 0.90, exposure 1.25" in _summary(doc)
    doc["colour_correction"] = {"reference": "sclera", "gains": [0.92, 1.02, 1.1], "exposure_gain": 0.99}
    assert "colour: reference sclera, gains 0.92 1.02 1.10, exposure 0.99" in _summary(doc)
