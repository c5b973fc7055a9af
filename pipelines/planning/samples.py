"""Hand-made analysis documents (schema mesoscan.analysis/1) for tests, docs and demos.

:func:`example_analysis` builds clear skin, below every threshold of concerns.yaml, then applies
overrides, so a test states exactly which measurement it changes.
"""
from __future__ import annotations

import copy
from typing import Any

from pipelines.planning.concerns import ANALYSIS_SCHEMA

REGIONS = ("forehead", "glabella", "crows_feet_left", "crows_feet_right", "under_eye_left",
           "under_eye_right", "cheek_left", "cheek_right", "nasolabial_left", "nasolabial_right", "chin")

CLEAR_METRICS: dict[str, dict[str, float | str | None]] = {
    "pigmentation": {"ita_deg": 42.0, "ita_category": "very_light", "melanin_index": 30.0,
                     "erythema_index": 15.0, "spot_count": 1, "spot_area_pct": 0.3,
                     "spot_contrast_de": 2.0, "tone_unevenness": 1.5, "red_area_pct": 1.0},
    "texture": {"roughness": 1.5, "pore_density_per_cm2": 30.0, "pore_diameter_mm": 0.15, "shine_pct": 4.0},
    "wrinkles": {"wrinkle_density_pct": 0.5, "wrinkle_length_mm_per_cm2": 2.0,
                 "wrinkle_depth_index": 0.2, "wrinkle_count": 1},
}
CLEAR_SCORES = {"pigmentation": 10.0, "texture": 10.0, "wrinkles": 10.0}


def example_analysis(*, quality: str = "ok", face: dict[str, Any] | None = None,
                     regions: dict[str, dict[str, Any]] | None = None) -> dict:
    """A clear-skin analysis document with overrides.

    ``face`` and each ``regions[name]`` map dotted paths to values, e.g.
    ``regions={"cheek_left": {"metrics.pigmentation.spot_area_pct": 2.4, "scores.pigmentation": 55}}``
    or ``face={"metrics.pigmentation.tone_unevenness": 3.4}``."""
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
            *parents, leaf = path.split(".")
            node = target
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise KeyError(f"no field '{path}' in the example analysis")
            node[leaf] = value
    return doc
