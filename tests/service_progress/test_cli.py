"""The embedded single-clinic CLI end to end, on SQLite and PostgreSQL: patient add, visit add
(store, analyse, plan), visit list, progress (text, JSON, PNG and SVG charts), compare, visit
report."""
from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

import service.progress as service_progress
from service.cli import main
from service.storage.models import Clinic, Photo, Visit
from storage.images import plain_jpeg


@pytest.fixture
def cli(db, tmp_path, monkeypatch, synthetic_visits):
    """Run ``mesoscan`` against the test database; the analysis is the real pipeline, cached."""
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setattr(service_progress, "_default_analyze", synthetic_visits.analyze)
    return lambda *argv: main([str(a) for a in argv])


def test_cli_end_to_end(cli, db, tmp_path, synthetic_visits, capsys):
    photos = []
    for i, data in enumerate(synthetic_visits.falling[:3:2]):
        path = tmp_path / f"visit{i}.jpg"
        path.write_bytes(data)
        photos.append(path)
    intake = tmp_path / "intake.json"
    intake.write_text('{"pregnant": false, "breastfeeding": false, "allergies": ["zinc"]}')

    assert cli("patient", "add", "P-0007", "--name", "Jo Doe") == 0
    assert "patient P-0007 added" in capsys.readouterr().out
    assert cli("patient", "add", "P-0007") == 2
    assert "already exists" in capsys.readouterr().err

    assert cli("visit", "add", "P-0007", "--date", "2025-01-06", "--photo", photos[0], "--intake", intake,
               "--given-ingredients", "hyaluronic_acid", "vitamin_c", "--device", "LB212",
               "--notes", "first session") == 0
    out = capsys.readouterr().out
    assert "visit 2025-01-06 recorded for P-0007 (visit 1 of 1)" in out
    assert "plan: " in out
    assert cli("visit", "add", "P-0007", "--date", "2025-02-03", "--photo", photos[1], "--json") == 0
    added = json.loads(capsys.readouterr().out)
    assert added["date"] == "2025-02-03" and added["plan_status"] in ("eligible", "needs_review")

    # refusals: nothing stored
    assert cli("visit", "add", "P-0007", "--date", "2025-03-03", "--photo", photos[1],
               "--given-ingredients", "snake_oil") == 2
    assert "unknown ingredient" in capsys.readouterr().err
    assert cli("visit", "add", "P-0404", "--date", "2025-03-03", "--photo", photos[1]) == 2
    assert "no patient" in capsys.readouterr().err
    noface = tmp_path / "noface.jpg"
    noface.write_bytes(plain_jpeg(5, (480, 640)))
    assert cli("visit", "add", "P-0007", "--date", "2025-03-03", "--photo", noface) == 1
    assert "nothing was stored" in capsys.readouterr().err
    assert cli("visit", "add", "P-0007", "--date", "2025-01-06", "--photo", noface) == 2
    assert "already has a visit" in capsys.readouterr().err
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Visit)) == 2
        assert s.scalar(sa.select(sa.func.count()).select_from(Photo)) == 2
        assert s.scalars(sa.select(Clinic.name)).all() == ["default"]

    assert cli("visit", "list", "P-0007") == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and listing[0].startswith("2025-01-06") and "hyaluronic_acid, vitamin_c" in listing[0]

    # progress: text, JSON, charts
    assert cli("progress", "P-0007") == 0
    text = capsys.readouterr().out
    assert "patient P-0007: 2 visits" in text
    png, svg = tmp_path / "chart.png", tmp_path / "chart.svg"
    assert cli("progress", "P-0007", "--json", "--chart", png) == 0
    prog = json.loads(capsys.readouterr().out)
    assert prog["schema"] == "mesoscan.progress/1" and prog["patient"] == "P-0007"
    assert [v["date"] for v in prog["visits"]] == ["2025-01-06", "2025-02-03"]
    assert prog["visits"][0]["ingredients"] == ["hyaluronic_acid", "vitamin_c"]
    assert prog["noise"]["provisional"] is False          # the shipped noise is measured
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli("progress", "P-0007", "--chart", svg) == 0
    capsys.readouterr()
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert cli("progress", "P-0007", "--chart", tmp_path / "chart.gif") == 2
    capsys.readouterr()

    # before/after
    out_png = tmp_path / "cmp.png"
    assert cli("compare", "P-0007", "--before", "2025-01-06", "--after", "2025-02-03", "--out", out_png,
               "--each-region", "--json") == 0
    cmp = json.loads(capsys.readouterr().out)
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "cmp-cheek_left.png").exists() and len(cmp["written"]) == 1 + len(cmp["regions"])
    # the planted spots faded on the cheeks, nothing was planted on the chin
    assert cmp["regions"]["cheek_left"]["mean_delta_l"] > 0.2
    assert cmp["regions"]["cheek_left"]["p95_delta_e"] > cmp["regions"]["chin"]["p95_delta_e"]
    assert cmp["alignment"]["residual_mm"] < 2.0
    assert cli("compare", "P-0007", "--before", "2025-01-06", "--after", "2024-12-01", "--out", out_png) == 2
    assert "no visit on 2024-12-01" in capsys.readouterr().err

    # the visit report: one self-contained file
    report = tmp_path / "report.html"
    assert cli("visit", "report", "P-0007", "--visit", "2025-02-03", "--out", report) == 0
    capsys.readouterr()
    html = report.read_text()
    assert "P-0007" in html and "Jo Doe" in html and "2025-02-03" in html
    assert html.count("data:image/jpeg;base64,") >= 2          # photo, comparison (and overlays once scored)
    assert "data:image/svg+xml;base64," in html
    assert "Before / after" in html and "Plan suggested at this visit" in html
    assert "Excluded: Zinc" in html or "zinc" in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)    # nothing fetched from elsewhere
    assert cli("visit", "report", "P-0007", "--visit", "2025-05-05", "--out", report) == 2
