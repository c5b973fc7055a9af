"""``mesoscan user create|passwd|list``: practitioners who log in on the web.

    mesoscan user create --clinic NAME --email E [--role practitioner] [--name N]
                         [--password-stdin] [--create-clinic]
    mesoscan user passwd --email E [--password-stdin]
    mesoscan user list [--clinic NAME]

Without ``--password-stdin`` the password is asked twice on the terminal. Passwords are stored
as argon2id hashes. Uses MESOSCAN_DATA_DIR and DATABASE_URL.
"""
from __future__ import annotations

import argparse
import getpass
import sys

ROLES = ("admin", "practitioner", "viewer")


def register(subparsers) -> None:
    p = subparsers.add_parser("user", help="create practitioners and set their passwords")
    sub = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a user of a clinic")
    c.add_argument("--clinic", required=True, help="clinic name (or id)")
    c.add_argument("--email", required=True, help="login email (unique across clinics)")
    c.add_argument("--role", default="practitioner", choices=ROLES,
                   help="practitioner (default), admin, or viewer (read only)")
    c.add_argument("--name", help="display name")
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    c.add_argument("--create-clinic", action="store_true", help="create the clinic when it does not exist")
    c.set_defaults(func=run_create)
    pw = sub.add_parser("passwd", help="set a user's password (ends their sessions)")
    pw.add_argument("--email", required=True)
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(func=run_passwd)
    ls = sub.add_parser("list", help="list users")
    ls.add_argument("--clinic", help="only this clinic's users")
    ls.set_defaults(func=run_list)


def _fail(message: str) -> int:
    print(f"mesoscan user: {message}", file=sys.stderr)
    return 2


def read_password(from_stdin: bool) -> str:
    from service.admin import AdminError

    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise AdminError("no password on stdin")
        return password
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AdminError("the passwords differ")
    return first


def run_create(args: argparse.Namespace) -> int:
    from service.admin import AdminError, find_clinic, hash_password
    from service.storage import open_storage
    from service.storage import repository as repo

    email = args.email.strip().lower()
    if "@" not in email or len(email) > 320:
        return _fail(f"not an email address: {args.email!r}")
    try:
        pw_hash = hash_password(read_password(args.password_stdin))
    except AdminError as exc:
        return _fail(str(exc))
    storage = open_storage()
    try:
        with storage.session() as s:
            clinic = find_clinic(s, args.clinic, create=args.create_clinic)
            user = repo.create_user(s, clinic.id, email, pw_hash, args.role, name=args.name)
            repo.record_audit(s, clinic.id, None, "user.create", "user", user.id)
    except (AdminError, repo.Conflict) as exc:
        return _fail(str(exc))
    finally:
        storage.close()
    print(f"user {user.id} {email} ({args.role}) of clinic {clinic.name!r} (id {clinic.id}) created")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    from service.admin import AdminError, hash_password
    from service.storage import open_storage
    from service.storage import repository as repo

    try:
        pw_hash = hash_password(read_password(args.password_stdin))
    except AdminError as exc:
        return _fail(str(exc))
    storage = open_storage()
    try:
        with storage.session() as s:
            user = repo.get_user_by_email(s, args.email)
            if user is None:
                return _fail(f"no user {args.email!r}")
            repo.set_user_password(s, user.clinic_id, user.id, pw_hash)
            repo.record_audit(s, user.clinic_id, None, "user.password", "user", user.id)
    finally:
        storage.close()
    print(f"password of {user.email} changed; their sessions have ended")
    return 0


def run_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from service.admin import AdminError, find_clinic
    from service.storage import open_storage
    from service.storage.models import Clinic, User

    storage = open_storage()
    try:
        with storage.session() as s:
            q = sa.select(User, Clinic.name).join(Clinic, Clinic.id == User.clinic_id).order_by(User.id)
            if args.clinic:
                q = q.where(User.clinic_id == find_clinic(s, args.clinic).id)
            rows = list(s.execute(q))
    except AdminError as exc:
        return _fail(str(exc))
    finally:
        storage.close()
    print(f"{'id':>5}  {'clinic':<24} {'email':<32} role")
    for user, clinic_name in rows:
        print(f"{user.id:>5}  {clinic_name[:24]:<24} {user.email[:32]:<32} {user.role}")
    return 0
