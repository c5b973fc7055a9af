"""Known brown spots and red (erythema) patches planted into a CIELAB skin image.

Each planted feature is a disc with a soft (raised-cosine) edge: full strength out to
``radius - edge/2``, half strength exactly at ``radius``, nothing past ``radius + edge/2``. So the
ground-truth diameter is the full width at half contrast, and the ground-truth area is the pixels
at >= half contrast: what a half-contrast detector should find.

Brown spots (solar lentigines, melasma dots) darken L* and add brown chroma (by default
Delta a* = 0.15 |Delta L*|, Delta b* = 0.35 |Delta L*|, as measured lentigines against their
surrounding skin roughly do). Red patches raise a* and slightly darken and yellow the skin
(Delta L* = -0.3 Delta a*, Delta b* = +0.1 Delta a*).

Everything is deterministic given ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.metrics.colour import delta_e_2000


@dataclass(frozen=True)
class PlantedFeature:
    """One planted spot or red patch.

    ``centre_xy``: (x, y) in pixels; ``diameter_mm``: full width at half contrast;
    ``delta_lab``: the full-strength change (Delta L*, Delta a*, Delta b*);
    ``area_px``: pixels at >= half contrast; ``mean_delta_e``: mean CIEDE2000 between the planted
    and the original colour over those pixels.
    """

    kind: str  # "spot" | "red"
    centre_xy: tuple[float, float]
    diameter_mm: float
    delta_lab: tuple[float, float, float]
    area_px: int
    mean_delta_e: float


@dataclass(frozen=True)
class SpotTruth:
    """Ground truth of :func:`plant_spots`. Masks are bool (H, W), pixels at >= half contrast."""

    spots: tuple[PlantedFeature, ...]
    red_areas: tuple[PlantedFeature, ...]
    spot_mask: np.ndarray
    red_mask: np.ndarray
    px_per_mm: float

    @property
    def spot_count(self) -> int:
        return len(self.spots)

    @property
    def spot_area_px(self) -> int:
        return int(np.count_nonzero(self.spot_mask))

    @property
    def red_area_px(self) -> int:
        return int(np.count_nonzero(self.red_mask))

    @property
    def mean_spot_delta_e(self) -> float:
        return float(np.mean([s.mean_delta_e for s in self.spots])) if self.spots else 0.0


def _profile(r: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """Raised-cosine disc: 1 inside radius - edge/2, 0.5 at radius, 0 beyond radius + edge/2."""
    if edge <= 0:
        return (r <= radius).astype(np.float32)
    t = np.clip((r - (radius - edge / 2.0)) / edge, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def _uniform(rng: np.random.Generator, value: float | tuple[float, float]) -> float:
    if isinstance(value, tuple):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def plant_spots(
    lab: np.ndarray,
    px_per_mm: float,
    *,
    mask: np.ndarray | None = None,
    count: int = 20,
    diameter_mm: float | tuple[float, float] = (2.0, 5.0),
    delta_l: float | tuple[float, float] = (6.0, 10.0),
    spot_chroma: tuple[float, float] = (0.15, 0.35),
    red_count: int = 0,
    red_diameter_mm: float | tuple[float, float] = (5.0, 12.0),
    red_delta_a: float | tuple[float, float] = (6.0, 10.0),
    edge_mm: float = 0.6,
    gap_mm: float = 1.5,
    seed: int = 0,
    max_tries: int = 20000,
) -> tuple[np.ndarray, SpotTruth]:
    """Plant ``count`` brown spots and ``red_count`` red patches into a CIELAB image.

    Parameters
    ----------
    lab : float (H, W, 3) CIELAB D65 skin, e.g. from :func:`pipelines.synthetic.skin.skin_lab`.
    px_per_mm : scale of ``lab``.
    mask : bool (H, W) or None: every feature lies wholly inside it (edge included).
    diameter_mm, delta_l, red_diameter_mm, red_delta_a : a value, or a (low, high) range sampled
        uniformly per feature. ``delta_l`` is the darkening (positive number, L* goes down).
    spot_chroma : (Delta a*, Delta b*) added per unit of darkening.
    edge_mm : width of the soft edge. ``gap_mm`` : minimum clearance between any two features'
        outer edges.

    Returns the modified float32 image and the :class:`SpotTruth`. Raises ``ValueError`` when the
    features cannot be placed without overlap inside the mask.
    """
    lab = np.asarray(lab, np.float32)
    h, w = lab.shape[:2]
    if mask is None:
        mask = np.ones((h, w), bool)
    mask = np.asarray(mask, bool)
    rng = np.random.default_rng(seed)
    # distance (px) from each inside pixel to the nearest outside pixel or image border
    padded = np.pad(mask, 1, constant_values=False).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]

    plans: list[tuple[str, float, tuple[float, float, float]]] = []
    for _ in range(count):
        d = _uniform(rng, diameter_mm)
        dl = _uniform(rng, delta_l)
        plans.append(("spot", d, (-dl, spot_chroma[0] * dl, spot_chroma[1] * dl)))
    for _ in range(red_count):
        d = _uniform(rng, red_diameter_mm)
        da = _uniform(rng, red_delta_a)
        plans.append(("red", d, (-0.3 * da, da, 0.1 * da)))
    # place the biggest first: rejection sampling packs better that way
    order = sorted(range(len(plans)), key=lambda i: -plans[i][1])

    edge_px = edge_mm * px_per_mm
    gap_px = gap_mm * px_per_mm
    placed: dict[int, tuple[float, float, float]] = {}  # index -> (x, y, outer radius px)
    for i in order:
        outer = plans[i][1] / 2.0 * px_per_mm + edge_px / 2.0
        inside = np.argwhere(dist > outer + 1.0)
        if inside.size == 0:
            raise ValueError(f"a {plans[i][1]:.1f} mm feature does not fit inside the mask")
        for _ in range(max_tries):
            y, x = inside[rng.integers(len(inside))]
            x, y = float(x) + rng.uniform(-0.5, 0.5), float(y) + rng.uniform(-0.5, 0.5)
            if all((x - px) ** 2 + (y - py) ** 2 >= (outer + pr + gap_px) ** 2 for px, py, pr in placed.values()):
                placed[i] = (x, y, outer)
                break
        else:
            raise ValueError(f"could not place {len(plans)} features without overlap inside the mask")

    out = lab.copy()
    spot_mask = np.zeros((h, w), bool)
    red_mask = np.zeros((h, w), bool)
    spots: list[PlantedFeature] = []
    reds: list[PlantedFeature] = []
    for i, (kind, d, delta) in enumerate(plans):
        x, y, outer = placed[i]
        x0, x1 = max(0, int(np.floor(x - outer - 1))), min(w, int(np.ceil(x + outer + 2)))
        y0, y1 = max(0, int(np.floor(y - outer - 1))), min(h, int(np.ceil(y + outer + 2)))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        r = np.hypot(xx - x, yy - y)
        prof = _profile(r, d / 2.0 * px_per_mm, edge_px)
        before = out[y0:y1, x0:x1].copy()
        out[y0:y1, x0:x1] += prof[..., None] * np.asarray(delta, np.float32)
        core = prof >= 0.5
        (spot_mask if kind == "spot" else red_mask)[y0:y1, x0:x1] |= core
        de = float(delta_e_2000(out[y0:y1, x0:x1][core], before[core]).mean()) if core.any() else 0.0
        feat = PlantedFeature(kind, (x, y), d, tuple(float(v) for v in delta), int(core.sum()), de)
        (spots if kind == "spot" else reds).append(feat)
    return out, SpotTruth(tuple(spots), tuple(reds), spot_mask, red_mask, float(px_per_mm))
