"""The storage functions the HTTP service and the CLI call.

Rules every function here follows:

* **Tenancy**: every function about clinic data takes ``clinic_id`` and filters by it; a row
  of another clinic is indistinguishable from a missing one (``get_*`` return None, functions
  that need an existing row raise :class:`NotFound`). The schema backs this up with composite
  foreign keys (see ``models``).
* **Units of work**: every function that writes commits before it returns (and rolls back
  when it raises), so callers never hold half-done work. ``get_*``/``list_*`` only read.
* **Blobs**: a blob file is created or deleted only while its ``blob`` row is locked
  (``INSERT .. ON CONFLICT DO UPDATE``: a row lock on PostgreSQL, the write lock on SQLite).
  ``add_photo`` takes the lock, writes and fsyncs the blob, inserts the photo row and commits;
  ``erase_patient`` and ``fsck`` take the lock, count the photo rows using the blob, and only
  when there are none delete the file. So an upload and an erasure (or fsck) of the same
  content never interleave into a photo row without its blob. A crash after the blob is written
  and before the commit leaves an orphan blob, which :func:`fsck` finds and removes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipelines.errors import MesoscanError
from service.storage.blobstore import BlobNotFound, BlobStore, sha256_hex
from service.storage.metadata import strip_metadata
from service.storage.models import (
    ROLES, Analysis, ApiToken, AuditLog, Blob, Clinic, Intake, Patient, Photo, Plan, User, Visit, utcnow,
)

SCORE_NAMES = ("pigmentation", "texture", "wrinkles", "overall")


class StorageError(MesoscanError):
    code = "storage_error"


class NotFound(StorageError):
    """No such row in this clinic."""

    code = "not_found"


class Conflict(StorageError):
    """The write would break a uniqueness rule (patient code, same photo, same analysis)."""

    code = "conflict"


class BlobMissing(StorageError):
    """A photo row whose blob is gone: data loss that ``mesoscan fsck`` reports."""

    code = "blob_missing"


def _commit(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _scoped(model, clinic_id: int):
    return sa.select(model).where(model.clinic_id == clinic_id)


def _get(session: Session, model, clinic_id: int, row_id: int):
    return session.scalar(_scoped(model, clinic_id).where(model.id == row_id))


def _require(session: Session, model, clinic_id: int, row_id: int):
    row = _get(session, model, clinic_id, row_id)
    if row is None:
        raise NotFound(f"{model.__tablename__} {row_id} not found")
    return row


def _audit(session: Session, clinic_id: int | None, actor_id: int | None, action: str,
           object_type: str, object_id: int | None) -> AuditLog:
    entry = AuditLog(clinic_id=clinic_id, actor_id=actor_id, action=action,
                     object_type=object_type, object_id=object_id)
    session.add(entry)
    return entry


# --- clinics, users, tokens -----------------------------------------------------------------


def create_clinic(session: Session, name: str) -> Clinic:
    clinic = Clinic(name=name)
    session.add(clinic)
    _commit(session)
    return clinic


def get_clinic(session: Session, clinic_id: int) -> Clinic | None:
    return session.get(Clinic, clinic_id)


def create_user(session: Session, clinic_id: int, email: str, password_hash: str, role: str,
                name: str | None = None) -> User:
    """A user of ``clinic_id``. ``email`` is stored lower-cased and is unique across clinics;
    hashing the password is the caller's job (only the hash is stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    _require_clinic(session, clinic_id)
    user = User(clinic_id=clinic_id, email=email.strip().lower(), password_hash=password_hash, role=role, name=name)
    session.add(user)
    try:
        _commit(session)
    except IntegrityError:
        raise Conflict("a user with this email already exists") from None
    return user


def get_user(session: Session, clinic_id: int, user_id: int) -> User | None:
    return _get(session, User, clinic_id, user_id)


def get_user_by_email(session: Session, email: str) -> User | None:
    """The login look-up: not scoped, since the email identifies the user (and their clinic)."""
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def set_user_password(session: Session, clinic_id: int, user_id: int, password_hash: str) -> User:
    """Replace a user's password hash (hashing is the caller's job)."""
    user = _require(session, User, clinic_id, user_id)
    user.password_hash = password_hash
    _commit(session)
    return user


def list_users(session: Session, clinic_id: int) -> list[User]:
    return list(session.scalars(_scoped(User, clinic_id).order_by(User.id)))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, clinic_id: int, name: str) -> tuple[ApiToken, str]:
    """A new API token: returns the row and the token itself, which is shown once and never
    stored (only its SHA-256 is)."""
    _require_clinic(session, clinic_id)
    token = "msk_" + secrets.token_urlsafe(32)
    row = ApiToken(clinic_id=clinic_id, name=name, token_hash=hash_token(token))
    session.add(row)
    _commit(session)
    return row, token


# ``last_used_at`` is recorded to this granularity: writing it on every request made each API
# read a database write (an fsync on SQLite, and a wait for the write lock behind uploads).
TOKEN_TOUCH_INTERVAL = dt.timedelta(seconds=60)


def authenticate_api_token(session: Session, token: str, *, touch: bool = True) -> ApiToken | None:
    """The live (not revoked) token row for ``token``, or None. With ``touch``, records its
    use in ``last_used_at`` (committed) when the recorded use is older than
    :data:`TOKEN_TOUCH_INTERVAL`."""
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                                   ApiToken.revoked_at.is_(None)))
    if row is not None and touch:
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at >= TOKEN_TOUCH_INTERVAL:
            row.last_used_at = now
            _commit(session)
    return row


def list_api_tokens(session: Session, clinic_id: int) -> list[ApiToken]:
    return list(session.scalars(_scoped(ApiToken, clinic_id).order_by(ApiToken.id)))


def revoke_api_token(session: Session, clinic_id: int, token_id: int) -> ApiToken:
    row = _require(session, ApiToken, clinic_id, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        _commit(session)
    return row


def _require_clinic(session: Session, clinic_id: int) -> Clinic:
    clinic = session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound(f"clinic {clinic_id} not found")
    return clinic


# --- patients, intakes, visits ----------------------------------------------------------------


def create_patient(session: Session, clinic_id: int, code: str, name: str | None = None) -> Patient:
    """A patient known by ``code`` (pseudonymous, unique in the clinic); ``name`` is optional."""
    code = code.strip()
    if not code:
        raise ValueError("patient code must not be empty")
    _require_clinic(session, clinic_id)
    patient = Patient(clinic_id=clinic_id, code=code, name=name)
    session.add(patient)
    try:
        _commit(session)
    except IntegrityError:
        raise Conflict("a patient with this code already exists in the clinic") from None
    return patient


def get_patient(session: Session, clinic_id: int, patient_id: int) -> Patient | None:
    return _get(session, Patient, clinic_id, patient_id)


def get_patient_by_code(session: Session, clinic_id: int, code: str) -> Patient | None:
    return session.scalar(_scoped(Patient, clinic_id).where(Patient.code == code.strip()))


def list_patients(session: Session, clinic_id: int, *, limit: int | None = None, offset: int = 0,
                  search: str | None = None, after: tuple[str, int] | None = None) -> list[Patient]:
    """Patients in ``(code, id)`` order. ``search``: case-insensitive substring of the code or
    the name; ``after``: keyset pagination, the rows after this ``(code, id)``."""
    q = _scoped(Patient, clinic_id)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(sa.or_(Patient.code.ilike(pattern, escape="\\"), Patient.name.ilike(pattern, escape="\\")))
    if after is not None:
        code, last_id = after
        q = q.where(sa.or_(Patient.code > code, sa.and_(Patient.code == code, Patient.id > last_id)))
    q = q.order_by(Patient.code, Patient.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def update_patient(session: Session, clinic_id: int, patient_id: int, *, name: str | None) -> Patient:
    """Set (or with None clear) a patient's name."""
    patient = _require(session, Patient, clinic_id, patient_id)
    patient.name = name
    _commit(session)
    return patient


def add_intake(session: Session, clinic_id: int, patient_id: int, document: Mapping[str, Any],
               version: int) -> Intake:
    """Record an intake (a JSON document of schema ``version``); older ones stay as history."""
    _require(session, Patient, clinic_id, patient_id)
    intake = Intake(clinic_id=clinic_id, patient_id=patient_id, document=dict(document), version=version)
    session.add(intake)
    _commit(session)
    return intake


def latest_intake(session: Session, clinic_id: int, patient_id: int) -> Intake | None:
    return session.scalar(_scoped(Intake, clinic_id).where(Intake.patient_id == patient_id)
                          .order_by(Intake.created_at.desc(), Intake.id.desc()).limit(1))


def list_intakes(session: Session, clinic_id: int, patient_id: int) -> list[Intake]:
    return list(session.scalars(_scoped(Intake, clinic_id).where(Intake.patient_id == patient_id)
                                .order_by(Intake.created_at, Intake.id)))


def add_visit(session: Session, clinic_id: int, patient_id: int, visit_date: dt.date, *,
              ingredients: Sequence[str] = (), device: str | None = None,
              regions: Sequence[str] = (), notes: str | None = None) -> Visit:
    """Record a treatment session: its date and what was given (ingredients, device, regions)."""
    _require(session, Patient, clinic_id, patient_id)
    visit = Visit(clinic_id=clinic_id, patient_id=patient_id, visit_date=visit_date,
                  ingredients=list(ingredients), device=device, regions=list(regions), notes=notes)
    session.add(visit)
    _commit(session)
    return visit


def get_visit(session: Session, clinic_id: int, visit_id: int) -> Visit | None:
    return _get(session, Visit, clinic_id, visit_id)


def list_visits(session: Session, clinic_id: int, patient_id: int) -> list[Visit]:
    return list(session.scalars(_scoped(Visit, clinic_id).where(Visit.patient_id == patient_id)
                                .order_by(Visit.visit_date, Visit.id)))


# --- photos -----------------------------------------------------------------------------------


class PhotoResult(NamedTuple):
    photo: Photo
    created: bool   # False: the same file had been uploaded for this patient before


def _lock_blob(session: Session, sha: str, byte_size: int) -> None:
    """Create-or-touch the ``blob`` row, which locks it until the transaction ends."""
    now = utcnow()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = insert(Blob).values(sha256=sha, byte_size=byte_size, created_at=now, touched_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=[Blob.sha256], set_={"touched_at": stmt.excluded.touched_at})
    session.execute(stmt)


def find_photo_by_source(session: Session, clinic_id: int, source_sha256: str) -> Photo | None:
    return session.scalar(_scoped(Photo, clinic_id).where(Photo.source_sha256 == source_sha256))


def add_photo(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, data: bytes, *,
              visit_id: int | None = None) -> PhotoResult:
    """Store an uploaded photo of a patient.

    The stored copy has its location, serial-number and other identifying metadata removed
    (``metadata.strip_metadata``; raises ``ImageRejected`` for files that are not a readable
    photo). Order: strip -> lock the blob row -> write and fsync the blob -> insert the photo
    row -> commit. The same file uploaded again for the same patient returns the existing photo
    (``created=False``); for another patient of the clinic it raises :class:`Conflict`.
    """
    _require(session, Patient, clinic_id, patient_id)
    if visit_id is not None:
        visit = _require(session, Visit, clinic_id, visit_id)
        if visit.patient_id != patient_id:
            raise Conflict("the visit belongs to another patient")
    source_sha = sha256_hex(data)
    existing = find_photo_by_source(session, clinic_id, source_sha)
    if existing is not None:
        return _same_upload(existing, patient_id)
    stripped = strip_metadata(data)
    sha = sha256_hex(stripped.data)
    try:
        _lock_blob(session, sha, len(stripped.data))
        key = blobs.put(stripped.data)
        if key != sha:
            raise StorageError(f"blob store returned key {key} for content {sha}")
        photo = Photo(clinic_id=clinic_id, patient_id=patient_id, visit_id=visit_id, sha256=sha,
                      source_sha256=source_sha, format=stripped.format, width=stripped.width,
                      height=stripped.height, byte_size=len(stripped.data))
        session.add(photo)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find_photo_by_source(session, clinic_id, source_sha)   # a concurrent upload won
        if existing is None:
            raise
        return _same_upload(existing, patient_id)
    except BaseException:
        session.rollback()
        raise
    return PhotoResult(photo, True)


def _same_upload(existing: Photo, patient_id: int) -> PhotoResult:
    if existing.patient_id != patient_id:
        raise Conflict("this photo was already uploaded for another patient of the clinic")
    return PhotoResult(existing, False)


def get_photo(session: Session, clinic_id: int, photo_id: int) -> Photo | None:
    return _get(session, Photo, clinic_id, photo_id)


def list_photos(session: Session, clinic_id: int, *, patient_id: int | None = None,
                visit_id: int | None = None) -> list[Photo]:
    q = _scoped(Photo, clinic_id)
    if patient_id is not None:
        q = q.where(Photo.patient_id == patient_id)
    if visit_id is not None:
        q = q.where(Photo.visit_id == visit_id)
    return list(session.scalars(q.order_by(Photo.created_at, Photo.id)))


def read_photo(session: Session, blobs: BlobStore, clinic_id: int, photo_id: int) -> bytes:
    """The stored (stripped) bytes of a photo of this clinic."""
    photo = _require(session, Photo, clinic_id, photo_id)
    try:
        return blobs.get(photo.sha256)
    except BlobNotFound:
        raise BlobMissing(f"the stored file of photo {photo_id} is missing") from None


# --- analyses and plans -----------------------------------------------------------------------


def _scores_from(document: Mapping[str, Any], scores: Mapping[str, float | None] | None) -> dict[str, float | None]:
    source = scores if scores is not None else (document.get("scores") or {})
    out = {}
    for name in SCORE_NAMES:
        value = source.get(name) if isinstance(source, Mapping) else None
        if isinstance(value, Mapping):          # {"score": 42.0, ...} shapes
            value = value.get("score", value.get("value"))
        out[name] = None if value is None else float(value)
    return out


def add_analysis(session: Session, clinic_id: int, photo_id: int, pipeline_version: str,
                 document: Mapping[str, Any], *, scores: Mapping[str, float | None] | None = None,
                 replace: bool = False) -> Analysis:
    """Store the result of ``pipeline_version`` on a photo. A new pipeline version adds a row
    beside the old ones. The scores go to indexed columns; without ``scores`` they are read
    from ``document["scores"][name]`` (a number or ``{"score": n}``). The same version again
    raises :class:`Conflict`, or with ``replace`` overwrites that row."""
    _require(session, Photo, clinic_id, photo_id)
    values = {f"score_{k}": v for k, v in _scores_from(document, scores).items()}
    existing = session.scalar(_scoped(Analysis, clinic_id).where(
        Analysis.photo_id == photo_id, Analysis.pipeline_version == pipeline_version))
    if existing is not None:
        if not replace:
            raise Conflict(f"photo {photo_id} already has an analysis by pipeline {pipeline_version}")
        existing.document = dict(document)
        for k, v in values.items():
            setattr(existing, k, v)
        existing.created_at = utcnow()
        _commit(session)
        return existing
    analysis = Analysis(clinic_id=clinic_id, photo_id=photo_id, pipeline_version=pipeline_version,
                        document=dict(document), **values)
    session.add(analysis)
    try:
        _commit(session)
    except IntegrityError:
        raise Conflict(f"photo {photo_id} already has an analysis by pipeline {pipeline_version}") from None
    return analysis


def get_analysis(session: Session, clinic_id: int, analysis_id: int) -> Analysis | None:
    return _get(session, Analysis, clinic_id, analysis_id)


def list_analyses(session: Session, clinic_id: int, *, photo_id: int | None = None,
                  patient_id: int | None = None, pipeline_version: str | None = None) -> list[Analysis]:
    q = _scoped(Analysis, clinic_id)
    if photo_id is not None:
        q = q.where(Analysis.photo_id == photo_id)
    if patient_id is not None:
        q = q.where(Analysis.photo_id.in_(sa.select(Photo.id).where(Photo.clinic_id == clinic_id,
                                                                    Photo.patient_id == patient_id)))
    if pipeline_version is not None:
        q = q.where(Analysis.pipeline_version == pipeline_version)
    return list(session.scalars(q.order_by(Analysis.created_at, Analysis.id)))


def latest_analysis(session: Session, clinic_id: int, photo_id: int) -> Analysis | None:
    return session.scalar(_scoped(Analysis, clinic_id).where(Analysis.photo_id == photo_id)
                          .order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(1))


def add_plan(session: Session, clinic_id: int, patient_id: int, document: Mapping[str, Any], version: int, *,
             analysis_id: int | None = None) -> Plan:
    """Store a plan (a JSON document of schema ``version``), optionally tied to the analysis of
    one of this patient's photos."""
    _require(session, Patient, clinic_id, patient_id)
    if analysis_id is not None:
        analysis = _require(session, Analysis, clinic_id, analysis_id)
        owner = session.scalar(sa.select(Photo.patient_id).where(Photo.id == analysis.photo_id))
        if owner != patient_id:
            raise Conflict("the analysis is of another patient's photo")
    plan = Plan(clinic_id=clinic_id, patient_id=patient_id, analysis_id=analysis_id,
                document=dict(document), version=version)
    session.add(plan)
    _commit(session)
    return plan


def get_plan(session: Session, clinic_id: int, plan_id: int) -> Plan | None:
    return _get(session, Plan, clinic_id, plan_id)


def list_plans(session: Session, clinic_id: int, patient_id: int) -> list[Plan]:
    return list(session.scalars(_scoped(Plan, clinic_id).where(Plan.patient_id == patient_id)
                                .order_by(Plan.created_at, Plan.id)))


# --- audit ------------------------------------------------------------------------------------


def record_audit(session: Session, clinic_id: int | None, actor_id: int | None, action: str,
                 object_type: str, object_id: int | None) -> AuditLog:
    """Append to the audit log. Ids only: never put names, codes or hashes in ``action``."""
    entry = _audit(session, clinic_id, actor_id, action, object_type, object_id)
    _commit(session)
    return entry


def list_audit(session: Session, clinic_id: int, *, limit: int = 100) -> list[AuditLog]:
    return list(session.scalars(_scoped(AuditLog, clinic_id).order_by(AuditLog.at.desc(), AuditLog.id.desc())
                                .limit(limit)))


# --- erasure ----------------------------------------------------------------------------------


@dataclass
class ErasureReport:
    patient_id: int
    photos: int = 0
    analyses: int = 0
    plans: int = 0
    visits: int = 0
    intakes: int = 0
    blobs_deleted: int = 0
    blobs_kept: int = 0          # still used by another photo row (same content elsewhere)
    audit_id: int | None = None


def _delete_unreferenced_blobs(session: Session, blobs: BlobStore, shas: Iterable[str]) -> tuple[list[str], list[str]]:
    """For each blob: lock its row; if no photo row uses it, delete the file, then the row.
    One short transaction per blob, in sorted order (no lock-order deadlocks)."""
    deleted, kept = [], []
    for sha in sorted(set(shas)):
        try:
            _lock_blob(session, sha, 0)
            refs = session.scalar(sa.select(sa.func.count()).select_from(Photo).where(Photo.sha256 == sha))
            if refs:
                kept.append(sha)
            else:
                blobs.delete(sha)
                session.execute(sa.delete(Blob).where(Blob.sha256 == sha))
                deleted.append(sha)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return deleted, kept


def _sqlite_truncate_wal(session: Session) -> None:
    """Checkpoint and empty the SQLite WAL, so no copy of erased rows lingers in it (the main
    file's freed space is zeroed by ``secure_delete``)."""
    engine = session.get_bind()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def erase_patient(session: Session, blobs: BlobStore, clinic_id: int, patient_id: int, *,
                  actor_id: int | None = None) -> ErasureReport:
    """Right to erasure: delete the patient with their intakes, visits, photos, analyses and
    plans, and every photo blob no other row uses; record ``patient.erase`` in the audit log
    with ids only.

    The rows and the audit entry go in one transaction; the blobs after it, each under its
    lock. A crash in between leaves unreferenced blobs that ``fsck --remove`` deletes.
    """
    _require(session, Patient, clinic_id, patient_id)
    report = ErasureReport(patient_id=patient_id)
    photo_ids = sa.select(Photo.id).where(Photo.clinic_id == clinic_id, Photo.patient_id == patient_id)
    try:
        shas = set(session.scalars(sa.select(Photo.sha256).where(Photo.clinic_id == clinic_id,
                                                                 Photo.patient_id == patient_id)))
        report.plans = session.execute(sa.delete(Plan).where(
            Plan.clinic_id == clinic_id, Plan.patient_id == patient_id)).rowcount
        report.analyses = session.execute(sa.delete(Analysis).where(
            Analysis.clinic_id == clinic_id, Analysis.photo_id.in_(photo_ids))).rowcount
        report.photos = session.execute(sa.delete(Photo).where(
            Photo.clinic_id == clinic_id, Photo.patient_id == patient_id)).rowcount
        report.visits = session.execute(sa.delete(Visit).where(
            Visit.clinic_id == clinic_id, Visit.patient_id == patient_id)).rowcount
        report.intakes = session.execute(sa.delete(Intake).where(
            Intake.clinic_id == clinic_id, Intake.patient_id == patient_id)).rowcount
        session.execute(sa.delete(Patient).where(Patient.clinic_id == clinic_id, Patient.id == patient_id))
        entry = _audit(session, clinic_id, actor_id, "patient.erase", "patient", patient_id)
        session.flush()
        report.audit_id = entry.id
        session.commit()
    except BaseException:
        session.rollback()
        raise
    deleted, kept = _delete_unreferenced_blobs(session, blobs, shas)
    report.blobs_deleted, report.blobs_kept = len(deleted), len(kept)
    _sqlite_truncate_wal(session)
    return report


# --- fsck -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingBlob:
    photo_id: int
    clinic_id: int
    sha256: str


@dataclass
class FsckReport:
    blobs_on_disk: int = 0
    photo_rows: int = 0
    orphan_blobs: list[str] = field(default_factory=list)       # blob, no photo row uses it
    removed_blobs: list[str] = field(default_factory=list)
    missing_blobs: list[MissingBlob] = field(default_factory=list)   # photo row, blob gone
    dangling_blob_rows: list[str] = field(default_factory=list)  # blob row, no file, no photo
    removed_blob_rows: list[str] = field(default_factory=list)
    stale_temp_files: list[str] = field(default_factory=list)    # interrupted puts
    removed_temp_files: list[str] = field(default_factory=list)
    corrupt_blobs: list[str] = field(default_factory=list)       # content != key (verify)

    @property
    def clean(self) -> bool:
        """No problem left: nothing missing or corrupt, every orphan removed."""
        return (not self.missing_blobs and not self.corrupt_blobs
                and set(self.orphan_blobs) <= set(self.removed_blobs)
                and set(self.dangling_blob_rows) <= set(self.removed_blob_rows)
                and set(self.stale_temp_files) <= set(self.removed_temp_files))

    def to_dict(self) -> dict:
        return {
            "clean": self.clean, "blobs_on_disk": self.blobs_on_disk, "photo_rows": self.photo_rows,
            "orphan_blobs": self.orphan_blobs, "removed_blobs": self.removed_blobs,
            "missing_blobs": [vars(m) for m in self.missing_blobs],
            "dangling_blob_rows": self.dangling_blob_rows, "removed_blob_rows": self.removed_blob_rows,
            "stale_temp_files": self.stale_temp_files, "removed_temp_files": self.removed_temp_files,
            "corrupt_blobs": self.corrupt_blobs,
        }


def fsck(session: Session, blobs: BlobStore, *, remove: bool = False, verify: bool = False,
         temp_grace_s: float = 3600.0) -> FsckReport:
    """Check that blobs and photo rows match, across all clinics.

    Finds orphan blobs (no photo row uses them: a crash between blob write and commit, or
    between an erasure's commit and its blob deletion), photo rows whose blob is missing (data
    loss: reported, cannot be repaired here), blob rows with neither file nor photo, temporary
    files of interrupted writes older than ``temp_grace_s``, and with ``verify`` blobs whose
    content no longer hashes to their key. With ``remove``, deletes the orphans (each under its
    blob lock, re-checked, so a concurrent upload of the same content is safe), the dangling
    rows and the stale temporary files.
    """
    report = FsckReport()
    on_disk = set(blobs.iter_keys())                      # listed before the rows are read
    report.blobs_on_disk = len(on_disk)
    referenced = set(session.scalars(sa.select(Photo.sha256).distinct()))
    report.photo_rows = session.scalar(sa.select(sa.func.count()).select_from(Photo)) or 0
    blob_rows = set(session.scalars(sa.select(Blob.sha256)))
    session.rollback()                                    # end the read transaction

    report.orphan_blobs = sorted(on_disk - referenced)
    report.dangling_blob_rows = sorted(blob_rows - referenced - on_disk)
    gone = [sha for sha in sorted(referenced - on_disk) if not blobs.exists(sha)]   # re-check: new uploads
    for chunk_start in range(0, len(gone), 500):
        chunk = gone[chunk_start:chunk_start + 500]
        rows = session.execute(sa.select(Photo.id, Photo.clinic_id, Photo.sha256)
                               .where(Photo.sha256.in_(chunk)).order_by(Photo.id))
        report.missing_blobs.extend(MissingBlob(r.id, r.clinic_id, r.sha256) for r in rows)
    session.rollback()

    if remove:
        deleted, _kept = _delete_unreferenced_blobs(session, blobs, report.orphan_blobs)
        report.removed_blobs = deleted
        rows_deleted, _ = _delete_unreferenced_blobs(session, blobs, report.dangling_blob_rows)
        report.removed_blob_rows = rows_deleted

    stale = getattr(blobs, "stale_temp_files", None)
    if stale is not None:
        temps = stale(temp_grace_s)
        report.stale_temp_files = [str(p) for p in temps]
        if remove:
            for p in temps:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                report.removed_temp_files.append(str(p))

    if verify:
        check = getattr(blobs, "verify", None) or (lambda key: sha256_hex(blobs.get(key)) == key)
        for key in sorted(on_disk - set(report.removed_blobs)):
            try:
                if not check(key):
                    report.corrupt_blobs.append(key)
            except (BlobNotFound, FileNotFoundError):
                pass
    return report
