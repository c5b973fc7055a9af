"""Flattening documents, atomic Parquet parts with a stable schema, the resume set, reports
and reference populations (no cluster)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.fakes import fake_document
from pipelines import PIPELINE_VERSION
from service.batch.flatten import BASE_NAMES, problem_row, scored_row
from service.batch.report import (
    describe, format_html, format_text, load_reference, percentile_of, reference_document, save_reference,
)
from service.batch.resume import read_done
from service.batch.writer import PartWriter, dataset_schema, part_files, read_dataset


def test_flatten_is_generic_over_metrics_scores_and_regions():
    doc = fake_document(b"FACE-1")
    row = scored_row("P1/a.jpg", "ab" * 32, doc)
    assert list(row)[: len(BASE_NAMES)] == list(BASE_NAMES)
    h = __import__("hashlib").sha256(b"FACE-1").digest()
    assert row["regions.forehead.metrics.wrinkles.wrinkle_count"] == float(h[3] % 9)
    assert row["regions.forehead.scores.wrinkles"] == pytest.approx(h[0] / 2.55)
    assert row["regions.chin.metrics.texture.roughness"] == pytest.approx(h[5] / 7)
    assert row["metrics.pigmentation.category"] in ("light", "tan")
    assert row["scores.overall"] == pytest.approx(h[0] / 2.55)
    assert row["quality.blur_effect"] == pytest.approx(h[2] / 255)
    assert "regions.forehead.area_cm2" not in row            # geometry is not a metric
    # a metric added later by the pipeline appears with no code change
    doc["regions"]["chin"]["metrics"]["texture"]["pore_density_per_cm2"] = 12
    doc["scores"]["texture"] = {"score": 40, "band": "moderate"}
    row = scored_row("P1/a.jpg", "ab" * 32, doc)
    assert row["regions.chin.metrics.texture.pore_density_per_cm2"] == 12.0
    assert row["scores.texture.score"] == 40.0 and row["scores.texture.band"] == "moderate"


def test_numpy_scalars_are_values():
    import numpy as np

    doc = fake_document(b"FACE-np")
    doc["metrics"]["wrinkles"] = {"count": np.int64(7), "deep": np.bool_(True), "len_mm": np.float32(2.5)}
    row = scored_row("a.jpg", "ab" * 32, doc)
    assert row["metrics.wrinkles.count"] == 7.0 and row["metrics.wrinkles.deep"] == 1.0
    assert row["metrics.wrinkles.len_mm"] == 2.5


def test_problem_row_keeps_the_quality_report_of_a_gate_rejection():
    details = {"quality": {"status": "reject", "issues": [{"code": "blurred", "severity": "reject"},
                                                         {"code": "low_resolution", "severity": "warn"}],
                           "blur_effect": 0.71, "occluded_regions": []},
               "face": {"confidence": 0.98, "px_per_mm": 3.1}}
    row = problem_row("x.jpg", "cd" * 32, "rejected", "blurred", "too blurred", "9.9", details)
    assert row["quality_warnings"] == "blurred,low_resolution"
    assert row["quality.blur_effect"] == 0.71 and row["face_px_per_mm"] == 3.1


def _rows(n, start=0, extra=None):
    rows = []
    for i in range(start, start + n):
        data = b"FACE-%d" % i
        row = scored_row(f"p/{i}.jpg", __import__("hashlib").sha256(data).hexdigest(), fake_document(data))
        if extra:
            row.update(extra)
        rows.append(row)
    return rows


def test_parts_are_atomic_and_the_schema_only_grows_at_the_end(tmp_path):
    out = tmp_path / "ds"
    w = PartWriter(out, part_rows=4)
    w.add_many(_rows(4))                                    # part 0
    first = pq.read_schema(part_files(out)[0])
    w.add_many(_rows(3, 4, extra={"metrics.texture.new_metric": 1}))
    w.add(problem_row("bad.txt", "ef" * 32, "rejected", "not_an_image", "no", PIPELINE_VERSION))   # part 1
    w.add(dict(_rows(1, 9)[0], **{"scores.overall": "not a number", "image_width": "wide"}))
    w.close()                                                # part 2: a partial part
    parts = part_files(out)
    assert [p.name for p in parts] == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert not list(out.glob(".*"))                          # no temporary file left
    second = pq.read_schema(parts[1])
    assert second.names[: len(first.names)] == first.names   # same columns, same order ...
    assert second.names[-1] == "metrics.texture.new_metric"  # ... a new one appended
    for f in first:
        assert second.field(f.name).type == f.type
    table = read_dataset(out)
    assert table.num_rows == 9
    assert table.column("metrics.texture.new_metric").to_pylist()[:4] == [None] * 4
    last = table.slice(8).to_pylist()[0]
    assert last["scores.overall"] is None and last["image_width"] is None   # uncastable -> null
    assert table.schema.field("regions.forehead.metrics.wrinkles.wrinkle_count").type == pa.float64()
    assert table.schema.field("metrics.pigmentation.category").type == pa.string()


def test_writer_resumes_numbering_schema_and_cleans_temporary_files(tmp_path):
    out = tmp_path / "ds"
    w = PartWriter(out, part_rows=2)
    w.add_many(_rows(4))
    (out / ".part-000002.parquet.tmp").write_bytes(b"half a part from a killed run")
    w2 = PartWriter(out, part_rows=2)
    assert not (out / ".part-000002.parquet.tmp").exists()
    assert w2.seq == 2 and list(w2.columns) == dataset_schema(out).names
    w2.add_many(_rows(2, 4))
    assert [p.name for p in part_files(out)][-1] == "part-000002.parquet"


def test_done_set_by_sha_and_version_and_by_path_without_sha(tmp_path):
    out = tmp_path / "ds"
    w = PartWriter(out, part_rows=100)
    rows = _rows(3)
    w.add_many(rows)
    w.add(problem_row("refused/../x.jpg", None, "rejected", "unsafe_member", "no", PIPELINE_VERSION))
    w.add(dict(_rows(1, 50)[0], pipeline_version="0.0.1"))
    w.close()
    done = read_done(out, PIPELINE_VERSION)
    assert all(done.has_sha(r["sha256"]) for r in rows)
    assert not done.has_sha(_rows(1, 50)[0]["sha256"])      # another pipeline version: not done
    assert done.has_path("refused/../x.jpg") and done.rows == 4
    assert done.digest_set().__contains__(rows[0]["sha256"])


def _population(tmp_path, values):
    out = tmp_path / "pop"
    w = PartWriter(out, part_rows=50)
    for i, v in enumerate(values):
        w.add({"path": f"{i}.jpg", "sha256": "%064x" % i, "status": "scored", "pipeline_version": PIPELINE_VERSION,
               "scores.overall": float(v), "metrics.texture.roughness": float(v) / 10})
    for i in range(5):
        w.add(problem_row(f"bad{i}.jpg", "%064x" % (1000 + i), "rejected", "no_face", "no", PIPELINE_VERSION))
    w.close()
    return out


def test_describe_and_html(tmp_path):
    out = _population(tmp_path, range(101))
    d = describe(out)
    assert d.status_counts == {"scored": 101, "rejected": 5} and d.reasons == {"no_face": 5}
    c = d.columns["scores.overall"]
    assert c.n == 101 and c.min == 0 and c.max == 100 and c.mean == pytest.approx(50)
    assert c.percentile(25) == pytest.approx(25) and c.percentile(90) == pytest.approx(90)
    assert sum(c.hist_counts) == 101 and len(c.hist_edges) == len(c.hist_counts) + 1
    text = format_text(d)
    assert "scores.overall" in text and "no_face 5" in text
    page = format_html(d)
    assert page.count("<svg") == 2 and "metrics.texture.roughness" in page


def test_percentile_of_inverts_the_quantile_grid(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(50, 10, 2000)
    d = describe(_population(tmp_path, values))
    ref = reference_document(d, "clinic", 1)
    for v in (35.0, 50.0, 62.0):
        expected = 100.0 * (values < v).mean()
        assert percentile_of(ref, "scores.overall", v) == pytest.approx(expected, abs=1.0)
    assert percentile_of(ref, "scores.overall", values.min() - 1) == 0.0
    assert percentile_of(ref, "scores.overall", values.max() + 1) == 100.0
    assert percentile_of(ref, "scores.overall", None) is None
    with pytest.raises(KeyError):
        percentile_of(ref, "scores.unknown", 1.0)
    # ties: half the population at exactly 0 -> 0 is the middle of their percents
    tied = describe(_population(tmp_path / "t", [0.0] * 50 + list(range(1, 51))))
    assert percentile_of(reference_document(tied, "t", 1), "scores.overall", 0.0) == pytest.approx(24.5, abs=0.6)
    # monotone
    grid = [percentile_of(ref, "scores.overall", v) for v in np.linspace(0, 100, 200)]
    assert all(b >= a for a, b in zip(grid, grid[1:]))


def test_reference_versions_are_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setenv("MESOSCAN_DATA_DIR", str(tmp_path / "data"))
    d = describe(_population(tmp_path, range(11)))
    p1 = save_reference(d, "clinic-a")
    p2 = save_reference(d, "clinic-a")
    assert p1.name == "clinic-a.v1.json" and p2.name == "clinic-a.v2.json"
    assert p1.parent == tmp_path / "data" / "reference"
    assert json.loads(p1.read_text())["version"] == 1
    ref = load_reference("clinic-a")
    assert ref["version"] == 2 and ref["schema"] == "mesoscan.reference/1" and ref["photos"] == 11
    assert load_reference("clinic-a", version=1)["version"] == 1
    assert percentile_of(ref, "scores.overall", 5.0) == pytest.approx(50.0)
    for bad in ("../x", "a/b", "", "x.v2"):
        with pytest.raises(ValueError):
            save_reference(d, bad)
