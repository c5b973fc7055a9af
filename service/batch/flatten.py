"""A result document (schema ``mesoscan.analysis/1``) -> one flat row of a Parquet dataset.

The row has fixed leading columns (:data:`BASE_COLUMNS`: identity, status, reason, image
facts) followed by every numeric or string leaf found under

* ``metrics``  -> ``metrics.<family>.<name>``           (face-level metrics)
* ``scores``   -> ``scores.<family>``                   (``scores.overall``, ...)
* ``regions.<region>.metrics`` / ``.scores`` -> ``regions.<region>.metrics.<family>.<name>``
* ``quality``  -> ``quality.<measure>``                 (blur, exposure, pose, ...)

The walk is generic, so a metric added to the pipeline appears as a column with no change
here. Numbers and booleans become float64, strings stay strings; lists are not flattened
(polygons, landmark lists, issue lists) except the quality issue codes, which go to
``quality_warnings``.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa

STATUS_SCORED = "scored"
STATUS_REJECTED = "rejected"     # the pipeline refused the photo: bad file or quality gate
STATUS_FAILED = "failed"         # something went wrong that is not the photo's fault
STATUSES = (STATUS_SCORED, STATUS_REJECTED, STATUS_FAILED)

BASE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),             # relative path, archive member name or store:clinic/patient/photo
    ("sha256", pa.string()),           # of the photo's bytes: the photo's identity
    ("status", pa.string()),           # scored | rejected | failed
    ("reason", pa.string()),           # machine-readable code (ImageRejected.code, ...); null when scored
    ("message", pa.string()),          # human text for the reason
    ("pipeline_version", pa.string()),
    ("quality_status", pa.string()),   # ok | warn | reject (when the gate ran)
    ("quality_warnings", pa.string()), # issue codes, comma-separated
    ("image_format", pa.string()),
    ("image_width", pa.int64()),
    ("image_height", pa.int64()),
    ("face_confidence", pa.float64()),
    ("face_px_per_mm", pa.float64()),
)
BASE_NAMES = tuple(name for name, _ in BASE_COLUMNS)
BASE_TYPES = dict(BASE_COLUMNS)

# Leaves under these keys are identity or geometry, not measurements.
_QUALITY_SKIP = {"status", "issues", "occluded_regions"}


def plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (``json.dumps(..., default=plain)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _leaves(prefix: str, node: Any) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every numeric/str/bool/None leaf under ``node`` (dicts only;
    numpy scalars count as their Python values)."""
    if isinstance(node, np.generic):
        node = node.item()
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(f"{prefix}.{key}" if prefix else str(key), value)
    elif node is None or isinstance(node, (bool, int, float, str)):
        yield prefix, node
    # lists and other shapes are skipped on purpose


def _value(v: Any) -> Any:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def measurement_columns(document: Mapping[str, Any]) -> dict[str, Any]:
    """The measurement columns of a result document, in the document's own key order."""
    out: dict[str, Any] = {}
    for name, v in _leaves("metrics", document.get("metrics") or {}):
        out[name] = _value(v)
    for name, v in _leaves("scores", document.get("scores") or {}):
        out[name] = _value(v)
    for region, rdoc in (document.get("regions") or {}).items():
        if not isinstance(rdoc, Mapping):
            continue
        for part in ("metrics", "scores"):
            for name, v in _leaves(f"regions.{region}.{part}", rdoc.get(part) or {}):
                out[name] = _value(v)
    out.update(quality_columns(document.get("quality")))
    return out


def quality_columns(quality: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(quality, Mapping):
        return {}
    return {name: _value(v) for name, v in _leaves("quality", {k: v for k, v in quality.items()
                                                                if k not in _QUALITY_SKIP})}


def _issue_codes(quality: Mapping[str, Any] | None) -> str | None:
    if not isinstance(quality, Mapping):
        return None
    codes = [i.get("code") for i in quality.get("issues") or [] if isinstance(i, Mapping) and i.get("code")]
    return ",".join(codes) or None


def scored_row(path: str, sha256: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a photo the pipeline scored."""
    image = document.get("image") or {}
    face = document.get("face") or {}
    quality = document.get("quality") or {}
    row = {
        "path": path, "sha256": sha256, "status": STATUS_SCORED, "reason": None, "message": None,
        "pipeline_version": document.get("pipeline_version"),
        "quality_status": quality.get("status"), "quality_warnings": _issue_codes(quality),
        "image_format": image.get("format"), "image_width": image.get("width"), "image_height": image.get("height"),
        "face_confidence": _value(face.get("confidence")), "face_px_per_mm": _value(face.get("px_per_mm")),
    }
    row.update(measurement_columns(document))
    return row


def problem_row(path: str, sha256: str | None, status: str, reason: str, message: str,
                pipeline_version: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The row of a photo that was rejected or failed. ``details`` (``ImageRejected.details``)
    carries the quality report and face of a photo the gate refused: kept as columns, so an
    archive's rejections can be studied (how blurred, how dark)."""
    row: dict[str, Any] = {"path": path, "sha256": sha256, "status": status, "reason": reason,
                           "message": message, "pipeline_version": pipeline_version}
    details = details or {}
    quality = details.get("quality")
    if isinstance(quality, Mapping):
        row["quality_status"] = quality.get("status")
        row["quality_warnings"] = _issue_codes(quality)
        row.update(quality_columns(quality))
    face = details.get("face")
    if isinstance(face, Mapping):
        row["face_confidence"] = _value(face.get("confidence"))
        row["face_px_per_mm"] = _value(face.get("px_per_mm"))
    return row
