"""Progress across visits (pure): the repeatability file, changes judged against the minimal
detectable change, series with gaps, summaries."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from pipelines.calibration import (REPEATABILITY_FILE, Noise, Repeatability, load_repeatability, mdc95_from_sd,
                                   parse_repeatability)
from pipelines.errors import InvalidInput
from pipelines.progress import (IMPROVED, INSUFFICIENT, NO_REAL_CHANGE, UNKNOWN, WORSENED, Concern, Observation,
                                build_series, compute_progress, concerns_from_plan, judge_change)

D = [dt.date(2025, 1, 6) + dt.timedelta(days=14 * i) for i in range(6)]


def noise(score_mdc=10.0, region_mdc=5.0, metrics=None, provisional=False) -> Repeatability:
    n = lambda m: Noise(sd=m / mdc95_from_sd(1.0), mdc95=m)  # noqa: E731
    return Repeatability(
        pipeline_version="0.1.0", provisional=provisional, method="test",
        scores={f: n(score_mdc) for f in ("pigmentation", "texture", "wrinkles", "overall")},
        region_scores={f: n(region_mdc) for f in ("pigmentation", "texture", "wrinkles")},
        metrics={k: n(v) for k, v in (metrics or {}).items()},
    )


# --------------------------------------------------------------------------- calibration


def test_mdc95_is_1_96_sqrt2_sd():
    assert mdc95_from_sd(1.0) == pytest.approx(2.7719, abs=1e-4)
    assert mdc95_from_sd(4.0) == pytest.approx(1.96 * math.sqrt(2) * 4.0)


def test_shipped_file_is_measured_for_this_pipeline():
    """The shipped noise comes from bench/repeatability.py on the current pipeline version."""
    from pipelines import PIPELINE_VERSION

    r = load_repeatability()
    assert r.provisional is False and r.pipeline_version == PIPELINE_VERSION
    assert r.version == 1
    for fam in ("pigmentation", "texture", "wrinkles", "overall"):
        assert 0.5 <= r.score_mdc(fam) <= 30.0                 # points on the 0-100 scale
        assert r.scores[fam].mdc95 == pytest.approx(mdc95_from_sd(r.scores[fam].sd), abs=0.01)
    for fam in ("pigmentation", "texture", "wrinkles"):
        assert r.region_score_mdc(fam) >= r.score_mdc(fam)   # a region is noisier than the face
    assert r.metric_mdc("texture.roughness") is not None       # measured metrics are judged
    assert r.metric_mdc("texture.no_such_metric") is None      # unknown: not judged
    assert json.loads(REPEATABILITY_FILE.read_text())["provisional"] is False


def test_parse_computes_missing_mdc_and_reads_metrics():
    r = parse_repeatability({"version": 1, "pipeline_version": "0.2.0", "provisional": False, "method": "m",
                             "scores": {"wrinkles": {"sd": 2.0}},
                             "region_scores": {"wrinkles": {"sd": 3.0, "mdc95": 8.5}},
                             "metrics": {"texture.roughness": {"cv_pct": 4.0, "sd": 0.1, "mdc95": 0.28}}})
    assert r.score_mdc("wrinkles") == pytest.approx(5.544, abs=1e-3)
    assert r.region_score_mdc("wrinkles") == 8.5
    assert r.metrics["texture.roughness"].cv_pct == 4.0
    assert r.metric_mdc("texture.roughness") == 0.28
    assert r.score_mdc("texture") is None
    assert parse_repeatability(json.dumps(r.to_dict())).to_dict() == r.to_dict()


@pytest.mark.parametrize("bad, field", [
    ({"version": 2}, "version"),
    ({"provisional": "yes"}, "provisional"),
    ({"scores": {"wrinkles": {"sd": -1}}}, "scores.wrinkles.sd"),
    ({"scores": {"wrinkles": {"sd": float("nan")}}}, "scores.wrinkles.sd"),
    ({"scores": {"shine": {"sd": 1}}}, "scores"),
    ({"region_scores": {"texture": 3}}, "region_scores.texture"),
    ({"metrics": {"roughness": {"sd": 1}}}, "metrics.roughness"),
])
def test_parse_rejects_malformed_files_naming_the_field(bad, field):
    doc = {"version": 1, "pipeline_version": "x", "provisional": True, "method": "", "scores": {},
           "region_scores": {}, "metrics": {}}
    doc.update(bad)
    with pytest.raises(InvalidInput) as exc:
        parse_repeatability(doc, source="r.json")
    assert exc.value.field == field
    assert "r.json" in exc.value.message


def test_load_missing_file_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput):
        load_repeatability(tmp_path / "none.json")


# --------------------------------------------------------------------------- changes


def test_change_is_real_only_beyond_the_mdc():
    assert judge_change(50, 40, 10.0).real is False           # exactly the MDC: noise can do that
    c = judge_change(50, 39.9, 10.0)
    assert c.real is True and c.verdict == IMPROVED
    assert c.delta == pytest.approx(-10.1) and c.pct == pytest.approx(-20.2)
    assert judge_change(30, 45, 10.0).verdict == WORSENED
    assert judge_change(30, 35, 10.0).verdict == NO_REAL_CHANGE
    unknown = judge_change(30, 60, None)
    assert unknown.real is None and unknown.verdict == UNKNOWN


def test_no_percentage_against_a_near_zero_baseline():
    assert judge_change(0.4, 12.0, 5.0).pct is None
    assert judge_change(0.0, 3.0, 5.0, pct_floor=1e-9).pct is None
    assert judge_change(2.0, 3.0, 5.0).pct == pytest.approx(50.0)


def test_series_skips_gaps_for_baseline_and_previous():
    s = build_series("scores.wrinkles", "score", "wrinkles", "face", "wrinkles", D[:5],
                     [None, 60.0, None, 52.0, 45.0], mdc=10.0, visit_ids=[1, 2, 3, 4, 5])
    assert s.measured == (1, 3, 4)
    assert s.baseline == 60.0 and s.latest == 45.0
    assert s.from_baseline[0] is None and s.from_baseline[1] is None and s.from_baseline[2] is None
    assert s.from_baseline[3].delta == pytest.approx(-8.0) and s.from_baseline[3].real is False
    assert s.since_baseline.delta == pytest.approx(-15.0) and s.since_baseline.real is True
    assert s.since_previous.earlier == 52.0 and s.since_previous.earlier_date == D[3]
    assert s.since_previous.real is False
    assert s.any_real_change


def test_single_visit_has_no_change():
    s = build_series("k", "score", "texture", "face", "texture", D[:1], [33.0], mdc=10.0)
    assert s.since_baseline is None and s.since_previous is None and not s.any_real_change


def test_series_rejects_mismatched_lengths():
    with pytest.raises(InvalidInput):
        build_series("k", "score", "texture", "face", "texture", D[:2], [1.0], mdc=1.0)


# --------------------------------------------------------------------------- progress


def _falling() -> list[Observation]:
    """Forehead wrinkles 44 -> 36 (-18 %), cheek pigmentation 60 -> 30, texture flat with wobble."""
    fw = [44.0, 41.0, 38.5, 36.0]
    cp = [60.0, 50.0, 41.0, 30.0]
    tx = [30.0, 31.5, 29.0, 30.5]
    return [Observation(date=D[i], visit_id=10 + i, analysis_id=100 + i, pipeline_version="0.1.0",
                        scores={"wrinkles": 48.0 - 5 * i, "pigmentation": 55.0 - 8 * i, "texture": tx[i],
                                "overall": 44.0 - 4 * i},
                        region_scores={"forehead": {"wrinkles": fw[i], "texture": tx[i]},
                                       "cheek_left": {"pigmentation": cp[i], "texture": tx[i] + 1},
                                       "chin": {"texture": tx[i] - 1}})
            for i in range(4)]


def test_falling_scores_are_real_improvements_with_summaries():
    p = compute_progress(list(reversed(_falling())), noise(score_mdc=10.0, region_mdc=5.0))
    assert [v.date for v in p.visits] == D[:4]                  # sorted whatever the input order
    fw = p.get("wrinkles", "forehead")
    assert fw.values == (44.0, 41.0, 38.5, 36.0)
    assert fw.since_baseline.verdict == IMPROVED and fw.since_baseline.pct == pytest.approx(-18.18, abs=0.01)
    assert fw.since_previous.real is False                      # -2.5: within the noise step to step
    texts = {s.key: s.text for s in p.summaries}
    assert texts["regions.forehead.scores.wrinkles"] == (
        "forehead wrinkles -18 % since baseline (44 -> 36 over 4 visits), beyond measurement noise")
    assert texts["scores.texture"].endswith("within measurement noise")
    assert list(texts)[:4] == ["scores.overall", "scores.pigmentation", "scores.texture", "scores.wrinkles"]
    # default concerns: regions >= 40 at baseline or really changed; flat chin texture is not one
    assert "regions.cheek_left.scores.pigmentation" in texts
    assert "regions.chin.scores.texture" not in texts
    assert {s.key for s in p.real_changes} >= {"scores.wrinkles", "scores.pigmentation",
                                                "regions.forehead.scores.wrinkles"}
    assert p.get("texture").since_baseline.real is False
    assert p.notes == ()
    json.dumps(p.to_dict())                                     # serialisable as is


def test_wobble_within_the_noise_is_no_real_change():
    obs = [Observation(date=D[i], visit_id=i, scores={"wrinkles": 40 + w, "overall": 38 - w},
                       region_scores={"glabella": {"wrinkles": 45 - 0.8 * w}})
           for i, w in enumerate([0.0, 3.0, -2.5, 1.0])]
    p = compute_progress(obs, noise(score_mdc=10.0, region_mdc=5.0))
    assert all(not s.any_real_change for s in p.series.values())
    assert all(s.verdict == NO_REAL_CHANGE for s in p.summaries)
    assert all("within measurement noise" in s.text for s in p.summaries)


def test_unknown_noise_is_reported_not_judged_and_metrics_follow():
    obs = [Observation(date=D[i], metrics={"texture.roughness": r, "wrinkles.wrinkle_count": c})
           for i, (r, c) in enumerate([(3.0, 12), (2.0, 9), (1.5, 4)])]
    p = compute_progress(obs, noise(metrics={"texture.roughness": 0.5}))
    rough = p.metric("texture.roughness")
    assert rough.since_baseline.real is True and rough.since_baseline.verdict == "changed"
    count = p.metric("wrinkles.wrinkle_count")
    assert count.since_baseline.real is None and count.since_baseline.verdict == UNKNOWN
    assert compute_progress(obs, noise(), with_metrics=False).series == {}


def test_notes_for_mixed_versions_and_provisional_noise():
    obs = _falling()
    obs[2] = Observation(date=obs[2].date, scores=obs[2].scores, pipeline_version="0.2.0")
    p = compute_progress(obs, noise(provisional=True))
    assert any("different pipeline versions (0.1.0, 0.2.0)" in n for n in p.notes)
    assert any("provisional" in n for n in p.notes)
    assert p.noise_provisional


def test_note_when_only_some_visits_had_a_colour_card():
    def doc(reference):
        return {"pipeline_version": "0.4.0", "scores": {"pigmentation": 30.0},
                "colour_correction": {"reference": reference}}
    mixed = [Observation.from_document(D[i], doc(ref)) for i, ref in enumerate(["sclera", "colour_card", "sclera"])]
    assert any("colour card" in n for n in compute_progress(mixed, noise()).notes)
    same = [Observation.from_document(D[i], doc("colour_card")) for i in range(3)]
    assert not any("colour card" in n for n in compute_progress(same, noise()).notes)
    eyes_or_background = [Observation.from_document(D[i], doc(ref)) for i, ref in enumerate(["sclera", "grey_world_non_skin"])]
    assert not any("colour card" in n for n in compute_progress(eyes_or_background, noise()).notes)


def test_summary_of_a_single_visit_and_given_concerns():
    p = compute_progress(_falling()[:1], noise(), concerns=[Concern("pigmentation", "cheek_left", "Pigment spots")])
    s = {x.key: x for x in p.summaries}
    line = s["regions.cheek_left.scores.pigmentation"]
    assert line.verdict == INSUFFICIENT and line.label == "Pigment spots"
    assert line.text == "left cheek pigmentation (Pigment spots) 60 at baseline; no follow-up visit yet"
    assert "regions.forehead.scores.wrinkles" not in s      # only the given concerns beyond the face


def test_observation_from_document_reads_scores_and_skips_hidden_regions():
    doc = {"pipeline_version": "0.1.0", "scores": {"wrinkles": 40, "texture": None, "overall": "n/a"},
           "metrics": {"texture": {"roughness": 2.5, "label": "x"}, "pigmentation": {"ita_deg": None}},
           "regions": {"forehead": {"measurable": True, "scores": {"wrinkles": 33.5, "texture": float("inf")}},
                       "chin": {"measurable": False, "scores": {"texture": 10}},
                       "glabella": {"measurable": True}}}
    o = Observation.from_document(D[0], doc, visit_id=3)
    assert o.scores == {"wrinkles": 40.0, "texture": None, "overall": None}
    assert o.region_scores == {"forehead": {"wrinkles": 33.5, "texture": None}}
    assert o.metrics == {"texture.roughness": 2.5, "pigmentation.ita_deg": None}
    assert o.pipeline_version == "0.1.0" and o.visit_id == 3
    with pytest.raises(InvalidInput):
        Observation.from_document(D[0], ["not", "a", "document"])


def test_concerns_from_plan_map_to_score_families():
    plan = {"concerns": [
        {"id": "spots", "label": "Pigment spots", "severity": 55, "regions": ["cheek_left", "cheek_right"]},
        {"id": "fine_lines", "label": "Fine lines", "severity": 48, "regions": ["forehead"]},
        {"id": "uneven_tone", "label": "Dullness / uneven tone", "severity": 30, "regions": ["face"]},
        {"id": "no_such_concern", "label": "?", "severity": 1, "regions": ["chin"]},
    ]}
    got = concerns_from_plan(plan)
    assert got == [Concern("pigmentation", "cheek_left", "Pigment spots"),
                   Concern("pigmentation", "cheek_right", "Pigment spots"),
                   Concern("wrinkles", "forehead", "Fine lines"),
                   Concern("pigmentation", "face", "Dullness / uneven tone")]
    p = compute_progress(_falling(), noise(), concerns=got)
    labels = {s.key: s.label for s in p.summaries}
    assert labels["regions.forehead.scores.wrinkles"] == "Fine lines"
    assert labels["scores.pigmentation"] == "Dullness / uneven tone"
    assert "regions.cheek_right.scores.pigmentation" not in labels    # not measured: no line
