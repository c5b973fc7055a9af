"""Progress read from storage, on SQLite and PostgreSQL: the one-query series, version choice,
gaps, tenancy, recording visits; and the synthetic-photo acceptance tests (falling severity ->
real change; capture wobble -> no real change)."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from pipelines.calibration import parse_repeatability
from pipelines.errors import ImageRejected
from pipelines.planning.samples import CLEAR_METRICS, example_analysis
from pipelines.progress import IMPROVED
from service.progress import (load_visit_scores, patient_progress, progress_query, record_visit)
from service.storage import repository as repo
from service.storage.models import Analysis, Intake, Photo, Plan, Visit
from storage.images import plain_jpeg

from .conftest import FALLING

D = [dt.date(2025, 1, 6) + dt.timedelta(days=14 * i) for i in range(8)]
# Fixed noise for the hand-made documents (the shipped file is provisional and will change).
NOISE = parse_repeatability({"version": 1, "pipeline_version": "test", "provisional": False, "method": "test",
                             "scores": {f: {"sd": 3.0} for f in ("pigmentation", "texture", "wrinkles", "overall")},
                             "region_scores": {f: {"sd": 4.0} for f in ("pigmentation", "texture", "wrinkles")}})


def doc(version: str = "0.1.0", *, face: dict | None = None, regions: dict | None = None,
        hidden: tuple[str, ...] = ()) -> dict:
    """A hand-made analysis document with polygons like a real one."""
    d = example_analysis(face=face, regions=regions)
    d["pipeline_version"] = version
    for i, (name, reg) in enumerate(d["regions"].items()):
        reg["polygon"] = [[100.0 + i + k, 200.0 + k] for k in range(12)]
        reg["measurable"] = name not in hidden
    return d


def add_visit(s, blobs, clinic_id, patient_id, day, *docs, seed=None):
    visit = repo.add_visit(s, clinic_id, patient_id, day)
    ids = []
    if docs:
        photo, _ = repo.add_photo(s, blobs, clinic_id, patient_id, plain_jpeg(seed if seed is not None else visit.id),
                                  visit_id=visit.id)
        for d in docs:
            ids.append(repo.add_analysis(s, clinic_id, photo.id, d["pipeline_version"], d).id)
    return visit, ids


@pytest.fixture
def clinic_patient(session):
    clinic = repo.create_clinic(session, "Clinic A")
    patient = repo.create_patient(session, clinic.id, "P-0001")
    return clinic.id, patient.id


# --------------------------------------------------------------------------- the series query


def test_series_come_from_score_columns_and_region_scores(db, session, clinic_patient):
    c, p = clinic_patient
    add_visit(session, db.blobs, c, p, D[0], doc(face={"scores.wrinkles": 50.0},
                                                  regions={"forehead": {"scores.wrinkles": 44.0}}))
    add_visit(session, db.blobs, c, p, D[1], doc(face={"scores.wrinkles": 41.0},
                                                  regions={"forehead": {"scores.wrinkles": 39.0}},
                                                  hidden=("chin",)))
    add_visit(session, db.blobs, c, p, D[2])                       # a session without a photo: a gap
    add_visit(session, db.blobs, c, p, D[3], doc(face={"scores.wrinkles": 35.0},
                                                  regions={"forehead": {"scores.wrinkles": 25.0}}))
    pp = patient_progress(session, c, p, noise=NOISE)
    prog = pp.progress
    assert [v.date for v in prog.visits] == [D[0], D[1], D[2], D[3]]
    assert prog.get("wrinkles").values == (50.0, 41.0, None, 35.0)
    assert prog.get("wrinkles", "forehead").values == (44.0, 39.0, None, 25.0)
    assert prog.get("texture", "chin").values == (10.0, None, None, 10.0)    # hidden at visit 2
    assert prog.get("overall").values == (10.0, 10.0, None, 10.0)
    fw = prog.get("wrinkles", "forehead")
    assert fw.since_baseline.delta == pytest.approx(-19.0) and fw.since_baseline.verdict == IMPROVED
    assert pp.visits[2].analysis_id is None and pp.visits[2].photo_id is None
    assert pp.pipeline_version == "0.1.0"


def test_the_series_is_one_query(db, session, clinic_patient):
    c, p = clinic_patient
    for i in range(6):
        add_visit(session, db.blobs, c, p, D[i], doc(), doc("0.2.0"))
    statements = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = load_visit_scores(session, c, p, with_metrics=True)
    assert len(statements) == 1
    assert len(rows) == 12 and {r.pipeline_version for r in rows} == {"0.1.0", "0.2.0"}
    assert rows[0].metrics["texture"]["roughness"] == CLEAR_METRICS["texture"]["roughness"]
    assert set(rows[0].region_scores["forehead"]) == {"pigmentation", "texture", "wrinkles"}
    statements.clear()
    patient_progress(session, c, p)
    assert len(statements) == 3          # the patient check, the series, the baseline plan


def test_only_region_scores_leave_the_database(db):
    """The query extracts ``regions.*.scores`` inside the database: no polygon or metric in it."""
    sql = str(progress_query(db.engine.dialect.name))
    assert "'$.scores'" in sql or "-> 'scores'" in sql
    assert "a.document AS" not in sql and "polygon" not in sql


def test_pipeline_version_covering_most_visits_is_used(db, session, clinic_patient):
    c, p = clinic_patient
    v1, _ = add_visit(session, db.blobs, c, p, D[0], doc("0.1.0", face={"scores.texture": 30.0}))
    add_visit(session, db.blobs, c, p, D[1], doc("0.1.0", face={"scores.texture": 31.0}),
              doc("0.2.0", face={"scores.texture": 61.0}))
    add_visit(session, db.blobs, c, p, D[2], doc("0.1.0", face={"scores.texture": 29.0}),
              doc("0.2.0", face={"scores.texture": 59.0}))
    pp = patient_progress(session, c, p)
    assert pp.pipeline_version == "0.1.0"
    assert pp.progress.get("texture").values == (30.0, 31.0, 29.0)
    assert not any("different pipeline versions" in n for n in pp.progress.notes)
    only_new = patient_progress(session, c, p, pipeline_version="0.2.0")
    assert only_new.progress.get("texture").values == (None, 61.0, 59.0)      # visit 1 is a gap
    # re-scoring the first photo too: a tie, and the version used most recently wins
    photo = session.scalar(sa.select(Photo).where(Photo.visit_id == v1.id))
    repo.add_analysis(session, c, photo.id, "0.2.0", doc("0.2.0", face={"scores.texture": 60.0}))
    assert patient_progress(session, c, p).progress.get("texture").values == (60.0, 61.0, 59.0)


def test_other_patients_and_clinics_stay_out(db, session, clinic_patient):
    c, p = clinic_patient
    other = repo.create_patient(session, c, "P-0002")
    clinic_b = repo.create_clinic(session, "Clinic B")
    patient_b = repo.create_patient(session, clinic_b.id, "P-0001")
    add_visit(session, db.blobs, c, p, D[0], doc(face={"scores.wrinkles": 20.0}), seed=1)
    add_visit(session, db.blobs, c, other.id, D[0], doc(face={"scores.wrinkles": 80.0}), seed=2)
    add_visit(session, db.blobs, clinic_b.id, patient_b.id, D[1], doc(face={"scores.wrinkles": 90.0}), seed=3)
    assert patient_progress(session, c, p).progress.get("wrinkles").values == (20.0,)
    assert load_visit_scores(session, c, patient_b.id) == []
    with pytest.raises(repo.NotFound):
        patient_progress(session, c, patient_b.id)


def test_summaries_follow_the_baseline_plans_concerns(db, session, clinic_patient):
    c, p = clinic_patient
    spotty = {"cheek_left": {"scores.pigmentation": 60.0, "metrics.pigmentation.spot_count": 12,
                             "metrics.pigmentation.spot_area_pct": 8.0}}
    docs = [doc(regions=spotty), doc(regions={"cheek_left": {"scores.pigmentation": 30.0}})]
    for i, d in enumerate(docs):
        rec = record_visit(session, db.blobs, c, p, D[i], plain_jpeg(40 + i), analyze=lambda _b, d=d: d,
                           intake=b'{"pregnant": false}')
        assert rec.plan_document is not None
    first_plan = session.scalar(sa.select(Plan.document).order_by(Plan.id))
    assert any(con["id"] == "spots" and "cheek_left" in con["regions"] for con in first_plan["concerns"])
    pp = patient_progress(session, c, p, noise=NOISE)
    assert pp.concerns_from == "plan"
    line = next(s for s in pp.progress.summaries if s.key == "regions.cheek_left.scores.pigmentation")
    assert line.label == "Pigment spots"
    assert line.text == ("left cheek pigmentation (Pigment spots) -50 % since baseline (60 -> 30 over 2 visits), "
                         "beyond measurement noise")
    # regions that were no concern at baseline get no line when a plan names the concerns
    assert {s.key for s in pp.progress.summaries} == {
        "scores.overall", "scores.pigmentation", "scores.texture", "scores.wrinkles",
        "regions.cheek_left.scores.pigmentation"}


# --------------------------------------------------------------------------- recording visits


def _counts(session) -> dict:
    return {m.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(m))
            for m in (Visit, Photo, Analysis, Plan, Intake)}


def test_record_visit_stores_visit_photo_analysis_and_plan(db, session, clinic_patient):
    c, p = clinic_patient
    d = doc(face={"scores.wrinkles": 47.0})
    rec = record_visit(session, db.blobs, c, p, D[0], plain_jpeg(7), analyze=lambda _b: d,
                       intake=b'{"pregnant": false, "allergies": ["vitamin_c"]}', ingredients=["hyaluronic_acid"],
                       device="LB212", notes="first session")
    assert rec.photo.visit_id == rec.visit.id and rec.analysis.photo_id == rec.photo.id
    assert rec.analysis.score_wrinkles == 47.0
    assert rec.plan.analysis_id == rec.analysis.id and rec.plan_document["schema"] == "mesoscan.plan/1"
    assert _counts(session) == {"visit": 1, "photo": 1, "analysis": 1, "plan": 1, "intake": 1}
    intake = repo.latest_intake(session, c, p)
    assert intake.document == {"pregnant": False, "allergies": ["vitamin_c"]}
    # the next visit plans from the stored intake
    rec2 = record_visit(session, db.blobs, c, p, D[1], plain_jpeg(8), analyze=lambda _b: d)
    assert rec2.plan_document["excluded"][0]["ingredient"] == "vitamin_c"
    assert _counts(session)["intake"] == 1


def test_record_visit_refuses_before_writing(db, session, clinic_patient):
    c, p = clinic_patient

    def reject(_b):
        raise ImageRejected("blurred", "the photo is blurred", retake=True)

    with pytest.raises(ImageRejected):
        record_visit(session, db.blobs, c, p, D[0], plain_jpeg(1), analyze=reject, intake=b'{"pregnant": false}')
    assert _counts(session) == {"visit": 0, "photo": 0, "analysis": 0, "plan": 0, "intake": 0}
    record_visit(session, db.blobs, c, p, D[0], plain_jpeg(1), analyze=lambda _b: doc())
    with pytest.raises(repo.Conflict, match="already has a visit"):
        record_visit(session, db.blobs, c, p, D[0], plain_jpeg(2), analyze=lambda _b: doc())
    with pytest.raises(repo.Conflict, match="already stored"):
        record_visit(session, db.blobs, c, p, D[1], plain_jpeg(1), analyze=lambda _b: doc())
    assert _counts(session)["visit"] == 1 and _counts(session)["photo"] == 1


def test_record_visit_stores_numpy_values_as_json(db, session, clinic_patient):
    import numpy as np

    c, p = clinic_patient
    d = doc(face={"scores.wrinkles": np.float32(47.5)})
    d["regions"]["chin"]["measurable"] = np.bool_(False)
    d["quality"]["blur"] = float("nan")
    rec = record_visit(session, db.blobs, c, p, D[0], plain_jpeg(3), analyze=lambda _b: d)
    with db.session() as s2:
        stored = s2.get(Analysis, rec.analysis.id).document
    assert stored["scores"]["wrinkles"] == 47.5 and stored["regions"]["chin"]["measurable"] is False
    assert stored["quality"]["blur"] is None


def test_a_failed_write_leaves_no_half_visit(db, session, clinic_patient, monkeypatch):
    c, p = clinic_patient

    def broken(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(repo, "add_analysis", broken)
    with pytest.raises(RuntimeError):
        record_visit(session, db.blobs, c, p, D[0], plain_jpeg(4), analyze=lambda _b: doc())
    assert _counts(session) == {"visit": 0, "photo": 0, "analysis": 0, "plan": 0, "intake": 0}
    monkeypatch.undo()
    record_visit(session, db.blobs, c, p, D[0], plain_jpeg(4), analyze=lambda _b: doc())   # can be retried
    assert _counts(session)["visit"] == 1


# --------------------------------------------------------------------------- synthetic photos


def _record_all(db, session, c, p, photos, analyze):
    for i, data in enumerate(photos):
        record_visit(session, db.blobs, c, p, D[i], data, analyze=analyze, intake=b'{"pregnant": false}' if i == 0 else None)
    return patient_progress(session, c, p)


def _require_scores(pp):
    """Before the skin metrics and scores are wired into the analysis the documents have no
    scores: the acceptance tests below would have nothing to judge (xfail, not a vacuous pass)."""
    if not pp.progress.get("overall"):
        pytest.xfail("the analysis computes no scores yet (skin metrics and scores not wired in)")


def _comparisons(series):
    return [c for c in (*series.from_baseline, *series.from_previous) if c is not None]


def _falls(series) -> bool:
    """Lower at the end than at the baseline, and no step up beyond half the noise."""
    vals = [v for v in series.values if v is not None]
    return vals[-1] < vals[0] and all(b <= a + series.mdc / 2 for a, b in zip(vals, vals[1:]))


def test_falling_planted_severity_gives_falling_series_and_real_change(db, session, clinic_patient, synthetic_visits):
    """Spots on the cheeks and chin, lines on the forehead, glabella and crow's feet, planted
    at severity 1, 0.65, 0.3, 0 on four visits (spots cleared and lines shortened visit by
    visit): the whole-face pigmentation and overall scores fall, the cheeks' and chin's
    pigmentation falls beyond the noise, and nothing gets really worse. The wrinkle score is not
    asserted: at this photo's 4.3 px/mm the wrinkle metric does not follow the fading lines
    (22.5, 23.8, 22.7, 25.0 with pipeline 0.3.0, all inside its MDC of 9.1): on this sample
    render the forehead is mostly blond fringe whose strands read as lines, and the planted
    lines are not found under its grain (bench/repeatability.py: planted effect / wobble 0.1 on
    this photo, 3.0-8.2 on three of four development faces)."""
    c, p = clinic_patient
    pp = _record_all(db, session, c, p, synthetic_visits.falling, synthetic_visits.analyze)
    assert len(pp.progress.visits) == len(FALLING)
    _require_scores(pp)
    prog = pp.progress
    report = {k: s.values for k, s in prog.series.items() if s.kind != "metric"}
    for fam in ("pigmentation", "overall"):
        assert _falls(prog.get(fam)), (fam, report)
    spots = [prog.get("pigmentation", r) for r in ("cheek_left", "cheek_right", "chin")]
    improved = [s.key for s in spots if s.since_baseline.verdict == IMPROVED and _falls(s)]
    assert len(improved) >= 2, report
    worse = [s.key for s in prog.series.values() for ch in _comparisons(s) if ch.verdict == "worsened"
             and ch.earlier_date == D[0]]
    assert not worse, (worse, report)
    texts = [s.text for s in prog.summaries]
    assert any(t.endswith("beyond measurement noise") and "pigmentation" in t for t in texts), texts
    assert not any(s.verdict == "worsened" for s in prog.summaries), texts


def test_capture_wobble_of_identical_content_gives_no_real_change(db, session, clinic_patient, synthetic_visits):
    """The same face photographed four times with exposure +-10 %, rotations up to 2 degrees,
    small shifts and JPEG quality 70-95: no whole-face score changes beyond the noise. Regional
    scores are noisier and heavy-tailed (a region's few spots or lines flip in and out): at most
    10 % of regional comparisons may pass their MDC95 by chance (measured 14 of 264, 5.3 %, with
    pipeline 0.3.0; an MDC95 of Gaussian noise would let 5 % through)."""
    c, p = clinic_patient
    pp = _record_all(db, session, c, p, synthetic_visits.wobble, synthetic_visits.analyze)
    assert len(pp.progress.visits) == 4
    _require_scores(pp)
    series = pp.progress.series.values()
    report = {s.key: s.values for s in series if s.kind != "metric"}
    face_real = [s.key for s in series if s.kind == "score" and s.any_real_change]
    assert not face_real, (face_real, report)
    region = [ch for s in series if s.kind == "region_score" for ch in _comparisons(s)]
    real = [ch for ch in region if ch.real]
    assert len(region) >= 100
    assert len(real) <= 0.10 * len(region), ({s.key: s.values for s in series if s.any_real_change})
    face_lines = [s for s in pp.progress.summaries if s.region == "face"]
    assert len(face_lines) == 4 and all(s.verdict == "no_real_change" for s in face_lines), \
        [s.text for s in face_lines]
