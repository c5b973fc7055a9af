"""SQLAlchemy 2 models: the whole persistent schema of mesoscan.

Tenancy is enforced by the schema as well as by the repository: every patient-owned row carries
``clinic_id``, and its foreign keys are composite, ``(clinic_id, patient_id) -> patient(clinic_id,
id)`` and so on, so the database itself refuses a visit, photo, analysis or plan whose clinic
differs from its parent's.

Photos are content-addressed: ``photo.sha256`` is the SHA-256 of the stored (metadata-stripped)
bytes and the key in the blob store; the ``blob`` table has one row per stored blob and is the
lock that creators and deleters of a blob file take (see ``repository``).

Patient erasure deletes rows explicitly (no ``ON DELETE CASCADE``): the foreign keys are
``NO ACTION``, so the database refuses to drop a patient while anything of theirs remains.

Changing anything here needs a new migration in ``migrations/versions``; the tests compare the
migrated schema with this module and fail on any difference.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("admin", "practitioner", "viewer")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(sa.TypeDecorator):
    """``TIMESTAMP WITH TIME ZONE`` that always hands back aware UTC datetimes.

    SQLite has no time zones and returns naive values; naive values written are taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")
SHA256 = sa.String(64)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSONDocument}


class Clinic(Base):
    __tablename__ = "clinic"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who logs in. ``email`` is unique across clinics (it is the login name)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for the tablet app. Only ``sha256(token)`` is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(SHA256, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class Patient(Base):
    """A patient, known by a pseudonymous ``code`` unique within the clinic; the name is optional."""

    __tablename__ = "patient"
    __table_args__ = (
        sa.UniqueConstraint("clinic_id", "code"),
        sa.UniqueConstraint("clinic_id", "id"),   # target of the composite foreign keys
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def _patient_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"])


class Intake(Base):
    """An intake questionnaire (medical history, allergies, medications): a JSON document whose
    schema version is ``version``. A patient has a history of intakes; the newest counts."""

    __tablename__ = "intake"
    __table_args__ = (_patient_fk(), sa.Index("ix_intake_clinic_patient", "clinic_id", "patient_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    patient_id: Mapped[int]
    version: Mapped[int]
    document: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Visit(Base):
    """A treatment session: its date and what was given."""

    __tablename__ = "visit"
    __table_args__ = (
        _patient_fk(),
        sa.UniqueConstraint("clinic_id", "id"),
        sa.Index("ix_visit_clinic_patient", "clinic_id", "patient_id", "visit_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    patient_id: Mapped[int]
    visit_date: Mapped[dt.date]
    ingredients: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    device: Mapped[str | None] = mapped_column(sa.String(100))
    regions: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """One stored blob (photo bytes after metadata stripping), shared by every photo row with
    the same content. Creating or deleting the blob file happens while this row is locked."""

    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(SHA256, primary_key=True)
    byte_size: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    touched_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Photo(Base):
    """A photo of a patient. ``sha256`` is the stored bytes' hash (the blob key);
    ``source_sha256`` the uploaded bytes' hash, unique per clinic, to spot re-uploads.
    ``width``/``height`` are as displayed (after the EXIF orientation)."""

    __tablename__ = "photo"
    __table_args__ = (
        _patient_fk(),
        sa.ForeignKeyConstraint(["clinic_id", "visit_id"], ["visit.clinic_id", "visit.id"]),
        sa.UniqueConstraint("clinic_id", "source_sha256"),
        sa.UniqueConstraint("clinic_id", "id"),
        sa.Index("ix_photo_clinic_patient", "clinic_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    patient_id: Mapped[int]
    visit_id: Mapped[int | None]
    sha256: Mapped[str] = mapped_column(SHA256, sa.ForeignKey("blob.sha256"), index=True)
    source_sha256: Mapped[str] = mapped_column(SHA256)
    format: Mapped[str] = mapped_column(sa.String(16))
    width: Mapped[int]
    height: Mapped[int]
    byte_size: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Analysis(Base):
    """The result of one pipeline version on one photo. Re-scoring with a new pipeline version
    adds a row beside the old ones. Scores (0-100, higher is more severe) are copied out of the
    document into indexed columns for listing and sorting."""

    __tablename__ = "analysis"
    __table_args__ = (
        sa.ForeignKeyConstraint(["clinic_id", "photo_id"], ["photo.clinic_id", "photo.id"]),
        sa.UniqueConstraint("photo_id", "pipeline_version"),
        sa.UniqueConstraint("clinic_id", "id"),
        sa.Index("ix_analysis_clinic_score_pigmentation", "clinic_id", "score_pigmentation"),
        sa.Index("ix_analysis_clinic_score_texture", "clinic_id", "score_texture"),
        sa.Index("ix_analysis_clinic_score_wrinkles", "clinic_id", "score_wrinkles"),
        sa.Index("ix_analysis_clinic_score_overall", "clinic_id", "score_overall"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    photo_id: Mapped[int]
    pipeline_version: Mapped[str] = mapped_column(sa.String(64))
    document: Mapped[dict[str, Any]]
    score_pigmentation: Mapped[float | None] = mapped_column(sa.Float)
    score_texture: Mapped[float | None] = mapped_column(sa.Float)
    score_wrinkles: Mapped[float | None] = mapped_column(sa.Float)
    score_overall: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Plan(Base):
    """A suggested (and possibly practitioner-edited) treatment plan: a JSON document whose
    schema version is ``version``, optionally tied to the analysis it was made from."""

    __tablename__ = "plan"
    __table_args__ = (
        _patient_fk(),
        sa.ForeignKeyConstraint(["clinic_id", "analysis_id"], ["analysis.clinic_id", "analysis.id"]),
        sa.Index("ix_plan_clinic_patient", "clinic_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(sa.ForeignKey("clinic.id"))
    patient_id: Mapped[int]
    analysis_id: Mapped[int | None]
    version: Mapped[int]
    document: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Who did what to which object. Never holds personal data: no names, patient codes or
    photo hashes, only ids. ``clinic_id`` is a plain integer so entries outlive what they log."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_clinic_at", "clinic_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    clinic_id: Mapped[int | None]
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[int | None]
