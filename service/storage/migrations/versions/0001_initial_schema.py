"""initial schema: clinic, app_user, api_token, patient, intake, visit, blob, photo, analysis,
plan, audit_log

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Self-contained on purpose: a migration must keep producing the schema of its day, so it never
imports the models.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SHA = sa.String(length=64)


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _patient_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["clinic_id", "patient_id"], ["patient.clinic_id", "patient.id"],
        name=op.f(f"fk_{table}_clinic_id_patient_id_patient"),
    )


def _clinic_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name=op.f(f"fk_{table}_clinic_id_clinic"))


def upgrade() -> None:
    op.create_table(
        "clinic",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic")),
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _clinic_fk("app_user"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    op.create_index(op.f("ix_app_user_clinic_id"), "app_user", ["clinic_id"])
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", SHA, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
        _clinic_fk("api_token"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index(op.f("ix_api_token_clinic_id"), "api_token", ["clinic_id"])
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _clinic_fk("patient"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint("clinic_id", "code", name=op.f("uq_patient_clinic_id_code")),
        sa.UniqueConstraint("clinic_id", "id", name=op.f("uq_patient_clinic_id_id")),
    )
    op.create_table(
        "intake",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _patient_fk("intake"),
        _clinic_fk("intake"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake")),
    )
    op.create_index("ix_intake_clinic_patient", "intake", ["clinic_id", "patient_id"])
    op.create_table(
        "visit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("ingredients", _json(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=True),
        sa.Column("regions", _json(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _patient_fk("visit"),
        _clinic_fk("visit"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit")),
        sa.UniqueConstraint("clinic_id", "id", name=op.f("uq_visit_clinic_id_id")),
    )
    op.create_index("ix_visit_clinic_patient", "visit", ["clinic_id", "patient_id", "visit_date"])
    op.create_table(
        "blob",
        sa.Column("sha256", SHA, nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("touched_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blob")),
    )
    op.create_table(
        "photo",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("sha256", SHA, nullable=False),
        sa.Column("source_sha256", SHA, nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _patient_fk("photo"),
        sa.ForeignKeyConstraint(["clinic_id", "visit_id"], ["visit.clinic_id", "visit.id"],
                                name=op.f("fk_photo_clinic_id_visit_id_visit")),
        _clinic_fk("photo"),
        sa.ForeignKeyConstraint(["sha256"], ["blob.sha256"], name=op.f("fk_photo_sha256_blob")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo")),
        sa.UniqueConstraint("clinic_id", "id", name=op.f("uq_photo_clinic_id_id")),
        sa.UniqueConstraint("clinic_id", "source_sha256", name=op.f("uq_photo_clinic_id_source_sha256")),
    )
    op.create_index("ix_photo_clinic_patient", "photo", ["clinic_id", "patient_id"])
    op.create_index(op.f("ix_photo_sha256"), "photo", ["sha256"])
    op.create_table(
        "analysis",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("pipeline_version", sa.String(length=64), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("score_pigmentation", sa.Float(), nullable=True),
        sa.Column("score_texture", sa.Float(), nullable=True),
        sa.Column("score_wrinkles", sa.Float(), nullable=True),
        sa.Column("score_overall", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["clinic_id", "photo_id"], ["photo.clinic_id", "photo.id"],
                                name=op.f("fk_analysis_clinic_id_photo_id_photo")),
        _clinic_fk("analysis"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis")),
        sa.UniqueConstraint("clinic_id", "id", name=op.f("uq_analysis_clinic_id_id")),
        sa.UniqueConstraint("photo_id", "pipeline_version", name=op.f("uq_analysis_photo_id_pipeline_version")),
    )
    for score in ("pigmentation", "texture", "wrinkles", "overall"):
        op.create_index(f"ix_analysis_clinic_score_{score}", "analysis", ["clinic_id", f"score_{score}"])
    op.create_table(
        "plan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", _json(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["clinic_id", "analysis_id"], ["analysis.clinic_id", "analysis.id"],
                                name=op.f("fk_plan_clinic_id_analysis_id_analysis")),
        _patient_fk("plan"),
        _clinic_fk("plan"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan")),
    )
    op.create_index("ix_plan_clinic_patient", "plan", ["clinic_id", "patient_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_clinic_at", "audit_log", ["clinic_id", "at"])


def downgrade() -> None:
    for table in ("audit_log", "plan", "analysis", "photo", "blob", "visit", "intake", "patient",
                  "api_token", "app_user", "clinic"):
        op.drop_table(table)   # indexes go with their table
