"""Severity scores 0 (none) - 100 (most severe) from the physical metrics.

Every constant lives in ``SCORING`` below, versioned by ``SCORING_VERSION``; change one and the
version changes with it. Each metric maps to a severity by one documented monotone function:

    x = max(value - floor, 0);   severity = 100 * x / (x + (half - floor))

``floor`` is the value at which the metric starts to count (typical of clear young skin),
``half`` the value that scores 50. The curve is strictly increasing above the floor and never
saturates, so a real change always moves the score. A family score is the weighted mean of its
metrics' severities over the metrics that were measured (weights renormalised), with one
exception: metrics marked ``raises`` (the pores) are measured only on some photos (8 px/mm), so
they do not share the mean; they raise the score of the others by part of what is left to 100:

    score = base + (100 - base) * RAISE_SHARE * raise / 100

``base`` the weighted mean of the other metrics' severities, ``raise`` that of the raising ones;
``RAISE_SHARE`` 0.6 (pores at their halves on skin at its floor score 30).
A face whose pores are at their floors scores its roughness alone whether its pores were
resolved or not, so the score does not jump when a photo crosses 8 px/mm. ``overall`` is the mean
of the pigmentation and wrinkle scores, the families whose planted changes every accepted photo
resolves (texture's pores need 8 px/mm; roughness alone does not see them). Texture is reported
and tracked on its own. Scores are computed the same way for the face and each region.

The anchors are provisional: set from the distribution over 20 adult development faces (ages
20-47; floors near their 10th percentile, halves near their 90th, so aged or damaged skin scores
above 50) and from synthetic ground truth. A clinic's own archive can later re-anchor them
(see ``mesoscan report --reference``).

Weights (version 1.1) follow each metric's measured repeatability (bench/repeatability.py on the
sample render and 4 development faces: planted-effect / worst-wobble ratio): spot area (2.2) and
tone unevenness (2.5) carry the pigmentation score, red area (0.5) and spot contrast (0.8) less;
wrinkle length (1.3) and density (1.4) the wrinkle score, its depth term (the depth index then,
0.2: a mean over whichever lines are found, which a new shallow line can lower) little.

Texture (version 1.3): roughness is measured on every accepted photo (pipeline 0.9.0), so its
anchors come from the 20 development faces (3.5-4 px/mm: face p10 1.11, median 1.34, p90 1.83
L*, regions up to p95 2.69; one face with a fringe in its regions 3.9): floor 1.0, half 3.0, so
young skin scores as it does on the other families (face p90 29, as pigmentation's 28), and at
the floor the score moves 50 points per L* (a half of 2.0 would make it 100, and its capture
noise in points with it). The pores raise it where resolved.

Wrinkles (version 1.4): the depth term is the depth-weighted length (the skeleton's length times
its depth index, delta L* mm/cm^2) instead of the mean depth index. A mean falls when a shallow
line joins deeper ones: on a development face whose only lines were two deep lower-lid creases,
six new lines planted in the glabella and crow's feet lowered the face score from 4.0 to 3.3
(its length and density stayed under their floors). The depth-weighted length rises with every
line added and every line deepened, so the score is monotone in both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORING_VERSION = "1.4"


@dataclass(frozen=True)
class Anchor:
    floor: float
    half: float
    weight: float
    needs: str | None = None      # another metric of the family that must be > 0 to count
    raises: bool = False          # raises the family's other metrics' score (see module doc)

    def severity(self, value: float) -> float:
        x = max(value - self.floor, 0.0)
        return 100.0 * x / (x + (self.half - self.floor))

    def severity_map(self, values: np.ndarray) -> np.ndarray:
        """:meth:`severity` of every value of a float32 map, as a 0-1 share (an overlay's heat)."""
        x = np.maximum(values - np.float32(self.floor), np.float32(0.0))
        return x / (x + np.float32(self.half - self.floor))


SCORING: dict[str, dict[str, Anchor]] = {
    "pigmentation": {
        "spot_area_pct": Anchor(floor=0.5, half=6.0, weight=0.45),
        "spot_contrast_de": Anchor(floor=3.0, half=9.0, weight=0.10, needs="spot_count"),
        "tone_unevenness": Anchor(floor=4.0, half=12.0, weight=0.30),
        "red_area_pct": Anchor(floor=2.0, half=20.0, weight=0.15),
    },
    "texture": {
        "roughness": Anchor(floor=1.0, half=3.0, weight=1.0),
        "pore_density_per_cm2": Anchor(floor=20.0, half=80.0, weight=0.6, raises=True),
        # pores are found from 0.2-0.25 mm (2 px at 8-10 px/mm): their mean diameter counts above 0.3
        "pore_diameter_mm": Anchor(floor=0.3, half=0.5, weight=0.4, needs="pore_density_per_cm2", raises=True),
    },
    "wrinkles": {
        "wrinkle_length_mm_per_cm2": Anchor(floor=0.5, half=5.0, weight=0.55),
        "wrinkle_density_pct": Anchor(floor=0.5, half=6.0, weight=0.35),
        # length x depth (delta L* mm/cm^2): the floor and half are the length's times a depth of 10-20
        "wrinkle_depth_weighted_length": Anchor(floor=5.0, half=100.0, weight=0.10),
    },
}
RAISE_SHARE = 0.6   # raising metrics at their half take 30 % of the way to 100
FAMILIES = tuple(SCORING)
OVERALL_FAMILIES = ("pigmentation", "wrinkles")   # resolved on every accepted photo (see above)


def family_score(family: str, metrics: dict | None) -> float | None:
    """Score of one family from its metrics dict (None values are skipped); None when nothing
    of the family was measured."""
    if not metrics:
        return None
    total = {False: 0.0, True: 0.0}
    weight = {False: 0.0, True: 0.0}
    for name, anchor in SCORING[family].items():
        value = metrics.get(name)
        if value is None:
            continue
        if anchor.needs is not None and not metrics.get(anchor.needs):
            value = anchor.floor            # e.g. no spots: their contrast is not a severity
        total[anchor.raises] += anchor.weight * anchor.severity(float(value))
        weight[anchor.raises] += anchor.weight
    if not weight[False]:
        return None
    score = total[False] / weight[False]
    if weight[True]:
        score += (100.0 - score) * RAISE_SHARE * total[True] / weight[True] / 100.0
    return round(score, 1)


def scores(metrics_by_family: dict) -> dict:
    """``{family: score, ..., "overall": score}`` for one face or region."""
    out = {f: family_score(f, metrics_by_family.get(f)) for f in FAMILIES}
    present = [out[f] for f in OVERALL_FAMILIES if out[f] is not None]
    out["overall"] = round(sum(present) / len(present), 1) if present else None
    return out
