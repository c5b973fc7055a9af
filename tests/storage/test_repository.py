import datetime as dt
import io

import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.exc import IntegrityError

from service.storage import models as m
from service.storage import repository as repo
from service.storage.blobstore import sha256_hex
from service.storage.db import sqlite_journal_mode
from service.storage.metadata import strip_metadata

from . import images

DOC = {"schema": "mesoscan.analysis/1", "scores": {"pigmentation": 31.5, "texture": {"score": 12.0},
                                                   "wrinkles": 55.0, "overall": 40.0}}


def test_sqlite_database_is_in_wal_mode(db):
    if db.backend != "sqlite":
        pytest.skip("SQLite only")
    assert sqlite_journal_mode(db.engine) == "wal"
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_patient_codes_unique_per_clinic(session):
    a = repo.create_clinic(session, "A")
    b = repo.create_clinic(session, "B")
    repo.create_patient(session, a.id, "P-1", name="Ann Example")
    with pytest.raises(repo.Conflict):
        repo.create_patient(session, a.id, "P-1")
    assert repo.create_patient(session, b.id, "P-1").clinic_id == b.id   # same code elsewhere is fine
    with pytest.raises(repo.NotFound):
        repo.create_patient(session, 999_999, "P-2")


def test_users_and_api_tokens(session):
    c = repo.create_clinic(session, "A")
    u = repo.create_user(session, c.id, " Doc@Example.org ", "argon2$hash", "practitioner")
    assert u.email == "doc@example.org"
    assert repo.get_user_by_email(session, "DOC@example.org").id == u.id
    with pytest.raises(repo.Conflict):
        repo.create_user(session, c.id, "doc@example.org", "h", "admin")
    with pytest.raises(ValueError):
        repo.create_user(session, c.id, "x@example.org", "h", "superuser")
    row, token = repo.create_api_token(session, c.id, "tablet 1")
    assert token not in repr(row.__dict__) and row.token_hash == sha256_hex(token.encode())
    found = repo.authenticate_api_token(session, token)
    assert found.id == row.id and found.last_used_at is not None
    assert found.created_at.tzinfo is not None          # aware UTC on every database
    first_use = found.last_used_at
    assert repo.authenticate_api_token(session, token).last_used_at == first_use   # within the interval: no write
    found.last_used_at = first_use - repo.TOKEN_TOUCH_INTERVAL
    session.commit()
    assert repo.authenticate_api_token(session, token).last_used_at > first_use - repo.TOKEN_TOUCH_INTERVAL
    assert repo.authenticate_api_token(session, token + "x") is None
    repo.revoke_api_token(session, c.id, row.id)
    assert repo.authenticate_api_token(session, token) is None


def test_add_photo_stores_stripped_copy_and_describes_it(db, session):
    c = repo.create_clinic(session, "A")
    p = repo.create_patient(session, c.id, "P-1")
    src = images.jpeg_with_metadata(orientation=6)
    photo, created = repo.add_photo(session, db.blobs, c.id, p.id, src)
    assert created
    stored = repo.read_photo(session, db.blobs, c.id, photo.id)
    assert stored == strip_metadata(src).data
    assert photo.sha256 == sha256_hex(stored) and photo.source_sha256 == sha256_hex(src)
    assert (photo.format, photo.width, photo.height, photo.byte_size) == ("jpeg", 48, 64, len(stored))
    assert not any(s in stored for s in images.SECRETS)
    with Image.open(io.BytesIO(stored)) as im:
        assert not im.getexif().get_ifd(0x8825)
    assert list(db.blobs.iter_keys()) == [photo.sha256]


def test_same_upload_is_recognised(db, session):
    c = repo.create_clinic(session, "A")
    p1 = repo.create_patient(session, c.id, "P-1")
    p2 = repo.create_patient(session, c.id, "P-2")
    data = images.plain_jpeg(1)
    first, created = repo.add_photo(session, db.blobs, c.id, p1.id, data)
    again, created_again = repo.add_photo(session, db.blobs, c.id, p1.id, data)
    assert created and not created_again and again.id == first.id
    with pytest.raises(repo.Conflict):
        repo.add_photo(session, db.blobs, c.id, p2.id, data)
    assert len(repo.list_photos(session, c.id)) == 1


def test_visit_intake_plan_and_analyses_round_trip(db, session):
    c = repo.create_clinic(session, "A")
    p = repo.create_patient(session, c.id, "P-1")
    v = repo.add_visit(session, c.id, p.id, dt.date(2026, 3, 2), ingredients=["hyaluronic acid", "vitamin C"],
                       device="LB212", regions=["forehead", "cheek_l"], notes="patch test ok")
    repo.add_intake(session, c.id, p.id, {"allergies": []}, version=1)
    newest = repo.add_intake(session, c.id, p.id, {"allergies": ["lidocaine"]}, version=1)
    photo, _ = repo.add_photo(session, db.blobs, c.id, p.id, images.plain_jpeg(2), visit_id=v.id)
    a1 = repo.add_analysis(session, c.id, photo.id, "0.1.0", DOC)
    a2 = repo.add_analysis(session, c.id, photo.id, "0.2.0", DOC, scores={"overall": 20})
    with pytest.raises(repo.Conflict):
        repo.add_analysis(session, c.id, photo.id, "0.1.0", DOC)
    replaced = repo.add_analysis(session, c.id, photo.id, "0.1.0", {"scores": {"overall": 1}}, replace=True)
    plan = repo.add_plan(session, c.id, p.id, {"ingredients": ["hyaluronic acid"]}, version=1, analysis_id=a2.id)

    session.expunge_all()
    visit = repo.get_visit(session, c.id, v.id)
    assert visit.visit_date == dt.date(2026, 3, 2) and visit.ingredients == ["hyaluronic acid", "vitamin C"]
    assert visit.regions == ["forehead", "cheek_l"] and visit.device == "LB212"
    assert repo.latest_intake(session, c.id, p.id).id == newest.id
    assert sorted(x.pipeline_version for x in repo.list_analyses(session, c.id, photo_id=photo.id)) == ["0.1.0", "0.2.0"]
    assert repo.latest_analysis(session, c.id, photo.id).id == a1.id   # replaced last
    got = repo.get_analysis(session, c.id, a1.id)
    assert replaced.id == a1.id and got.score_overall == 1 and got.score_pigmentation is None
    got2 = repo.get_analysis(session, c.id, a2.id)
    assert (got2.score_pigmentation, got2.score_texture, got2.score_overall) == (None, None, 20)
    assert repo.add_analysis(session, c.id, photo.id, "0.3.0", DOC).score_texture == 12.0
    assert repo.list_photos(session, c.id, visit_id=v.id)[0].id == photo.id
    assert repo.get_plan(session, c.id, plan.id).document == {"ingredients": ["hyaluronic acid"]}
    # scores are queryable through the indexed columns
    worst = session.scalars(sa.select(m.Analysis).where(m.Analysis.clinic_id == c.id)
                            .order_by(m.Analysis.score_wrinkles.desc().nulls_last())).first()
    assert worst.score_wrinkles == 55.0


def _populate(session, blobs, name, seed):
    c = repo.create_clinic(session, name)
    u = repo.create_user(session, c.id, f"{name}@example.org", "h", "admin")
    p = repo.create_patient(session, c.id, "SAME-CODE", name=f"Patient of {name}")
    v = repo.add_visit(session, c.id, p.id, dt.date(2026, 1, 1))
    i = repo.add_intake(session, c.id, p.id, {"q": 1}, version=1)
    ph, _ = repo.add_photo(session, blobs, c.id, p.id, images.plain_jpeg(seed), visit_id=v.id)
    a = repo.add_analysis(session, c.id, ph.id, "0.1.0", DOC)
    pl = repo.add_plan(session, c.id, p.id, {"x": 1}, version=1, analysis_id=a.id)
    tok, _ = repo.create_api_token(session, c.id, "tablet")
    repo.record_audit(session, c.id, u.id, "photo.upload", "photo", ph.id)
    return dict(clinic=c, user=u, patient=p, visit=v, intake=i, photo=ph, analysis=a, plan=pl, token=tok)


def test_tenancy_clinic_a_never_sees_clinic_b(db, session):
    A = _populate(session, db.blobs, "a", 10)
    B = _populate(session, db.blobs, "b", 11)
    a, b = A["clinic"].id, B["clinic"].id
    for mine, theirs in ((a, B), (b, A)):
        # lookups by the other clinic's ids find nothing
        assert repo.get_patient(session, mine, theirs["patient"].id) is None
        assert repo.get_visit(session, mine, theirs["visit"].id) is None
        assert repo.get_photo(session, mine, theirs["photo"].id) is None
        assert repo.get_analysis(session, mine, theirs["analysis"].id) is None
        assert repo.get_plan(session, mine, theirs["plan"].id) is None
        assert repo.get_user(session, mine, theirs["user"].id) is None
        # listings never include the other clinic's rows, even with its patient id
        assert repo.list_visits(session, mine, theirs["patient"].id) == []
        assert repo.list_intakes(session, mine, theirs["patient"].id) == []
        assert repo.latest_intake(session, mine, theirs["patient"].id) is None
        assert repo.list_plans(session, mine, theirs["patient"].id) == []
        assert repo.list_photos(session, mine, patient_id=theirs["patient"].id) == []
        assert repo.list_analyses(session, mine, patient_id=theirs["patient"].id) == []
        assert repo.list_analyses(session, mine, photo_id=theirs["photo"].id) == []
        assert repo.latest_analysis(session, mine, theirs["photo"].id) is None
        for rows in (repo.list_patients(session, mine), repo.list_photos(session, mine),
                     repo.list_analyses(session, mine), repo.list_users(session, mine),
                     repo.list_api_tokens(session, mine), repo.list_audit(session, mine)):
            assert rows and all(r.clinic_id == mine for r in rows)
        assert repo.get_patient_by_code(session, mine, "SAME-CODE").clinic_id == mine
        with pytest.raises(repo.NotFound):
            repo.read_photo(session, db.blobs, mine, theirs["photo"].id)
        # writes that name the other clinic's rows are refused
        with pytest.raises(repo.NotFound):
            repo.add_visit(session, mine, theirs["patient"].id, dt.date(2026, 2, 1))
        with pytest.raises(repo.NotFound):
            repo.add_photo(session, db.blobs, mine, theirs["patient"].id, images.plain_jpeg(99))
        with pytest.raises(repo.NotFound):
            repo.add_analysis(session, mine, theirs["photo"].id, "9.9", DOC)
        with pytest.raises(repo.NotFound):
            repo.add_plan(session, mine, theirs["patient"].id, {}, 1)
        with pytest.raises(repo.NotFound):
            repo.erase_patient(session, db.blobs, mine, theirs["patient"].id)
        with pytest.raises(repo.NotFound):
            repo.revoke_api_token(session, mine, theirs["token"].id)
    assert repo.get_patient(session, a, A["patient"].id) is not None   # nothing was erased


def test_schema_refuses_cross_clinic_rows(db, session):
    A = _populate(session, db.blobs, "a", 20)
    B = _populate(session, db.blobs, "b", 21)
    bad = [
        m.Visit(clinic_id=A["clinic"].id, patient_id=B["patient"].id, visit_date=dt.date(2026, 1, 1)),
        m.Analysis(clinic_id=A["clinic"].id, photo_id=B["photo"].id, pipeline_version="x", document={}),
        m.Plan(clinic_id=A["clinic"].id, patient_id=A["patient"].id, analysis_id=B["analysis"].id,
               version=1, document={}),
    ]
    for row in bad:
        session.add(row)
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()


def test_photo_shared_by_two_clinics_is_one_blob(db, session):
    data = images.plain_jpeg(30)
    ca, cb = repo.create_clinic(session, "A"), repo.create_clinic(session, "B")
    pa, pb = repo.create_patient(session, ca.id, "A-1"), repo.create_patient(session, cb.id, "B-1")
    fa, _ = repo.add_photo(session, db.blobs, ca.id, pa.id, data)
    fb, created = repo.add_photo(session, db.blobs, cb.id, pb.id, data)
    assert created and fa.id != fb.id and fa.sha256 == fb.sha256
    assert len(list(db.blobs.iter_keys())) == 1


def dump_database(engine) -> str:
    """Every row of every table, as text."""
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                out.append(f"{table}: {tuple(row)!r}")
    return "\n".join(out)


def test_erasure_removes_every_trace(db, session):
    c = repo.create_clinic(session, "Clinic")
    actor = repo.create_user(session, c.id, "doc@example.org", "h", "practitioner")
    keep = repo.create_patient(session, c.id, "KEEP-0001", name="Kept Person")
    keep_photo, _ = repo.add_photo(session, db.blobs, c.id, keep.id, images.plain_jpeg(40))
    code, name = "ERASE-7Q9Z", "Zelda Erasable"
    p = repo.create_patient(session, c.id, code, name=name)
    v = repo.add_visit(session, c.id, p.id, dt.date(2026, 4, 1), ingredients=["HA"], notes="NOTE-ERASE-ME")
    repo.add_intake(session, c.id, p.id, {"history": "INTAKE-ERASE-ME"}, version=1)
    uploads = [images.jpeg_with_metadata(41), images.plain_jpeg(42)]
    photos = [repo.add_photo(session, db.blobs, c.id, p.id, data, visit_id=v.id).photo for data in uploads]
    a = repo.add_analysis(session, c.id, photos[0].id, "0.1.0", {"scores": {"overall": 3}, "tag": "DOC-ERASE-ME"})
    repo.add_analysis(session, c.id, photos[0].id, "0.2.0", DOC)
    repo.add_plan(session, c.id, p.id, {"plan": "PLAN-ERASE-ME"}, version=1, analysis_id=a.id)
    traces = [code, name, "NOTE-ERASE-ME", "INTAKE-ERASE-ME", "DOC-ERASE-ME", "PLAN-ERASE-ME"]
    traces += [ph.sha256 for ph in photos] + [ph.source_sha256 for ph in photos]
    dump = dump_database(db.engine)
    assert all(t in dump for t in traces)              # the check below can see them

    report = repo.erase_patient(session, db.blobs, c.id, p.id, actor_id=actor.id)

    assert (report.photos, report.analyses, report.plans, report.visits, report.intakes) == (2, 2, 1, 1, 1)
    assert (report.blobs_deleted, report.blobs_kept) == (2, 0)
    assert repo.get_patient(session, c.id, p.id) is None
    for ph in photos:
        assert not db.blobs.exists(ph.sha256)
    assert set(db.blobs.iter_keys()) == {keep_photo.sha256}
    dump = dump_database(db.engine)
    leaked = [t for t in traces if t in dump]
    assert not leaked, f"erased data still in the database: {leaked}"
    assert "KEEP-0001" in dump and keep_photo.sha256 in dump   # the other patient is untouched
    entry = session.get(m.AuditLog, report.audit_id)
    assert (entry.clinic_id, entry.actor_id, entry.action, entry.object_type, entry.object_id) == \
        (c.id, actor.id, "patient.erase", "patient", p.id)
    if db.backend == "sqlite":                         # not even in free pages or the WAL
        files = [db.sqlite_path()] + [db.sqlite_path().with_name(db.sqlite_path().name + s) for s in ("-wal", "-shm")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        leaked = [t for t in traces if t.encode() in raw]
        assert not leaked, f"erased data still in the SQLite files: {leaked}"
        assert b"KEEP-0001" in raw
    assert repo.fsck(session, db.blobs).clean


def test_erasure_keeps_a_blob_another_clinic_uses(db, session):
    data = images.jpeg_with_metadata(50)
    ca, cb = repo.create_clinic(session, "A"), repo.create_clinic(session, "B")
    pa, pb = repo.create_patient(session, ca.id, "A-1"), repo.create_patient(session, cb.id, "B-1")
    fa, _ = repo.add_photo(session, db.blobs, ca.id, pa.id, data)
    fb, _ = repo.add_photo(session, db.blobs, cb.id, pb.id, data)

    report = repo.erase_patient(session, db.blobs, ca.id, pa.id)
    assert (report.blobs_deleted, report.blobs_kept) == (0, 1)
    assert repo.read_photo(session, db.blobs, cb.id, fb.id) == strip_metadata(data).data
    assert repo.get_photo(session, ca.id, fa.id) is None

    report = repo.erase_patient(session, db.blobs, cb.id, pb.id)
    assert (report.blobs_deleted, report.blobs_kept) == (1, 0)
    assert list(db.blobs.iter_keys()) == []
    assert session.scalar(sa.select(sa.func.count()).select_from(m.Blob)) == 0
