"""``mesoscan token create|list|revoke``: API tokens for the clinic's tablets.

    mesoscan token create --clinic NAME [--name tablet-1] [--create-clinic]
    mesoscan token list [--clinic NAME]
    mesoscan token revoke ID

The token is printed once, on stdout, and never stored (only its SHA-256 is). Send it as
``Authorization: Bearer <token>``. Uses MESOSCAN_DATA_DIR and DATABASE_URL.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("token", help="create, list and revoke API tokens (tablets)")
    sub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a token and print it (once)")
    c.add_argument("--clinic", required=True, help="clinic name (or id)")
    c.add_argument("--name", default="tablet", help="a label for the token (default: tablet)")
    c.add_argument("--create-clinic", action="store_true", help="create the clinic when it does not exist")
    c.set_defaults(func=run_create)
    ls = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.add_argument("--clinic", help="only this clinic's tokens")
    ls.set_defaults(func=run_list)
    r = sub.add_parser("revoke", help="revoke a token: it stops working at once")
    r.add_argument("id", type=int, help="token id (from `mesoscan token list`)")
    r.set_defaults(func=run_revoke)


def _fail(message: str) -> int:
    print(f"mesoscan token: {message}", file=sys.stderr)
    return 2


def _storage():
    from service.storage import open_storage

    return open_storage()


def run_create(args: argparse.Namespace) -> int:
    from service.admin import AdminError, find_clinic
    from service.storage import repository as repo

    name = args.name.strip()
    if not name or len(name) > 100:
        return _fail("--name must have 1 to 100 characters")
    storage = _storage()
    try:
        with storage.session() as s:
            clinic = find_clinic(s, args.clinic, create=args.create_clinic)
            row, token = repo.create_api_token(s, clinic.id, name)
    except AdminError as exc:
        return _fail(str(exc))
    finally:
        storage.close()
    print(f"token {row.id} {name!r} for clinic {clinic.name!r} (id {clinic.id}); shown only now:", file=sys.stderr)
    print(token)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from service.admin import AdminError, find_clinic, list_tokens

    storage = _storage()
    try:
        with storage.session() as s:
            clinic = find_clinic(s, args.clinic) if args.clinic else None
            rows = list_tokens(s, clinic)
    except AdminError as exc:
        return _fail(str(exc))
    finally:
        storage.close()
    print(f"{'id':>5}  {'clinic':<24} {'name':<20} {'created':<20} {'last used':<20} state")
    for tok, clinic_name in rows:
        fmt = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-"  # noqa: E731
        state = f"revoked {fmt(tok.revoked_at)}" if tok.revoked_at else "active"
        print(f"{tok.id:>5}  {clinic_name[:24]:<24} {tok.name[:20]:<20} {fmt(tok.created_at):<20} "
              f"{fmt(tok.last_used_at):<20} {state}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from service.admin import find_token
    from service.storage import repository as repo

    storage = _storage()
    try:
        with storage.session() as s:
            tok = find_token(s, args.id)
            if tok is None:
                return _fail(f"no token {args.id}")
            was_revoked = tok.revoked_at is not None
            repo.revoke_api_token(s, tok.clinic_id, tok.id)
            repo.record_audit(s, tok.clinic_id, None, "token.revoke", "api_token", tok.id)
    finally:
        storage.close()
    print(f"token {args.id} {'was already revoked' if was_revoked else 'revoked'}")
    return 0
