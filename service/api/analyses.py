"""Photos in, analyses out.

    POST /api/v1/analyses                                   upload a photo (multipart: image,
                                                            patient, visit): 201 + Location, or
                                                            200 with the stored analysis when the
                                                            same file was uploaded before
    GET  /api/v1/analyses/{id}                              the result document
    GET  /api/v1/analyses/{id}/overlays/{layer}.png?region= overlay re-rendered from the stored
                                                            photo (cached)

The photo is checked by its bytes (never the client's Content-Type): anything that is not
JPEG, PNG, TIFF, WebP or HEIC/HEIF is a 415. Identifying metadata is stripped, the stripped
copy is analysed (so overlays re-rendered from the stored copy line up with the document), and
only a photo that passes the capture quality gate is stored: a rejected photo is a 422 with
the reason code, retake advice and the quality report, and leaves nothing behind.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time

from flask import Response, request, url_for

from pipelines import PIPELINE_VERSION
from pipelines.errors import ImageRejected, InvalidInput
from service.api.common import api_blueprint, json_response, problem_ref
from service.api.schemas import AnalysisDocument, AnalysisPath, AnalysisUpload, OverlayPath, OverlayQuery
from service.auth import clinic_id
from service.errors import ApiError, not_found
from service.extensions import db_session, release_db_connection, state
from service.metrics import ANALYSES, ANALYSIS_SECONDS, REJECTIONS
from service.overlays import overlay_png, recent
from service.storage import repository as repo
from service.storage.blobstore import sha256_hex
from service.storage.metadata import sniff_format, strip_metadata

log = logging.getLogger("mesoscan.api.analyses")

bp = api_blueprint("analyses", __name__, "analyses", "Upload photos, read results, render overlays")

UNSUPPORTED_CODES = ("not_an_image", "unsupported_format")


def _layers() -> tuple[str, ...]:
    from pipelines.overlay import LAYERS

    return LAYERS


def record(a, photo) -> dict:
    return {
        "id": a.id, "photo_id": a.photo_id, "patient_id": photo.patient_id, "visit_id": photo.visit_id,
        "pipeline_version": a.pipeline_version, "created_at": a.created_at.isoformat(),
        "links": {
            "self": url_for("analyses.get_analysis", analysis_id=a.id),
            "overlays": {layer: url_for("analyses.get_overlay", analysis_id=a.id, layer=layer) for layer in _layers()},
        },
    }


def document_response(a, photo, status: int) -> Response:
    body = {**(a.document or {}), "record": record(a, photo)}
    headers = {"Location": url_for("analyses.get_analysis", analysis_id=a.id)} if status == 201 else {}
    return json_response(body, status, headers)


def _resolve_target(patient_ref: str | None, visit_id: int | None):
    """(patient or None, visit or None) for the upload's ``patient`` and ``visit`` fields.

    ``patient`` is matched as a code first, then (when it is a number) as an id. Another
    clinic's patient or visit is answered exactly like a missing one."""
    s, cid = db_session(), clinic_id()
    patient = visit = None
    if patient_ref is not None:
        patient = repo.get_patient_by_code(s, cid, patient_ref)
        if patient is None and patient_ref.isdigit() and len(patient_ref) < 19:
            patient = repo.get_patient(s, cid, int(patient_ref))
        if patient is None:
            raise not_found("patient")
    if visit_id is not None:
        visit = repo.get_visit(s, cid, visit_id)
        if visit is None:
            raise not_found("visit")
        if patient is not None and visit.patient_id != patient.id:
            raise ApiError(409, "visit_of_other_patient", "The visit belongs to another patient.", field="visit")
        if patient is None:
            patient = repo.get_patient(s, cid, visit.patient_id)
    return patient, visit


def _stored_analysis(photo):
    rows = repo.list_analyses(db_session(), clinic_id(), photo_id=photo.id, pipeline_version=PIPELINE_VERSION)
    return rows[-1] if rows else None


def _check_bytes(data: bytes) -> None:
    """415 for bytes that are no supported image (by their signature), whatever the
    client's Content-Type said."""
    if not data:
        raise ImageRejected("empty_file", "The file is empty.")
    if sniff_format(data) is None:
        try:
            strip_metadata(data)
        except ImageRejected as exc:
            code, message = exc.code, exc.message
        else:   # pragma: no cover - strip_metadata sniffs the same signatures
            code, message = "unsupported_format", "Unsupported image format."
        REJECTIONS.labels(code).inc()
        raise ApiError(415, code if code in UNSUPPORTED_CODES else "unsupported_format",
                       message + " Send a JPEG, PNG, TIFF, WebP or HEIC photo.", title="Unsupported media type")


@bp.post("/analyses", responses={
    201: AnalysisDocument, 200: AnalysisDocument,
    404: problem_ref("no such patient or visit"), 409: problem_ref("the photo or visit belongs to another patient"),
    413: problem_ref("upload too large"), 415: problem_ref("not a supported image (judged by its bytes)"),
    422: problem_ref("photo rejected (code = the pipeline's reason code, retake, quality report) or invalid input"),
})
def create_analysis(form: AnalysisUpload):
    """Upload and analyse a face photo

    Multipart form: `image` (the file), optional `patient` (code or id) and `visit` (id).
    Without either, a new patient with a generated code is created for the photo. The same
    file uploaded again returns the stored analysis with 200."""
    try:
        return _create_analysis(form)
    except ImageRejected as exc:
        REJECTIONS.labels(exc.code).inc()
        raise


def _create_analysis(form: AnalysisUpload) -> Response:
    data = form.image.read()
    _check_bytes(data)
    # the raw field: flask-openapi3 JSON-decodes form values, which would respell "1e5" or "007"
    raw_patient = None
    if form.patient is not None:
        raw_patient = (request.form.get("patient") or "").strip() or form.patient
    patient, visit = _resolve_target(raw_patient, form.visit)
    s, cid = db_session(), clinic_id()

    existing = repo.find_photo_by_source(s, cid, sha256_hex(data))
    if existing is not None:
        if patient is not None and existing.patient_id != patient.id:
            raise ApiError(409, "photo_of_other_patient",
                           "This photo was already uploaded for another patient of your clinic.", field="patient")
        stored = _stored_analysis(existing)
        if stored is not None:
            ANALYSES.labels("reused").inc()
            return document_response(stored, existing, 200)

    stripped = strip_metadata(data)
    release_db_connection()
    started = time.perf_counter()
    analysis = state().get_analyzer().analyze(stripped.data)
    ANALYSIS_SECONDS.observe(time.perf_counter() - started)
    document = analysis.document

    created_patient = None
    if existing is not None:
        photo = existing
    else:
        if patient is None:
            code = f"anon-{dt.date.today():%Y%m%d}-{secrets.token_hex(3)}"
            patient = created_patient = repo.create_patient(s, cid, code)
        try:
            photo, _ = repo.add_photo(s, state().storage.blobs, cid, patient.id, data,
                                      visit_id=visit.id if visit else None)
        except repo.Conflict:
            if created_patient is not None:   # a concurrent upload of the same file won
                repo.erase_patient(s, state().storage.blobs, cid, created_patient.id)
            raise ApiError(409, "photo_of_other_patient",
                           "This photo was already uploaded for another patient of your clinic.",
                           field="patient") from None
        if photo.sha256 != document["image"]["sha256"]:
            log.warning("stored photo hash differs from the analysed bytes",
                        extra={"photo_id": photo.id})
    try:
        row = repo.add_analysis(s, cid, photo.id, PIPELINE_VERSION, document)
    except repo.Conflict:   # a concurrent upload stored the same analysis first
        row = _stored_analysis(photo)
        ANALYSES.labels("reused").inc()
        return document_response(row, photo, 200)
    ANALYSES.labels("created").inc()
    if photo.sha256 == document["image"]["sha256"]:
        recent.put(f"{photo.sha256}:{PIPELINE_VERSION}", analysis)   # overlays right after the upload are cheap
    log.info("analysis stored", extra={"analysis_id": row.id, "photo_id": photo.id,
                                       "quality": document["quality"]["status"]})
    return document_response(row, photo, 201)


def _require_analysis(analysis_id: int):
    s, cid = db_session(), clinic_id()
    a = repo.get_analysis(s, cid, analysis_id)
    if a is None:
        raise not_found("analysis")
    photo = repo.get_photo(s, cid, a.photo_id)
    return a, photo


@bp.get("/analyses/<int:analysis_id>", responses={200: AnalysisDocument, 404: problem_ref("no such analysis")})
def get_analysis(path: AnalysisPath):
    """Get an analysis: the result document (schema mesoscan.analysis/1) with its record"""
    a, photo = _require_analysis(path.analysis_id)
    return document_response(a, photo, 200)


def _read_photo_and_release(s, cid: int, photo_id: int) -> bytes:
    data = repo.read_photo(s, state().storage.blobs, cid, photo_id)
    release_db_connection()     # the analysis that follows takes seconds
    return data


@bp.get("/analyses/<int:analysis_id>/overlays/<layer>.png", responses={
    200: {"description": "the overlay", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "not modified (If-None-Match)"},
    404: problem_ref("no such analysis, unknown layer, or the layer has no map for this analysis"),
})
def get_overlay(path: OverlayPath, query: OverlayQuery):
    """Overlay of a layer (regions, spots, redness, pores, wrinkles) on the photo, as PNG"""
    from pipelines.regions import REGION_NAMES

    a, photo = _require_analysis(path.analysis_id)
    if path.layer not in _layers():
        raise ApiError(404, "unknown_layer", f"Unknown overlay layer; choose one of {', '.join(_layers())}.")
    if query.region is not None and query.region not in REGION_NAMES:
        raise ApiError(422, "invalid_input", f"Unknown region; choose one of {', '.join(REGION_NAMES)}.",
                       field="region")
    etag = hashlib.sha256(f"{photo.sha256}:{PIPELINE_VERSION}:{path.layer}:{query.region}:{query.size}"
                          .encode()).hexdigest()[:32]
    if request.if_none_match.contains_weak(etag):
        resp = Response(status=304)
        resp.set_etag(etag, weak=True)
        return resp
    s, cid = db_session(), clinic_id()
    try:
        png, cached = overlay_png(state().overlay_cache, state().get_analyzer(), photo.sha256,
                                  lambda: _read_photo_and_release(s, cid, photo.id),
                                  path.layer, query.region, query.size)
    except InvalidInput as exc:
        raise ApiError(404, "layer_unavailable", exc.message) from None
    resp = Response(png, mimetype="image/png")
    resp.set_etag(etag, weak=True)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    resp.headers["X-Pipeline-Version"] = PIPELINE_VERSION
    resp.headers["X-Overlay-Cache"] = "hit" if cached else "miss"
    return resp
