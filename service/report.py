"""The printable visit report (one self-contained HTML file) and before/after comparisons of
stored visits.

    html = build_visit_report(session, storage.blobs, clinic_id, patient_id, date(2025, 3, 3))
    cmp, labels = compare_visits(session, storage.blobs, clinic_id, patient_id, before, after)

The report (``templates/report.html``, Jinja2, autoescaped) holds the photo with the regions,
one severity overlay per score family (each region filled by its score), the scores with their
change since the baseline judged against the measurement noise, the progress summaries and
chart (SVG), the before/after against the baseline visit with its colour-difference map, and the
plan (concerns, suggestions with reasons, exclusions, care, calendar). Every image is embedded as
a ``data:`` URI, so the file can be mailed or archived alone; the CSS is made for A4 printing
(a browser's "Print to PDF" gives the PDF).
"""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy.orm import Session

from pipelines.calibration import Repeatability
from pipelines.compare import Comparison, compare_photos, render_comparison
from pipelines.decode import decode_image
from pipelines.errors import InvalidInput
from pipelines.progress import FAMILY_LABELS, REGION_FAMILIES
from service.progress import VisitRecord, load_visit, patient_progress
from service.storage import repository as repo
from service.storage.blobstore import BlobStore

TEMPLATES = Path(__file__).with_name("templates")


# --------------------------------------------------------------------------- images


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """RGB uint8 -> JPEG or PNG bytes."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidInput(f"cannot encode an image as {fmt}", field="image")
    return buf.tobytes()


def decode_for_display(data: bytes, document: Mapping[str, Any] | None, *, min_px_per_mm: float = 4.0,
                       min_side: int = 1200):
    """Decode a stored photo reduced as far as keeps ``min_px_per_mm`` at the face (or
    ``min_side`` without a document). Returns (rgb, scale: image px per full-resolution px)."""
    from pipelines.decode import probe_image

    info = probe_image(data)
    native = None
    if document:
        native = (document.get("face") or {}).get("px_per_mm")
    r = 1
    for cand in (8, 4, 2):
        if native and native / cand >= min_px_per_mm:
            r = cand
            break
        if not native and max(info.width, info.height) / cand >= min_side:
            r = cand
            break
    decoded = decode_image(data, reduction=r)
    return decoded.rgb, 1.0 / decoded.reduction


def _polygons(document: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(reg["polygon"], np.float64) for name, reg in (document.get("regions") or {}).items()
            if isinstance(reg, Mapping) and reg.get("polygon")}


def _face_crop(polys: Mapping[str, np.ndarray], shape: tuple[int, int], scale: float,
               margin: float = 0.18) -> tuple[int, int, int, int]:
    if not polys:
        return 0, 0, shape[1], shape[0]
    pts = np.vstack(list(polys.values())) * scale
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = (hi - lo) * margin
    x0, y0 = np.floor(lo - pad).astype(int).clip(0)
    x1 = int(min(shape[1], np.ceil(hi[0] + pad[0])))
    y1 = int(min(shape[0], np.ceil(hi[1] + pad[1])))
    return int(x0), int(y0), x1, y1


def severity_colour(score: float) -> tuple[int, int, int]:
    """0 green - 50 amber - 100 red (RGB)."""
    t = float(np.clip(score / 100.0, 0.0, 1.0))
    stops = [(0.0, (46, 160, 67)), (0.5, (240, 180, 30)), (1.0, (210, 40, 40))]
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            k = (t - t0) / (t1 - t0)
            return tuple(int(round(a + (b - a) * k)) for a, b in zip(c0, c1))
    return stops[-1][1]


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    f = max_side / max(img.shape[:2])
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else img


def photo_with_regions(rgb: np.ndarray, scale: float, document: Mapping[str, Any], *,
                       max_side: int = 1100) -> np.ndarray:
    """The face cropped from the photo, with every region outlined and named."""
    polys = _polygons(document)
    x0, y0, x1, y1 = _face_crop(polys, rgb.shape[:2], scale)
    img = np.ascontiguousarray(rgb[y0:y1, x0:x1]).copy()
    f = min(1.0, max_side / max(img.shape[:2]))
    img = _shrink(img, max_side)
    t = max(1, int(round(max(img.shape[:2]) / 500)))
    for name, poly in polys.items():
        p = (poly * scale - (x0, y0)) * f
        measurable = document["regions"][name].get("measurable", True)
        colour = (255, 255, 255) if measurable else (150, 150, 150)
        cv2.polylines(img, [np.round(p * 4).astype(np.int32)], True, colour, t, cv2.LINE_AA, shift=2)
    return img


def severity_overlay(rgb: np.ndarray, scale: float, document: Mapping[str, Any], family: str, *,
                     max_side: int = 520, alpha: float = 0.45) -> np.ndarray:
    """The face with each measurable region filled by its ``family`` score colour and labelled
    with the score."""
    polys = _polygons(document)
    x0, y0, x1, y1 = _face_crop(polys, rgb.shape[:2], scale)
    img = _shrink(np.ascontiguousarray(rgb[y0:y1, x0:x1]), max_side).astype(np.float32)
    f = img.shape[1] / max(1, x1 - x0)
    grey = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    img = np.repeat(grey[..., None], 3, axis=2) * 0.9 + 25
    fill = np.zeros_like(img)
    cover = np.zeros(img.shape[:2], np.float32)
    labels = []
    for name, poly in polys.items():
        reg = document["regions"][name]
        score = (reg.get("scores") or {}).get(family)
        p = np.round((poly * scale - (x0, y0)) * f * 4).astype(np.int32)
        if score is None or reg.get("measurable", True) is False:
            continue
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [p], 1, cv2.LINE_8, shift=2)
        fill[mask > 0] = severity_colour(float(score))
        cover[mask > 0] = 1.0
        labels.append((f"{score:.0f}", p.mean(axis=0) / 4))
    a = (alpha * cover)[..., None]
    out = np.clip(img * (1 - a) + fill * a, 0, 255).astype(np.uint8)
    for name, poly in polys.items():
        p = np.round((poly * scale - (x0, y0)) * f * 4).astype(np.int32)
        cv2.polylines(out, [p], True, (255, 255, 255), 1, cv2.LINE_AA, shift=2)
    scale = max(0.45, out.shape[1] / 700.0)
    thick = max(1, int(round(scale * 1.5)))
    for text, (cx, cy) in labels:
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (int(cx - tw / 2), int(cy + th / 2))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------------- comparisons


def _visit_image(session: Session, blobs: BlobStore, clinic_id: int, rec: VisitRecord):
    if rec.photo is None or rec.analysis is None:
        raise repo.NotFound(f"the visit of {rec.visit.visit_date.isoformat()} has no analysed photo")
    data = repo.read_photo(session, blobs, clinic_id, rec.photo.id)
    rgb, scale = decode_for_display(data, rec.analysis.document)
    return rgb, scale


def compare_records(session: Session, blobs: BlobStore, clinic_id: int, before: VisitRecord,
                    after: VisitRecord, **kwargs) -> Comparison:
    """Compare the analysed photos of two loaded visits (see :func:`pipelines.compare.compare_photos`)."""
    b_rgb, b_scale = _visit_image(session, blobs, clinic_id, before)
    a_rgb, a_scale = _visit_image(session, blobs, clinic_id, after)
    bdoc, adoc = before.analysis.document, after.analysis.document
    return compare_photos(b_rgb, a_rgb, bdoc["face"]["landmarks"], adoc["face"]["landmarks"],
                          regions={n: p for n, p in _polygons(bdoc).items()
                                   if bdoc["regions"][n].get("measurable", True)},
                          before_scale=b_scale, after_scale=a_scale, **kwargs)


def compare_visits(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, before: dt.date,
                   after: dt.date, **kwargs) -> tuple[Comparison, tuple[str, str]]:
    """Before/after of the patient's visits on ``before`` and ``after``: the comparison and
    the two panel labels. Raises ``repository.NotFound`` for a missing visit or photo."""
    b = load_visit(session, clinic_id, patient_id, before)
    a = load_visit(session, clinic_id, patient_id, after)
    cmp = compare_records(session, blobs, clinic_id, b, a, **kwargs)
    return cmp, (f"before {before.isoformat()}", f"after {after.isoformat()}")


# --------------------------------------------------------------------------- the report


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, nd=0: "–" if v is None else f"{v:.{nd}f}"
    env.filters["signed"] = lambda v, nd=0: "–" if v is None else f"{v:+.{nd}f}"
    env.filters["region"] = _region_label
    return env


def _region_label(region: str) -> str:
    from pipelines.knowledge import load_knowledge

    return load_knowledge().region_label(region)


def report_context(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, visit_date: dt.date, *,
                   noise: Repeatability | None = None, compare: bool = True) -> dict:
    """Everything the template shows, images already encoded as data URIs."""
    from service.charts import render_progress_chart

    rec = load_visit(session, clinic_id, patient_id, visit_date)
    clinic = repo.get_clinic(session, clinic_id)
    pp = patient_progress(session, clinic_id, patient_id, noise=noise)
    progress = pp.progress
    doc = rec.analysis.document if rec.analysis is not None else None
    ctx: dict[str, Any] = {
        "clinic": clinic.name if clinic else "",
        "patient": {"code": rec.patient.code, "name": rec.patient.name},
        "visit": {"date": rec.visit.visit_date.isoformat(), "ingredients": list(rec.visit.ingredients or ()),
                  "device": rec.visit.device, "regions": [_region_label(r) for r in rec.visit.regions or ()],
                  "notes": rec.visit.notes},
        "visit_number": next((i + 1 for i, v in enumerate(pp.visits) if v.visit_id == rec.visit.id), None),
        "visit_count": len(pp.visits),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "document": doc, "pipeline_version": doc.get("pipeline_version") if doc else None,
        "quality": doc.get("quality") if doc else None,
        "columns": [(f, FAMILY_LABELS[f]) for f in ("overall", *REGION_FAMILIES)],
        "summaries": [s.text for s in progress.summaries],
        "notes": list(progress.notes),
        "noise_provisional": progress.noise_provisional,
        "plan": rec.plan.document if rec.plan is not None else None,
    }
    # scores: this visit's values and their change since the baseline
    rows = []
    face_row = {"label": "Whole face", "cells": {}, "measurable": True}
    for fam in ("overall", *REGION_FAMILIES):
        face_row["cells"][fam] = _cell(progress.get(fam), rec.visit.id)
    rows.append(face_row)
    if doc:
        for region, reg in doc["regions"].items():
            cells = {fam: _cell(progress.get(fam, region), rec.visit.id) for fam in ("overall", *REGION_FAMILIES)}
            rows.append({"label": _region_label(region), "cells": cells,
                         "measurable": reg.get("measurable", True), "area_cm2": reg.get("area_cm2")})
    ctx["score_rows"] = rows
    ctx["has_scores"] = any(c["value"] is not None for r in rows for c in r["cells"].values())
    ctx["chart_svg"] = data_uri(render_progress_chart(progress, "svg", title=f"Patient {rec.patient.code}"),
                                "image/svg+xml") if progress.visits else None
    ctx["photo"] = ctx["overlays"] = None
    if rec.photo is not None and doc is not None:
        rgb, scale = _visit_image(session, blobs, clinic_id, rec)
        ctx["photo"] = data_uri(encode_image(photo_with_regions(rgb, scale, doc)), "image/jpeg")
        ctx["overlays"] = [{"family": FAMILY_LABELS[f],
                            "uri": data_uri(encode_image(severity_overlay(rgb, scale, doc, f)), "image/jpeg")}
                           for f in REGION_FAMILIES
                           if any((r.get("scores") or {}).get(f) is not None for r in doc["regions"].values())]
    ctx["comparison"] = None
    baseline = next((v for v in pp.visits if v.analysis_id is not None), None)
    if compare and baseline is not None and rec.analysis is not None and baseline.visit_id != rec.visit.id:
        base_rec = load_visit(session, clinic_id, patient_id, baseline.visit_date)
        try:
            cmp = compare_records(session, blobs, clinic_id, base_rec, rec)
        except (InvalidInput, repo.StorageError) as exc:
            ctx["comparison"] = {"error": exc.message}
        else:
            img = render_comparison(cmp, labels=(f"baseline {baseline.visit_date.isoformat()}",
                                                 f"this visit {visit_date.isoformat()}"), panel_height=420)
            ctx["comparison"] = {
                "baseline": baseline.visit_date.isoformat(),
                "uri": data_uri(encode_image(img, quality=88), "image/jpeg"),
                "alignment": cmp.alignment.to_dict(), "refined": cmp.refined,
                "regions": [{"label": _region_label(r.name), **r.to_dict()} for r in cmp.regions.values()],
                "changed_de": cmp.changed_de,
            }
    return ctx


def _cell(series, visit_id: int) -> dict:
    if series is None or visit_id not in series.visit_ids:
        return {"value": None, "change": None}
    i = series.visit_ids.index(visit_id)
    return {"value": series.values[i], "change": series.from_baseline[i], "mdc": series.mdc}


def render_report(context: Mapping[str, Any]) -> str:
    return _environment().get_template("report.html").render(**context)


def build_visit_report(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, visit_date: dt.date,
                       **kwargs) -> str:
    """The visit report as one self-contained HTML document."""
    return render_report(report_context(session, blobs, clinic_id, patient_id, visit_date, **kwargs))


def concerns_text(plan: Mapping[str, Any] | None, region_label=_region_label) -> Sequence[str]:
    """Plain lines for the plan's concerns (used by the template and the CLI)."""
    if not plan:
        return []
    return [f"{c['label']} (severity {c['severity']:g}) on {', '.join(region_label(r) for r in c['regions'])}"
            for c in plan.get("concerns") or ()]
