"""The pydantic models of API v1: they validate requests (flask-openapi3) and are the
schemas of the OpenAPI document, so the two cannot drift apart."""
from __future__ import annotations

import copy
import datetime as dt
from typing import Annotated, Any, Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from pipelines.planning.intake import Intake

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class Strict(BaseModel):
    """Request models: unknown fields are errors, and the JSON schema is built once per class.

    flask-openapi3 (4.x) asks a query or form model for its JSON schema on every request, which
    pydantic rebuilds each time: about 1 ms of a 2.4 ms patient-list request (in-process)
    before this cache."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)
        return copy.deepcopy(_SCHEMAS[key])     # callers may edit what they get


_SCHEMAS: dict[tuple, dict[str, Any]] = {}


# --- problems, pages -----------------------------------------------------------------------


class Problem(BaseModel):
    """RFC 9457 problem details, with mesoscan's members."""

    type: str = Field(description="urn:mesoscan:problem:<code>")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the request path")
    code: str = Field(description="machine-readable reason; for photos, the pipeline's reason code")
    retake: bool = Field(description="would a new photo help?")
    request_id: str | None = None
    field: str | None = Field(None, description="the offending field of an invalid input")
    errors: list[dict[str, Any]] | None = Field(None, description="every invalid field (field, message, type)")
    quality: dict[str, Any] | None = Field(None, description="quality report of a photo the gate refused")
    face: dict[str, Any] | None = None


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200, description="items per page")
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the previous page")


# --- session -------------------------------------------------------------------------------


class LoginBody(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class SessionUser(BaseModel):
    id: int
    email: str
    role: str


class SessionClinic(BaseModel):
    id: int
    name: str


class SessionOut(BaseModel):
    kind: Literal["session", "token"]
    user: SessionUser | None = None
    clinic: SessionClinic | None = None
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token on cookie-authenticated writes")
    expires_at: dt.datetime | None = Field(None, description="absolute end of the session")
    idle_timeout_s: int | None = None


# --- patients ------------------------------------------------------------------------------


class PatientPath(BaseModel):
    patient_id: int


class PatientCreate(Strict):
    code: Code = Field(description="pseudonymous code, unique in the clinic")
    name: Name | None = None


class PatientUpdate(Strict):
    name: Name | None = Field(description="new name; null clears it")


class PatientOut(BaseModel):
    id: int
    code: str
    name: str | None
    created_at: dt.datetime


class PatientListQuery(PageQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        None, description="case-insensitive search in code and name")


class PatientPage(BaseModel):
    items: list[PatientOut]
    next_cursor: str | None


class ErasureOut(BaseModel):
    patient_id: int
    photos: int
    analyses: int
    plans: int
    visits: int
    intakes: int
    blobs_deleted: int
    blobs_kept: int
    audit_id: int | None


# --- intake --------------------------------------------------------------------------------


class IntakeOut(BaseModel):
    id: int
    patient_id: int
    version: int
    created_at: dt.datetime
    document: Intake


# --- visits --------------------------------------------------------------------------------


class VisitPath(BaseModel):
    visit_id: int


class VisitCreate(Strict):
    date: dt.date = Field(description="day of the session (YYYY-MM-DD)")
    ingredients: list[Slug] = Field(default_factory=list, max_length=50,
                                    description="ingredient ids given (as in ingredients.yaml)")
    device: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    regions: list[Slug] = Field(default_factory=list, max_length=50, description="regions treated")
    notes: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class VisitOut(BaseModel):
    id: int
    patient_id: int
    date: dt.date
    ingredients: list[str]
    device: str | None
    regions: list[str]
    notes: str | None
    created_at: dt.datetime


class VisitPage(BaseModel):
    items: list[VisitOut]
    next_cursor: str | None


# --- analyses ------------------------------------------------------------------------------


class AnalysisPath(BaseModel):
    analysis_id: int


class OverlayPath(BaseModel):
    analysis_id: int
    layer: str = Field(description="regions, spots, redness, pores or wrinkles")


class OverlayQuery(Strict):
    region: Slug | None = Field(None, description="limit the overlay to one region")
    size: int = Field(1536, ge=256, le=4096, description="longest side of the PNG in pixels (at most the photo's)")


def _form_text(value: Any) -> Any:
    """flask-openapi3 JSON-decodes form fields ("12" -> 12): a patient reference is text.
    The view reads the raw field, so a code like "1e5" keeps its spelling."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class AnalysisUpload(Strict):
    image: FileStorage = Field(description="the photo: JPEG, PNG, TIFF, WebP or HEIC (sniffed from the bytes)")
    patient: Annotated[str, BeforeValidator(_form_text),
                       StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = Field(
        None, description="patient code or id; without it (and without visit) a new patient is created")
    visit: Id | None = Field(None, description="visit id the photo was taken at (implies its patient)")


class AnalysisLinks(BaseModel):
    self: str
    overlays: dict[str, str]


class AnalysisRecord(BaseModel):
    id: int
    photo_id: int
    patient_id: int
    visit_id: int | None
    pipeline_version: str
    created_at: dt.datetime
    links: AnalysisLinks


class AnalysisDocument(BaseModel):
    """The result document, schema ``mesoscan.analysis/1`` (see the README), plus ``record``:
    where it is stored."""

    model_config = ConfigDict(extra="allow")

    schema_: str = Field(alias="schema", examples=["mesoscan.analysis/1"])
    pipeline_version: str
    image: dict[str, Any]
    quality: dict[str, Any]
    face: dict[str, Any]
    frame: dict[str, Any]
    regions: dict[str, Any]
    metrics: dict[str, Any]
    scores: dict[str, Any]
    record: AnalysisRecord


class AnalysisSummary(BaseModel):
    id: int
    photo_id: int
    visit_id: int | None
    pipeline_version: str
    created_at: dt.datetime
    quality_status: str | None
    scores: dict[str, float | None]


class AnalysisPage(BaseModel):
    items: list[AnalysisSummary]
    next_cursor: str | None


# --- plans ---------------------------------------------------------------------------------


class PlanPath(BaseModel):
    plan_id: int


class PlanCreate(Strict):
    start: dt.date | None = Field(None, description="date of the first session (default: today)")
    template: Slug = Field("standard", description="course template of courses.yaml")
    analysis_id: Id | None = Field(None, description="default: the patient's latest analysis")


class PlanOut(BaseModel):
    id: int
    patient_id: int
    analysis_id: int | None
    version: int
    created_at: dt.datetime
    document: dict[str, Any] = Field(description="the plan, schema mesoscan.plan/1")
