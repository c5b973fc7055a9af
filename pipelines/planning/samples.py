"""Hand-made analysis documents (schema mesoscan.analysis/1) for tests, docs and demos.

:func:`example_analysis` builds clear young-adult skin, below every threshold of concerns.yaml,
then applies overrides, so a test states exactly which measurement it changes.

The clear values are typical of the 20 development faces (adults aged 20-47) the thresholds were
calibrated on: about their region medians (e.g. 3 spots covering 1.5 %, tone unevenness 5.4
delta-E, 2.3 % red area, one line of depth index 9, roughness 1.35). Scores are 10 by default
(pipelines.scoring 1.4 gives these values 13.8 for pigmentation, 19.3 for texture, 7.7 for
wrinkles); pass ``rescore=True`` to compute every score from the
metrics with :func:`pipelines.scoring.scores`, as the analysis does, so that a document states
only measurements and its scores follow from them.
"""
from __future__ import annotations

import copy
from typing import Any

from pipelines.planning.concerns import ANALYSIS_SCHEMA

REGIONS = ("forehead", "glabella", "crows_feet_left", "crows_feet_right", "under_eye_left",
           "under_eye_right", "cheek_left", "cheek_right", "nasolabial_left", "nasolabial_right", "chin")

CLEAR_METRICS: dict[str, dict[str, float | str | None]] = {
    "pigmentation": {"ita_deg": 45.0, "ita_category": "light", "melanin_index": 30.0,
                     "erythema_index": 17.0, "spot_count": 3, "spot_area_pct": 1.5,
                     "spot_contrast_de": 4.7, "tone_unevenness": 5.4, "red_area_pct": 2.3},
    "texture": {"roughness": 1.35, "pore_density_per_cm2": 30.0, "pore_diameter_mm": 0.22, "shine_pct": 2.0},
    "wrinkles": {"wrinkle_density_pct": 1.0, "wrinkle_length_mm_per_cm2": 0.9,
                 "wrinkle_depth_index": 9.0, "wrinkle_count": 1, "wrinkle_depth_weighted_length": 8.1},
}
CLEAR_SCORES = {"pigmentation": 10.0, "texture": 10.0, "wrinkles": 10.0}


def example_analysis(*, quality: str = "ok", face: dict[str, Any] | None = None,
                     regions: dict[str, dict[str, Any]] | None = None, rescore: bool = False) -> dict:
    """A clear-skin analysis document with overrides.

    ``face`` and each ``regions[name]`` map dotted paths to values, e.g.
    ``regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 7.5, "scores.pigmentation": 40}}``
    or ``face={"metrics.pigmentation.tone_unevenness": 10.5}``. With ``rescore=True`` the scores of
    the face and of every region are computed from the metrics after the overrides (overriding a
    score then is an error)."""
    doc = {
        "schema": ANALYSIS_SCHEMA, "pipeline_version": "test",
        "quality": {"status": quality},
        "metrics": copy.deepcopy(CLEAR_METRICS),
        "scores": {**CLEAR_SCORES, "overall": 10.0},
        "regions": {name: {"area_cm2": 12.0, "metrics": copy.deepcopy(CLEAR_METRICS),
                           "scores": dict(CLEAR_SCORES)} for name in REGIONS},
    }
    for target, changes in [(doc, face or {})] + [(doc["regions"][r], c) for r, c in (regions or {}).items()]:
        for path, value in changes.items():
            if rescore and path.startswith("scores."):
                raise ValueError(f"'{path}': scores are computed from the metrics with rescore=True")
            *parents, leaf = path.split(".")
            node = target
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise KeyError(f"no field '{path}' in the example analysis")
            node[leaf] = value
    if rescore:
        from pipelines.scoring import scores

        doc["scores"] = scores(doc["metrics"])
        for region in doc["regions"].values():
            region["scores"] = scores(region["metrics"])     # as the analysis: overall included
    return doc
