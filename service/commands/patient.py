"""``mesoscan patient add CODE [--name N] [--clinic NAME]`` and ``mesoscan patient list``.

The embedded single-clinic case: everything lives in the clinic called "default" (created on
first use) unless ``--clinic`` names another. Storage from MESOSCAN_DATA_DIR / DATABASE_URL.
Exit status: 0 done, 2 invalid input (duplicate code, unknown patient): one line on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Iterator

DEFAULT_CLINIC = "default"


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def add_clinic_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clinic", default=DEFAULT_CLINIC, metavar="NAME",
                   help=f"clinic name (default: {DEFAULT_CLINIC!r}, created on first use)")


@contextlib.contextmanager
def clinic_session(clinic_name: str) -> Iterator[tuple[object, object, object]]:
    """Open storage (migrated), a session and the clinic called ``clinic_name`` (created on
    first use): yields (storage, session, clinic)."""
    from service.progress import default_clinic
    from service.storage import open_storage

    storage = open_storage()
    try:
        with storage.session() as session:
            clinic = default_clinic(session, clinic_name)
            yield storage, session, clinic
    finally:
        storage.close()


def fail(command: str, message: str, status: int = 2) -> int:
    print(f"mesoscan {command}: {message}", file=sys.stderr)
    return status


def register(subparsers) -> None:
    p = subparsers.add_parser("patient", help="add or list patients (embedded single-clinic storage)")
    sub = p.add_subparsers(dest="patient_command", required=True, metavar="ACTION")
    a = sub.add_parser("add", help="add a patient known by a pseudonymous code",
                       description="Add a patient. CODE is pseudonymous and unique in the clinic; the name is optional.")
    a.add_argument("code", metavar="CODE")
    a.add_argument("--name", default=None, metavar="N", help="the patient's name (optional)")
    add_clinic_option(a)
    a.set_defaults(func=run_add)
    ls = sub.add_parser("list", help="list the clinic's patients with their number of visits")
    add_clinic_option(ls)
    ls.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    from service.storage import repository as repo

    try:
        with clinic_session(args.clinic) as (_storage, session, clinic):
            patient = repo.create_patient(session, clinic.id, args.code, args.name)
            print(f"patient {patient.code} added (id {patient.id}) to clinic {clinic.name!r}")
    except (repo.Conflict, ValueError) as exc:
        return fail("patient add", getattr(exc, "message", str(exc)))
    return 0


def run_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from service.storage import repository as repo
    from service.storage.models import Visit

    with clinic_session(args.clinic) as (_storage, session, clinic):
        patients = repo.list_patients(session, clinic.id)
        counts = dict(session.execute(sa.select(Visit.patient_id, sa.func.count()).where(Visit.clinic_id == clinic.id)
                                      .group_by(Visit.patient_id)).all())
        for p in patients:
            name = f"  {p.name}" if p.name else ""
            print(f"{p.code}\t{counts.get(p.id, 0)} visits{name}")
    return 0
