"""Measurement noise of the pipeline: the repeatability file and its loader.

``repeatability.json`` beside this module is written by the repeatability harness: the same faces
photographed again under capture wobble (exposure, small rotations, JPEG quality, framing) give
the within-subject standard deviation ``sd`` of every score and metric, and from it the minimal
detectable change at 95 % confidence, ``mdc95 = 1.96 * sqrt(2) * sd``: the smallest difference
between two measurements of the same face that noise alone produces less than 5 % of the time.
Progress reports call a change "real" only beyond it.

Until the harness has run on the current pipeline the file is ``"provisional": true`` with
deliberately conservative (large) values, so no noise is sold as progress.

Format (version 1)::

    {"version": 1, "pipeline_version": "0.1.0", "provisional": false, "method": "...",
     "scores":        {"pigmentation": {"sd": 1.9, "mdc95": 5.3}, "texture": {...},
                       "wrinkles": {...}, "overall": {...}},
     "region_scores": {"pigmentation": {"sd": ..., "mdc95": ...}, ...},
     "metrics":       {"pigmentation.spot_area_pct": {"cv_pct": 8.0, "sd": 0.2, "mdc95": 0.55}, ...}}

``metrics`` keys are ``<family>.<name>`` as in the analysis document's ``metrics.<family>.<name>``;
a metric absent from the file has no known noise (its changes are reported, never judged).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from pipelines.errors import InvalidInput

REPEATABILITY_FILE = Path(__file__).with_name("repeatability.json")
FORMAT_VERSION = 1
SCORE_FAMILIES = ("pigmentation", "texture", "wrinkles", "overall")
Z95_SQRT2 = 1.96 * math.sqrt(2.0)   # 2.772: mdc95 per unit of within-subject SD


def mdc95_from_sd(sd: float) -> float:
    """Minimal detectable change at 95 % confidence from the within-subject SD (same units)."""
    return Z95_SQRT2 * float(sd)


@dataclass(frozen=True)
class Noise:
    """Noise of one measure: within-subject SD, its MDC95 (same units as the measure) and, for
    metrics, the coefficient of variation in percent."""

    sd: float
    mdc95: float
    cv_pct: float | None = None

    def to_dict(self) -> dict:
        out = {"sd": self.sd, "mdc95": self.mdc95}
        if self.cv_pct is not None:
            out["cv_pct"] = self.cv_pct
        return out


@dataclass(frozen=True)
class Repeatability:
    """The contents of a repeatability file (see the module docstring)."""

    pipeline_version: str
    provisional: bool
    method: str
    scores: Mapping[str, Noise]
    region_scores: Mapping[str, Noise]
    metrics: Mapping[str, Noise] = field(default_factory=dict)
    version: int = FORMAT_VERSION
    source: str | None = None

    def score_mdc(self, family: str) -> float | None:
        """MDC95 of the whole-face score ``family`` (0-100 points), None if unknown."""
        n = self.scores.get(family)
        return n.mdc95 if n else None

    def region_score_mdc(self, family: str) -> float | None:
        """MDC95 of a region's ``family`` score (0-100 points), None if unknown."""
        n = self.region_scores.get(family)
        return n.mdc95 if n else None

    def metric_mdc(self, key: str) -> float | None:
        """MDC95 of metric ``<family>.<name>`` in its own unit, None if unknown."""
        n = self.metrics.get(key)
        return n.mdc95 if n else None

    def to_dict(self) -> dict:
        return {
            "version": self.version, "pipeline_version": self.pipeline_version,
            "provisional": self.provisional, "method": self.method,
            "scores": {k: v.to_dict() for k, v in self.scores.items()},
            "region_scores": {k: v.to_dict() for k, v in self.region_scores.items()},
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        }


def _number(value: Any, where: str, source: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{source}: '{where}' must be a finite number >= 0 (got {value!r})",
                           field=where, source=source)
    return float(value)


def _noise_table(raw: Any, where: str, source: str, *, metrics: bool = False) -> dict[str, Noise]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{source}: '{where}' must be an object", field=where, source=source)
    out = {}
    for key, entry in raw.items():
        at = f"{where}.{key}"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{source}: '{at}' must be an object with sd and mdc95", field=at, source=source)
        if metrics and key.count(".") != 1:
            raise InvalidInput(f"{source}: '{at}': metric keys are '<family>.<name>'", field=at, source=source)
        sd = _number(entry.get("sd"), f"{at}.sd", source)
        mdc = entry.get("mdc95")
        mdc = mdc95_from_sd(sd) if mdc is None else _number(mdc, f"{at}.mdc95", source)
        cv = _number(entry.get("cv_pct"), f"{at}.cv_pct", source, optional=True)
        out[str(key)] = Noise(sd=sd, mdc95=mdc, cv_pct=cv)
    return out


def parse_repeatability(data: Mapping[str, Any] | str | bytes, source: str = "repeatability") -> Repeatability:
    """Validate a repeatability document (a mapping or JSON text). Raises :class:`InvalidInput`
    naming the field. A missing ``mdc95`` is computed from ``sd``."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidInput(f"{source}: not valid JSON", source=source) from None
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: must be a JSON object", source=source)
    if data.get("version") != FORMAT_VERSION:
        raise InvalidInput(f"{source}: 'version' must be {FORMAT_VERSION} (got {data.get('version')!r})",
                           field="version", source=source)
    provisional = data.get("provisional")
    if not isinstance(provisional, bool):
        raise InvalidInput(f"{source}: 'provisional' must be true or false", field="provisional", source=source)
    scores = _noise_table(data.get("scores"), "scores", source)
    unknown = set(scores) - set(SCORE_FAMILIES)
    if unknown:
        raise InvalidInput(f"{source}: 'scores': unknown score(s) {sorted(unknown)}", field="scores", source=source)
    region_scores = _noise_table(data.get("region_scores"), "region_scores", source)
    return Repeatability(
        pipeline_version=str(data.get("pipeline_version") or ""),
        provisional=provisional,
        method=str(data.get("method") or ""),
        scores=scores,
        region_scores=region_scores,
        metrics=_noise_table(data.get("metrics"), "metrics", source, metrics=True),
        source=source,
    )


def load_repeatability(path: str | Path | None = None) -> Repeatability:
    """The repeatability file at ``path`` (default: the one shipped beside this module, read once
    and cached). Raises :class:`InvalidInput` when it is missing or malformed."""
    if path is None:
        return _load_default()
    return _load(Path(path))


def _load(path: Path) -> Repeatability:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the repeatability file: {exc.strerror or exc}",
                           source=str(path)) from None
    return parse_repeatability(text, source=str(path))


@lru_cache(maxsize=1)
def _load_default() -> Repeatability:
    return _load(REPEATABILITY_FILE)


__all__ = ["Noise", "Repeatability", "REPEATABILITY_FILE", "load_repeatability", "mdc95_from_sd",
           "parse_repeatability"]
