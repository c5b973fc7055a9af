"""Uploads, analyses, overlays and plans, and clinic B never reaching clinic A's photos,
analyses, overlays or plans. One real analysis of the sample photo per backend (shared by
the module), one rejected photo, one re-render from the stored photo."""
from __future__ import annotations

import copy
import io

import pytest
from PIL import Image

from svc_helpers import assert_problem, same_as_missing, upload

MISSING = 987654


def sample_value(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def analysed(world, sample_bytes):
    """Clinic A's patient with a visit, the sample photo uploaded at that visit (201)."""
    if "analysed" not in world.shared:
        a = world.a()
        p = a.post("/api/v1/patients", json={"code": "FACE-1", "name": "Astronaut"}).get_json()
        v = a.post(f"/api/v1/patients/{p['id']}/visits", json={"date": "2025-04-01"}).get_json()
        before = sample_value("mesoscan_analyses_total", outcome="created")
        r = upload(a, sample_bytes, visit=v["id"])
        assert r.status_code == 201, r.get_data(as_text=True)[:800]
        world.shared["analysed"] = {"patient": p, "visit": v, "response": r, "doc": r.get_json(),
                                    "created_delta": sample_value("mesoscan_analyses_total", outcome="created") - before}
    return world.shared["analysed"]


def small_jpeg(seed: int = 0, size: int = 64) -> bytes:
    import numpy as np

    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=85)
    return buf.getvalue()


class FakeAnalyzer:
    """Returns a copy of a real document for any photo (for paths whose cost is not the point)."""

    def __init__(self, document: dict):
        self.document = document

    def analyze(self, data: bytes):
        from service.storage.blobstore import sha256_hex

        doc = copy.deepcopy(self.document)
        doc.pop("record", None)
        doc["image"]["sha256"] = sha256_hex(data)

        class _A:
            document = doc

        return _A()


# --- upload and read -----------------------------------------------------------------------


def test_upload_returns_the_document_with_location(world, analysed):
    r, doc = analysed["response"], analysed["doc"]
    assert doc["schema"] == "mesoscan.analysis/1" and doc["pipeline_version"]
    assert doc["quality"]["status"] in ("ok", "warn")
    assert set(doc["regions"]) >= {"forehead", "cheek_left", "chin"}
    assert "metrics" in doc and "scores" in doc
    rec = doc["record"]
    assert rec["patient_id"] == analysed["patient"]["id"] and rec["visit_id"] == analysed["visit"]["id"]
    assert r.headers["Location"] == f"/api/v1/analyses/{rec['id']}" == rec["links"]["self"]
    assert rec["links"]["overlays"]["regions"] == f"/api/v1/analyses/{rec['id']}/overlays/regions.png"
    assert analysed["created_delta"] == 1
    got = world.a().get(r.headers["Location"])
    assert got.status_code == 200 and got.get_json() == doc
    assert got.headers["ETag"].startswith('W/"')
    assert world.a().get(r.headers["Location"], headers={"If-None-Match": got.headers["ETag"]}).status_code == 304


def test_photo_is_stored_stripped_and_listed(world, analysed, sample_bytes):
    from service.storage import repository as repo

    st = world.app.extensions["mesoscan"]
    rec = analysed["doc"]["record"]
    with st.storage.session() as s:
        photo = repo.get_photo(s, world.clinic_a, rec["photo_id"])
        assert photo.patient_id == rec["patient_id"] and photo.visit_id == rec["visit_id"]
        assert photo.sha256 == analysed["doc"]["image"]["sha256"]      # the analysed bytes are the stored ones
        assert repo.read_photo(s, st.storage.blobs, world.clinic_a, photo.id)[:3] == b"\xff\xd8\xff"
    items = world.a().get(f"/api/v1/patients/{rec['patient_id']}/analyses").get_json()["items"]
    assert [i["id"] for i in items] == [rec["id"]]
    assert items[0]["quality_status"] == analysed["doc"]["quality"]["status"]
    assert set(items[0]["scores"]) == {"pigmentation", "texture", "wrinkles", "overall"}


def test_same_photo_again_returns_the_stored_analysis(world, analysed, sample_bytes):
    a = world.a()
    before = sample_value("mesoscan_analyses_total", outcome="reused")
    r = upload(a, sample_bytes)
    assert r.status_code == 200 and "Location" not in r.headers
    assert r.get_json()["record"]["id"] == analysed["doc"]["record"]["id"]
    r = upload(a, sample_bytes, patient=analysed["patient"]["code"])
    assert r.status_code == 200
    assert sample_value("mesoscan_analyses_total", outcome="reused") - before == 2
    other = a.post("/api/v1/patients", json={"code": "OTHER-1"}).get_json()
    body = assert_problem(upload(a, sample_bytes, patient=other["id"]), 409, "photo_of_other_patient")
    assert body["field"] == "patient"
    text = world.client().get("/metrics").get_data(as_text=True)
    assert 'mesoscan_analyses_total{outcome="reused"}' in text


def test_analyses_run_without_holding_a_database_connection(world, analysed, monkeypatch):
    """An upload or overlay re-render waits seconds for an analysis slot: its pooled database
    connection goes back first, so reads are not left waiting for the pool."""
    from service.overlays import recent

    st = world.app.extensions["mesoscan"]
    held = []

    class Recording:
        def __init__(self, analyzer):
            self.analyzer = analyzer

        def analyze(self, data: bytes):
            held.append(st.storage.engine.pool.checkedout())
            return self.analyzer.analyze(data)

    a, real = world.a(), st.get_analyzer()
    monkeypatch.setattr(st, "analyzer", Recording(FakeAnalyzer(analysed["doc"])))
    assert upload(a, small_jpeg(11)).status_code == 201
    monkeypatch.setattr(st, "analyzer", Recording(real))     # the real one: overlays render
    recent._items.clear()
    overlay = analysed["doc"]["record"]["links"]["overlays"]["regions"] + "?size=320"
    assert a.get(overlay).headers["X-Overlay-Cache"] == "miss"
    assert held == [0, 0]


def test_upload_without_patient_creates_one(world, analysed, monkeypatch):
    st = world.app.extensions["mesoscan"]
    monkeypatch.setattr(st, "analyzer", FakeAnalyzer(analysed["doc"]))
    a = world.a()
    r = upload(a, small_jpeg(1), filename="x.jpg")
    assert r.status_code == 201
    pid = r.get_json()["record"]["patient_id"]
    patient = a.get(f"/api/v1/patients/{pid}").get_json()
    assert patient["code"].startswith("anon-")
    # by patient id, and by code
    r = upload(a, small_jpeg(2), patient=str(pid))
    assert r.status_code == 201 and r.get_json()["record"]["patient_id"] == pid
    r = upload(a, small_jpeg(3), patient=patient["code"])
    assert r.status_code == 201 and r.get_json()["record"]["patient_id"] == pid
    # a visit of another patient
    v = a.post(f"/api/v1/patients/{pid}/visits", json={"date": "2025-01-01"}).get_json()
    assert_problem(upload(a, small_jpeg(4), patient=analysed["patient"]["id"], visit=v["id"]), 409,
                   "visit_of_other_patient")


def test_non_images_are_415_whatever_the_content_type(world):
    a = world.a()
    before = sample_value("mesoscan_image_rejections_total", code="not_an_image")
    body = assert_problem(upload(a, b"%PDF-1.4 not a photo at all" * 10, "photo.jpg", "image/jpeg"), 415, "not_an_image")
    assert body["retake"] is False
    assert sample_value("mesoscan_image_rejections_total", code="not_an_image") - before == 1
    gif = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 150, 120)).save(gif, "GIF")
    assert_problem(upload(a, gif.getvalue(), "photo.jpg", "image/jpeg"), 415, "unsupported_format")
    assert_problem(upload(a, b"", "empty.jpg"), 422, "empty_file")
    assert_problem(upload(a, b"\xff\xd8\xff\xe0" + b"\x00" * 100, "broken.jpg"), 422)


def test_upload_input_errors(world):
    a = world.a()
    body = assert_problem(a.post("/api/v1/analyses", data={"patient": "X"}, content_type="multipart/form-data"),
                          422, "invalid_input")
    assert body["field"] == "image"
    assert_problem(upload(a, small_jpeg(), patient="NO-SUCH-PATIENT"), 404, "not_found")
    assert_problem(upload(a, small_jpeg(), visit=MISSING), 404, "not_found")
    body = assert_problem(upload(a, small_jpeg(), visit="abc"), 422, "invalid_input")
    assert body["field"] == "visit"


def test_rejected_photo_is_422_with_quality_report_and_nothing_stored(world, sample_bytes):
    from service.storage import repository as repo

    img = Image.open(io.BytesIO(sample_bytes)).resize((1000, 1000))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    a = world.a()
    p = a.post("/api/v1/patients", json={"code": "REJ-1"}).get_json()
    before = sample_value("mesoscan_image_rejections_total", code="face_too_small")
    r = upload(a, buf.getvalue(), patient=p["code"])
    body = assert_problem(r, 422, "face_too_small")
    assert body["retake"] is True and body["title"] == "Photo rejected"
    assert body["quality"]["status"] == "reject"
    assert any(i["code"] == "face_too_small" for i in body["quality"]["issues"])
    assert sample_value("mesoscan_image_rejections_total", code="face_too_small") - before == 1
    with world.app.extensions["mesoscan"].storage.session() as s:
        assert repo.list_photos(s, world.clinic_a, patient_id=p["id"]) == []
    assert 'mesoscan_image_rejections_total{code="face_too_small"}' in world.client().get("/metrics").get_data(as_text=True)


# --- overlays ------------------------------------------------------------------------------


def test_overlays(world, analysed):
    from service.overlays import recent

    a = world.a()
    url = analysed["doc"]["record"]["links"]["overlays"]["regions"]
    if world.backend == "sqlite":
        recent._items.clear()          # force one re-analysis of the stored photo
    r = a.get(url + "?size=512")
    assert r.status_code == 200 and r.mimetype == "image/png"
    png = Image.open(io.BytesIO(r.data))
    assert max(png.size) == 512
    assert r.headers["X-Overlay-Cache"] == "miss"
    etag = r.headers["ETag"]
    r2 = a.get(url + "?size=512")
    assert r2.headers["X-Overlay-Cache"] == "hit" and r2.data == r.data
    assert a.get(url + "?size=512", headers={"If-None-Match": etag}).status_code == 304
    r3 = a.get(url + "?size=512&region=forehead")
    assert r3.status_code == 200 and r3.headers["ETag"] != etag and r3.data != r.data
    body = assert_problem(a.get(url + "?region=elbow"), 422, "invalid_input")
    assert body["field"] == "region"
    base = url.rsplit("/", 1)[0]
    assert_problem(a.get(base + "/sparkles.png"), 404, "unknown_layer")
    r = a.get(base + "/spots.png?size=256")      # heat layers appear once the metrics fill them
    if r.status_code != 200:
        assert_problem(r, 404, "layer_unavailable")


# --- plans ---------------------------------------------------------------------------------


def test_plan_from_latest_analysis_and_intake(world, analysed):
    a = world.a()
    pid = analysed["patient"]["id"]
    assert_problem(a.get(f"/api/v1/patients/{pid}/plan"), 404, "no_plan")
    assert_problem(a.post(f"/api/v1/patients/{pid}/plan", json={}), 409, "no_intake")
    a.put(f"/api/v1/patients/{pid}/intake", json={"pregnant": False, "breastfeeding": False, "cancer": False,
                                                  "insulin_diabetes": False, "coagulation_disorder": False,
                                                  "paralysis_history": False, "cardiac_disease": False,
                                                  "urticaria": False, "allergies": [], "medications": []})
    r = a.post(f"/api/v1/patients/{pid}/plan", json={"start": "2025-05-05", "template": "standard"})
    assert r.status_code == 201, r.get_data(as_text=True)
    plan = r.get_json()
    assert plan["analysis_id"] == analysed["doc"]["record"]["id"] and plan["patient_id"] == pid
    assert plan["document"]["schema"] == "mesoscan.plan/1" and plan["document"]["calendar"][0] == "2025-05-05"
    assert r.headers["Location"] == f"/api/v1/plans/{plan['id']}"
    assert a.get(r.headers["Location"]).get_json() == plan
    assert a.get(f"/api/v1/patients/{pid}/plan").get_json() == plan
    body = assert_problem(a.post(f"/api/v1/patients/{pid}/plan", json={"template": "weekly"}), 422, "invalid_input")
    assert body["field"] == "template"
    body = assert_problem(a.post(f"/api/v1/patients/{pid}/plan", json={"start": "soon"}), 422, "invalid_input")
    assert body["field"] == "start"
    assert_problem(a.post(f"/api/v1/patients/{pid}/plan", json={"analysis_id": MISSING}), 404, "not_found")
    lonely = a.post("/api/v1/patients", json={"code": "NOPHOTO-1"}).get_json()
    assert_problem(a.post(f"/api/v1/patients/{lonely['id']}/plan", json={}), 409, "no_analysis")


# --- tenancy -------------------------------------------------------------------------------


def test_clinic_b_cannot_reach_clinic_a_photos_analyses_overlays_plans(world, analysed, sample_bytes):
    a, b = world.a(), world.b()
    rec = analysed["doc"]["record"]
    pid, aid = rec["patient_id"], rec["id"]
    if a.get(f"/api/v1/patients/{pid}/plan").status_code == 404:
        a.put(f"/api/v1/patients/{pid}/intake", json={"pregnant": False})
        assert a.post(f"/api/v1/patients/{pid}/plan", json={}).status_code == 201
    plan_id = a.get(f"/api/v1/patients/{pid}/plan").get_json()["id"]

    pairs = [
        (b.get(f"/api/v1/analyses/{aid}"), b.get(f"/api/v1/analyses/{MISSING}")),
        (b.get(f"/api/v1/analyses/{aid}/overlays/regions.png"), b.get(f"/api/v1/analyses/{MISSING}/overlays/regions.png")),
        (b.get(f"/api/v1/patients/{pid}/analyses"), b.get(f"/api/v1/patients/{MISSING}/analyses")),
        (b.get(f"/api/v1/patients/{pid}/plan"), b.get(f"/api/v1/patients/{MISSING}/plan")),
        (b.post(f"/api/v1/patients/{pid}/plan", json={}), b.post(f"/api/v1/patients/{MISSING}/plan", json={})),
        (b.get(f"/api/v1/plans/{plan_id}"), b.get(f"/api/v1/plans/{MISSING}")),
        # uploads into A's patient or visit, by id or by code
        (upload(b, small_jpeg(9), patient=str(pid)), upload(b, small_jpeg(9), patient=str(MISSING))),
        (upload(b, small_jpeg(9), patient=analysed["patient"]["code"]), upload(b, small_jpeg(9), patient="NOPE-0")),
        (upload(b, small_jpeg(9), visit=rec["visit_id"]), upload(b, small_jpeg(9), visit=MISSING)),
    ]
    for other, missing in pairs:
        same_as_missing(other, missing)
    # B's own plan may not be built on A's analysis
    bp = b.post("/api/v1/patients", json={"code": "B-ONLY-1"}).get_json()
    b.put(f"/api/v1/patients/{bp['id']}/intake", json={"pregnant": False})
    same_as_missing(b.post(f"/api/v1/patients/{bp['id']}/plan", json={"analysis_id": aid}),
                    b.post(f"/api/v1/patients/{bp['id']}/plan", json={"analysis_id": MISSING}))
    # B uploading the same photo gets its own photo and analysis, never A's
    st = world.app.extensions["mesoscan"]
    from service.storage import repository as repo

    with st.storage.session() as s:
        assert repo.find_photo_by_source(s, world.clinic_b, repo.sha256_hex(sample_bytes)) is None
    # erasing in B never touches A
    same_as_missing(b.delete(f"/api/v1/patients/{pid}"), b.delete(f"/api/v1/patients/{MISSING}"))
    assert a.get(f"/api/v1/analyses/{aid}").status_code == 200


def test_erasure_removes_photos_analyses_and_cached_overlays(world, analysed, monkeypatch):
    st = world.app.extensions["mesoscan"]
    monkeypatch.setattr(st, "analyzer", FakeAnalyzer(analysed["doc"]))
    a = world.a()
    r = upload(a, small_jpeg(21))
    rec = r.get_json()["record"]
    from service.storage import repository as repo

    with st.storage.session() as s:
        sha = repo.get_photo(s, world.clinic_a, rec["photo_id"]).sha256
    st.overlay_cache.put(sha, "0.0.0", "regions_512", None, b"png bytes")
    assert st.overlay_cache.get(sha, "0.0.0", "regions_512", None) == b"png bytes"
    report = a.delete(f"/api/v1/patients/{rec['patient_id']}").get_json()
    assert report["photos"] == 1 and report["analyses"] == 1 and report["blobs_deleted"] == 1
    assert st.overlay_cache.get(sha, "0.0.0", "regions_512", None) is None
    assert_problem(a.get(f"/api/v1/analyses/{rec['id']}"), 404, "not_found")
    assert not st.storage.blobs.exists(sha)
