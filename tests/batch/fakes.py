"""Fast stand-ins for the pipeline (the runner's ``analyze`` seam) and small test inputs.

A fake photo is bytes starting with a tag: ``FACE`` is scored with metrics derived from its
bytes (so every photo's numbers differ and a wrong row mapping shows), ``NOFACE`` is rejected
``no_face``, ``BOOM`` raises a plain exception (``internal_error``), ``DIE`` ends the worker
process (a segfault or the kernel's out-of-memory kill)."""
from __future__ import annotations

import hashlib
import os

from pipelines import PIPELINE_VERSION
from pipelines.errors import ImageRejected


def fake_document(data: bytes) -> dict:
    h = hashlib.sha256(data).digest()
    n = h[0] / 2.55
    return {
        "schema": "mesoscan.analysis/1",
        "pipeline_version": PIPELINE_VERSION,
        "image": {"sha256": hashlib.sha256(data).hexdigest(), "width": 100 + h[1], "height": 120, "format": "jpeg"},
        "quality": {"status": "ok", "issues": [], "blur_effect": h[2] / 255},
        "face": {"confidence": 0.99, "px_per_mm": 5.0},
        "regions": {
            "forehead": {"area_cm2": 30.0, "measurable": True,
                         "metrics": {"wrinkles": {"wrinkle_count": h[3] % 9, "density_pct": h[4] / 10}},
                         "scores": {"wrinkles": n}},
            "chin": {"area_cm2": 8.0, "measurable": True, "metrics": {"texture": {"roughness": h[5] / 7}}},
        },
        "metrics": {"pigmentation": {"ita_deg": h[6] - 100.0, "category": "light" if h[6] > 128 else "tan"}},
        "scores": {"pigmentation": h[7] / 2.55, "overall": n},
    }


def fake_analyze(data: bytes) -> dict:
    if data.startswith(b"FACE"):
        return fake_document(data)
    if data.startswith(b"NOFACE"):
        raise ImageRejected("no_face", "no face found", retake=True)
    if data.startswith(b"BOOM"):
        raise ValueError("a bug in one photo")
    if data.startswith(b"DIE"):
        os._exit(13)
    raise ImageRejected("not_an_image", "not an image file")
