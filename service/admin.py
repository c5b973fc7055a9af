"""Operator tasks shared by the CLI commands: clinics by name, users, tokens, the demo set-up."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from service.storage import repository as repo
from service.storage.models import ApiToken, Clinic, User

DEMO_CLINIC = "Demo clinic"
DEMO_EMAIL = "demo@mesoscan.local"
DEMO_TOKEN_NAME = "demo"
MIN_PASSWORD_LENGTH = 10


class AdminError(Exception):
    """A refusal worth one line on stderr."""


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return (hasher or PasswordHasher()).hash(password)


def new_password() -> str:
    return secrets.token_urlsafe(12)


def find_clinic(session: Session, ref: str, *, create: bool = False) -> Clinic:
    """The clinic named ``ref`` (or with id ``ref``); with ``create``, made when missing."""
    ref = ref.strip()
    if not ref:
        raise AdminError("the clinic name must not be empty")
    rows = list(session.scalars(sa.select(Clinic).where(Clinic.name == ref).order_by(Clinic.id)))
    if not rows and ref.isdigit():
        clinic = session.get(Clinic, int(ref))
        rows = [clinic] if clinic else []
    if len(rows) > 1:
        raise AdminError(f"{len(rows)} clinics are named {ref!r}: give the id instead "
                         f"({', '.join(str(c.id) for c in rows)})")
    if rows:
        return rows[0]
    if create:
        return repo.create_clinic(session, ref)
    names = [c.name for c in session.scalars(sa.select(Clinic).order_by(Clinic.id).limit(20))]
    known = ", ".join(repr(n) for n in names) or "none yet"
    raise AdminError(f"no clinic {ref!r} (clinics: {known}); add --create-clinic to create it")


def clinic_count(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Clinic)) or 0


def find_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def list_tokens(session: Session, clinic: Clinic | None = None) -> list[tuple[ApiToken, str]]:
    q = sa.select(ApiToken, Clinic.name).join(Clinic, Clinic.id == ApiToken.clinic_id).order_by(ApiToken.id)
    if clinic is not None:
        q = q.where(ApiToken.clinic_id == clinic.id)
    return [(t, name) for t, name in session.execute(q)]


@dataclass
class Demo:
    clinic: Clinic
    user: User
    password: str
    token: str
    created: bool


def ensure_demo(session: Session, hasher: PasswordHasher | None = None) -> Demo:
    """The demo clinic and practitioner, with a fresh random password and a fresh API token
    (earlier demo tokens are revoked), so the printed credentials always work."""
    user = repo.get_user_by_email(session, DEMO_EMAIL)
    password = new_password()
    pw_hash = hash_password(password, hasher)
    created = user is None
    if user is None:
        clinic = find_clinic(session, DEMO_CLINIC, create=True)
        user = repo.create_user(session, clinic.id, DEMO_EMAIL, pw_hash, "practitioner", name="Demo practitioner")
    else:
        clinic = repo.get_clinic(session, user.clinic_id)
        user = repo.set_user_password(session, clinic.id, user.id, pw_hash)
    for tok in repo.list_api_tokens(session, clinic.id):
        if tok.name == DEMO_TOKEN_NAME and tok.revoked_at is None:
            repo.revoke_api_token(session, clinic.id, tok.id)
    _, token = repo.create_api_token(session, clinic.id, DEMO_TOKEN_NAME)
    return Demo(clinic=clinic, user=user, password=password, token=token, created=created)
