"""Progress, charts, before/after and the visit report over the API, and clinic B never
reaching clinic A's patients or visits through them.

One real analysis of the sample photo for the whole module (both backends). Clinic A's patient
PROG-1 gets three visits: the sample photo (2025-01-06), a copy with a darkened patch on the left
cheek (2025-03-03, the first document with lower pigmentation scores: the geometry is the same
photo's) and a visit without a photo (2025-04-01, a gap). PROG-2 has one analysed visit and a
second visit on the same day; PROG-0 has no visit. The comparison is computed once per backend
(the blueprint keeps the last few in memory)."""
from __future__ import annotations

import copy
import datetime as dt
import io

import numpy as np
import pytest
from PIL import Image

from svc_helpers import assert_problem, same_as_missing

MISSING = 987654
D1, D2, D3 = dt.date(2025, 1, 6), dt.date(2025, 3, 3), dt.date(2025, 4, 1)
_MEMO: dict = {}   # across backends: the analysed document and the photo variants


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(analyzer, sample_bytes):
    """(document of the sample, the sample, a copy with a darker left cheek, another re-encoding)."""
    if "photos" not in _MEMO:
        from service.progress import json_safe

        doc = json_safe(analyzer.analyze(sample_bytes).document)
        rgb = np.asarray(Image.open(io.BytesIO(sample_bytes)).convert("RGB"))
        poly = np.asarray(doc["regions"]["cheek_left"]["polygon"], np.float64)
        cx, cy = poly.mean(axis=0)
        r = 0.25 * float(np.ptp(poly[:, 0]))
        yy, xx = np.mgrid[:rgb.shape[0], :rgb.shape[1]]
        spot = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        darker = rgb.copy()
        darker[spot] = (darker[spot] * 0.8).astype(np.uint8)
        _MEMO["photos"] = (doc, sample_bytes, _jpeg(darker, 92), _jpeg(rgb, 80))
    return _MEMO["photos"]


def _later_document(doc: dict) -> dict:
    """The same face scored lower in pigmentation (beyond the noise, whole face and left cheek)."""
    later = copy.deepcopy(doc)
    later["scores"]["pigmentation"] = round(doc["scores"]["pigmentation"] - 20.0, 1)
    cheek = later["regions"]["cheek_left"]["scores"]
    cheek["pigmentation"] = max(0.0, round(cheek["pigmentation"] - 25.0, 1))
    return later


@pytest.fixture(scope="module")
def timeline(world, photos):
    if "timeline" in world.shared:
        return world.shared["timeline"]
    from service.api.progress import comparisons
    from service.progress import record_visit
    from service.storage.blobstore import sha256_hex

    comparisons.clear()
    doc, first, darker, other = photos
    a = world.a()
    p1 = a.post("/api/v1/patients", json={"code": "PROG-1", "name": "Astronaut"}).get_json()
    p2 = a.post("/api/v1/patients", json={"code": "PROG-2"}).get_json()
    p0 = a.post("/api/v1/patients", json={"code": "PROG-0"}).get_json()
    st = world.app.extensions["mesoscan"]

    def analyze_as(document):
        def analyze(data: bytes) -> dict:
            out = copy.deepcopy(document)
            out["image"]["sha256"] = sha256_hex(data)
            return out
        return analyze

    with st.storage.session() as s:
        r1 = record_visit(s, st.storage.blobs, world.clinic_a, p1["id"], D1, first, analyze=analyze_as(doc),
                          ingredients=["hyaluronic_acid"], device="LB212")
        r2 = record_visit(s, st.storage.blobs, world.clinic_a, p1["id"], D2, darker,
                          analyze=analyze_as(_later_document(doc)))
        q1 = record_visit(s, st.storage.blobs, world.clinic_a, p2["id"], D1, other, analyze=analyze_as(doc))
        ids = {"v1": r1.visit.id, "v2": r2.visit.id, "q1": q1.visit.id}
    ids["v3"] = a.post(f"/api/v1/patients/{p1['id']}/visits", json={"date": D3.isoformat()}).get_json()["id"]
    ids["q_same_day"] = a.post(f"/api/v1/patients/{p2['id']}/visits", json={"date": D1.isoformat()}).get_json()["id"]
    b = world.b()
    pb = b.post("/api/v1/patients", json={"code": "B-1"}).get_json()
    ids["b_visit"] = b.post(f"/api/v1/patients/{pb['id']}/visits", json={"date": D1.isoformat()}).get_json()["id"]
    world.shared["timeline"] = t = {"p1": p1["id"], "p2": p2["id"], "p0": p0["id"], **ids}
    return t


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_cached_privately(resp) -> None:
    assert resp.headers["ETag"].startswith('W/"')
    assert "private" in resp.headers["Cache-Control"]


# --- progress ------------------------------------------------------------------------------


def test_progress_document(world, timeline):
    a = world.a()
    r = a.get(f"/api/v1/patients/{timeline['p1']}/progress")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert_cached_privately(r)
    doc = r.get_json()
    assert doc["schema"] == "mesoscan.progress/1"
    assert doc["patient"] == "PROG-1" and doc["patient_id"] == timeline["p1"]
    assert [v["visit_id"] for v in doc["visits"]] == [timeline["v1"], timeline["v2"], timeline["v3"]]
    assert [v["date"] for v in doc["visits"]] == ["2025-01-06", "2025-03-03", "2025-04-01"]
    assert doc["visits"][2]["analysis_id"] is None and doc["visits"][2]["photo_id"] is None   # a gap
    assert doc["visits"][0]["ingredients"] == ["hyaluronic_acid"] and doc["visits"][0]["device"] == "LB212"
    assert doc["concerns_from"] == "plan"
    pig = doc["series"]["scores.pigmentation"]
    assert pig["values"][2] is None and pig["values"][1] == pytest.approx(pig["values"][0] - 20.0, abs=0.05)
    assert pig["since_baseline"]["verdict"] == "improved" and pig["since_baseline"]["real"] is True
    assert "from_baseline" not in pig and "from_previous" not in pig      # points=False by default
    assert any(s["verdict"] == "improved" and s["family"] == "pigmentation" for s in doc["summaries"])
    assert doc["links"]["chart_png"] == f"/api/v1/patients/{timeline['p1']}/progress/chart.png"
    assert doc["links"]["compare_json"] == f"/api/v1/patients/{timeline['p1']}/compare.json"

    again = a.get(f"/api/v1/patients/{timeline['p1']}/progress", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and not again.get_data()
    assert again.headers["ETag"] == r.headers["ETag"]

    full = a.get(f"/api/v1/patients/{timeline['p1']}/progress?points=1")
    assert full.status_code == 200 and full.headers["ETag"] != r.headers["ETag"]
    fpig = full.get_json()["series"]["scores.pigmentation"]
    assert len(fpig["from_baseline"]) == 3 and fpig["from_baseline"][0] is None
    assert fpig["from_baseline"][1]["verdict"] == "improved"


def test_progress_of_a_patient_without_visits(world, timeline):
    r = world.a().get(f"/api/v1/patients/{timeline['p0']}/progress")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["visits"] == [] and doc["summaries"] == [] and doc["pipeline_version"] is None


def test_progress_refuses_bad_query_and_unknown_patient(world, timeline):
    a = world.a()
    body = assert_problem(a.get(f"/api/v1/patients/{timeline['p1']}/progress?points=maybe"), 422, "invalid_input")
    assert body["field"] == "points"
    assert_problem(a.get(f"/api/v1/patients/{timeline['p1']}/progress?colour=red"), 422, "invalid_input")
    assert_problem(a.get(f"/api/v1/patients/{MISSING}/progress"), 404, "not_found")


def test_progress_needs_authentication_and_viewers_may_read(world, timeline):
    assert_problem(world.client().get(f"/api/v1/patients/{timeline['p1']}/progress"), 401)
    c, _ = world.login(world.email_viewer, "viewer password 1")
    assert c.get(f"/api/v1/patients/{timeline['p1']}/progress").status_code == 200


def test_progress_chart_png_and_svg(world, timeline):
    a = world.a()
    url = f"/api/v1/patients/{timeline['p1']}/progress/chart"
    png = a.get(url + ".png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    w, h = png_size(png.data)
    assert w > 600 and h > 400
    assert_cached_privately(png)
    assert a.get(url + ".png", headers={"If-None-Match": png.headers["ETag"]}).status_code == 304

    svg = a.get(url + ".svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert b"<svg" in svg.data[:2000] and b"<script" not in svg.data
    assert "default-src 'none'" in svg.headers["Content-Security-Policy"]
    assert_cached_privately(svg)
    assert svg.headers["ETag"] != png.headers["ETag"]
    # an empty timeline still draws (the chart says there is nothing yet)
    empty = a.get(f"/api/v1/patients/{timeline['p0']}/progress/chart.svg")
    assert empty.status_code == 200 and b"<svg" in empty.data[:2000]
    assert_problem(a.get(f"/api/v1/patients/{MISSING}/progress/chart.png"), 404, "not_found")
    assert_problem(a.get(url + ".png?family=texture"), 422, "invalid_input")   # one chart for all families


# --- before/after --------------------------------------------------------------------------


def test_compare_png_defaults_to_first_and_last_analysed_visit(world, timeline):
    a = world.a()
    url = f"/api/v1/patients/{timeline['p1']}/compare"
    r = a.get(url)
    assert r.status_code == 200 and r.mimetype == "image/png", r.get_data(as_text=True)[:500]
    assert r.headers["X-Before-Visit"] == str(timeline["v1"]) and r.headers["X-After-Visit"] == str(timeline["v2"])
    w, h = png_size(r.data)
    assert w > 2 * h        # before | after | heat map (+ colour bar)
    assert_cached_privately(r)
    # the same pair named by ids or by dates: the same image, so the same ETag (and a 304)
    by_id = a.get(f"{url}?before={timeline['v1']}&after={timeline['v2']}")
    by_date = a.get(f"{url}?before=2025-01-06&after=2025-03-03", headers={"If-None-Match": r.headers["ETag"]})
    assert by_id.headers["ETag"] == r.headers["ETag"] and by_date.status_code == 304


def test_compare_panels_and_region(world, timeline):
    a = world.a()
    url = f"/api/v1/patients/{timeline['p1']}/compare"
    sizes = {}
    for panel in ("before", "after", "difference"):
        r = a.get(f"{url}?panel={panel}")
        assert r.status_code == 200 and r.mimetype == "image/png"
        sizes[panel] = png_size(r.data)
    assert sizes["before"] == sizes["after"] == sizes["difference"]     # one pixel grid: a slider can stack them
    crop = a.get(f"{url}?panel=after&region=cheek_left")
    cw, ch = png_size(crop.data)
    assert cw < sizes["after"][0] and ch < sizes["after"][1]
    whole = a.get(f"{url}?region=cheek_left&max_de=5")
    assert whole.status_code == 200 and png_size(whole.data)[0] > 2 * png_size(whole.data)[1]


def test_compare_json_per_region_differences(world, timeline):
    a = world.a()
    r = a.get(f"/api/v1/patients/{timeline['p1']}/compare.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert_cached_privately(r)
    body = r.get_json()
    assert body["patient_id"] == timeline["p1"]
    assert body["before"]["visit_id"] == timeline["v1"] and body["before"]["date"] == "2025-01-06"
    assert body["after"]["visit_id"] == timeline["v2"] and body["after"]["analysis_id"]
    assert {"scale", "rotation_deg", "residual_mm"} <= set(body["alignment"])
    assert body["alignment"]["residual_mm"] < 0.5          # the same face geometry
    regions = body["regions"]
    assert {"forehead", "cheek_left", "chin"} <= set(regions)
    cheek, forehead = regions["cheek_left"], regions["forehead"]
    for key in ("mean_delta_e", "p95_delta_e", "mean_delta_l", "changed_pct", "pixels"):
        assert key in cheek
    # the darkened patch
    assert cheek["mean_delta_l"] < -0.5 and cheek["mean_delta_e"] > forehead["mean_delta_e"] + 0.5
    assert body["links"]["panel_after"].startswith(f"/api/v1/patients/{timeline['p1']}/compare?")
    assert a.get(f"/api/v1/patients/{timeline['p1']}/compare.json",
                 headers={"If-None-Match": r.headers["ETag"]}).status_code == 304

    one = a.get(f"/api/v1/patients/{timeline['p1']}/compare.json?region=cheek_left&before=2025-01-06").get_json()
    assert list(one["regions"]) == ["cheek_left"] and one["regions"]["cheek_left"] == cheek


def test_compare_refusals(world, timeline):
    a = world.a()
    p1 = timeline["p1"]
    for ext in ("", ".json"):
        url = f"/api/v1/patients/{p1}/compare{ext}"
        assert assert_problem(a.get(f"{url}?before={MISSING}"), 404, "not_found")["field"] == "before"
        assert assert_problem(a.get(f"{url}?after=2024-12-31"), 404, "not_found")["field"] == "after"
        # a visit of another patient of the clinic is not this patient's
        assert_problem(a.get(f"{url}?before={timeline['q1']}"), 404, "not_found")
        assert assert_problem(a.get(f"{url}?before=2025-02-30"), 422, "invalid_input")["field"] == "before"
        assert assert_problem(a.get(f"{url}?after=last-week"), 422, "invalid_input")["field"] == "after"
        assert_problem(a.get(f"{url}?before={timeline['v1']}&after=2025-01-06"), 422, "invalid_input")
        assert assert_problem(a.get(f"{url}?after={timeline['v3']}"), 409, "no_analysis")["field"] == "after"
        assert assert_problem(a.get(f"{url}?region=nose"), 422, "invalid_input")["field"] == "region"
        assert_problem(a.get(f"/api/v1/patients/{timeline['p2']}/compare{ext}"), 409, "not_enough_visits")
        assert_problem(a.get(f"/api/v1/patients/{timeline['p0']}/compare{ext}"), 409, "not_enough_visits")
        assert_problem(a.get(f"/api/v1/patients/{MISSING}/compare{ext}"), 404, "not_found")
    assert_problem(a.get(f"/api/v1/patients/{p1}/compare?panel=side"), 422, "invalid_input")
    assert_problem(a.get(f"/api/v1/patients/{p1}/compare?max_de=0"), 422, "invalid_input")


# --- the visit report ----------------------------------------------------------------------


def test_visit_report(world, timeline):
    a = world.a()
    # the before/after inside the report (2-3 s) is drawn on one backend: it does not touch the database
    compare = world.backend == "sqlite"
    r = a.get(f"/api/v1/visits/{timeline['v2']}/report.html" + ("" if compare else "?compare=0"))
    assert r.status_code == 200 and r.mimetype == "text/html", r.get_data(as_text=True)[:500]
    html = r.get_data(as_text=True)
    assert html.startswith("<!DOCTYPE html>") and "PROG-1" in html and "2025-03-03" in html
    assert "data:image/jpeg;base64," in html and "data:image/svg+xml;base64," in html
    assert ("Before / after: baseline 2025-01-06 and this visit" in html) is compare
    assert "<script" not in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"].startswith("private")
    assert r.headers["Content-Disposition"] == 'inline; filename="mesoscan-PROG-1-2025-03-03.html"'

    gap = a.get(f"/api/v1/visits/{timeline['v3']}/report.html?compare=0&download=1")
    assert gap.status_code == 200 and "2025-04-01" in gap.get_data(as_text=True)
    assert gap.headers["Content-Disposition"].startswith("attachment;")


def test_visit_report_refusals(world, timeline):
    a = world.a()
    assert_problem(a.get(f"/api/v1/visits/{MISSING}/report.html"), 404, "not_found")
    body = assert_problem(a.get(f"/api/v1/visits/{timeline['q_same_day']}/report.html"), 409, "ambiguous_visit_date")
    assert body["visit_id"] == timeline["q1"]
    assert_problem(a.get(f"/api/v1/visits/{timeline['v1']}/report.html?compare=perhaps"), 422, "invalid_input")


# --- tenancy -------------------------------------------------------------------------------


def test_clinic_b_gets_404_like_a_missing_id_everywhere(world, timeline):
    b, a = world.b(), world.a()
    p1, v2 = timeline["p1"], timeline["v2"]
    for tail in ("progress", "progress?points=1", "progress/chart.png", "progress/chart.svg",
                 "compare", "compare?panel=after", "compare.json", f"compare.json?before={timeline['v1']}"):
        same_as_missing(b.get(f"/api/v1/patients/{p1}/{tail}"), b.get(f"/api/v1/patients/{MISSING}/{tail}"))
    same_as_missing(b.get(f"/api/v1/visits/{v2}/report.html"), b.get(f"/api/v1/visits/{MISSING}/report.html"))
    # clinic B's visit id named in clinic A's comparison looks missing too
    for ext in ("", ".json"):
        url = f"/api/v1/patients/{p1}/compare{ext}"
        same_as_missing(a.get(f"{url}?before={timeline['b_visit']}"), a.get(f"{url}?before={MISSING}"))


def test_openapi_lists_the_endpoints(world):
    paths = world.client().get("/api/v1/openapi.json").get_json()["paths"]
    for p in ("/api/v1/patients/{patient_id}/progress", "/api/v1/patients/{patient_id}/progress/chart.png",
              "/api/v1/patients/{patient_id}/progress/chart.svg", "/api/v1/patients/{patient_id}/compare",
              "/api/v1/patients/{patient_id}/compare.json", "/api/v1/visits/{visit_id}/report.html"):
        assert "get" in paths[p], p
    params = {q["name"] for q in paths["/api/v1/patients/{patient_id}/compare"]["get"]["parameters"]}
    assert {"before", "after", "region", "panel"} <= params
