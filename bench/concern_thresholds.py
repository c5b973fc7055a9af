"""The metric distributions behind concerns.yaml's thresholds, and how often each concern fires.

    python bench/concern_thresholds.py [DIR]   (default: ../shared/datasets/london-dev)

Analyses every JPEG of DIR with the current pipeline and scoring, and prints, for the metrics
and scores the concern rules read, the face-level p10/p50/p90 and the region-level p50/p90 over
the measured regions; then, per concern, on how many faces and in how many regions it fires.
These are the numbers README.md#provisional-thresholds quotes; re-run it when the pipeline or
the scoring changes. Photos the pipeline rejects are counted and left out.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "london-dev"

ROWS = [
    ("scores", "pigmentation"), ("scores", "wrinkles"), ("scores", "texture"),
    ("pigmentation", "spot_count"), ("pigmentation", "spot_area_pct"), ("pigmentation", "spot_contrast_de"),
    ("pigmentation", "tone_unevenness"), ("pigmentation", "red_area_pct"),
    ("wrinkles", "wrinkle_length_mm_per_cm2"), ("wrinkles", "wrinkle_density_pct"),
    ("wrinkles", "wrinkle_depth_index"), ("wrinkles", "wrinkle_count"), ("wrinkles", "wrinkle_depth_weighted_length"),
    ("texture", "roughness"), ("texture", "shine_pct"),
]


def _value(place: dict, family: str, name: str) -> float | None:
    v = place["scores"].get(name) if family == "scores" else place["metrics"].get(family, {}).get(name)
    return None if v is None else float(v)


def _pct(values: list[float], qs) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{np.percentile(values, q):.3g}" for q in qs)


def main() -> None:
    from pipelines import PIPELINE_VERSION
    from pipelines.analysis import Analyzer
    from pipelines.errors import ImageRejected
    from pipelines.knowledge.loader import load_knowledge
    from pipelines.planning.concerns import detect_concerns
    from pipelines.scoring import SCORING_VERSION

    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    photos = sorted(directory.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no JPEGs in {directory}")
    kb = load_knowledge()
    analyzer = Analyzer()
    docs, rejected = [], Counter()
    for path in photos:
        try:
            docs.append(analyzer.analyze(path.read_bytes()).document)
        except ImageRejected as exc:
            rejected[exc.code] += 1
    regions = [r for d in docs for r in d["regions"].values() if r.get("measurable")]
    print(f"pipeline {PIPELINE_VERSION}, scoring {SCORING_VERSION}, concerns {kb.concerns.version}: "
          f"{len(docs)} faces, {len(regions)} measured regions"
          + (f"; rejected: {dict(rejected)}" if rejected else ""))
    print(f"{'metric':32s} {'face p10 / p50 / p90':>24s}   {'region p50 / p90 (p95)':>24s}")
    for family, name in ROWS:
        face = [v for d in docs if (v := _value(d, family, name)) is not None]
        region = [v for r in regions if (v := _value(r, family, name)) is not None]
        label = f"{name} score" if family == "scores" else name
        print(f"{label:32s} {_pct(face, (10, 50, 90)):>24s}   {_pct(region, (50, 90, 95)):>24s}")

    faces_fired, regions_fired, any_concern = Counter(), Counter(), 0
    for d in docs:
        found = detect_concerns(d, kb)
        any_concern += bool(found)
        for concern in found:
            faces_fired[concern.id] += 1
            regions_fired[concern.id] += sum(r != "face" for r in concern.regions)
    print(f"\n{'concern':20s} {'faces':>8s} {'regions':>10s}")
    for cid in kb.concerns.concerns:
        print(f"{cid:20s} {faces_fired[cid]:4d}/{len(docs):<3d} {regions_fired[cid]:6d}/{len(regions)}")
    print(f"{'any concern':20s} {any_concern:4d}/{len(docs)}")


if __name__ == "__main__":
    main()
