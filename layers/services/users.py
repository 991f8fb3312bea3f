"""Accounts and API tokens: argon2 passwords, scopes, provisioning; every change audited.

Passwords are hashed with argon2id (argon2-cffi defaults); API tokens are 256-bit random
strings of which only the SHA-256 is stored (a high-entropy token needs no slow hash, and the
digest lets us look the token up). Generated passwords and tokens are returned to the caller
exactly once and never logged.

Separation of duties: a signed-in person acting through the app (``actor_role`` given) may
not alone create, enable or give the role of an admin, auditor or privacy officer
(``SOD_ROLES``); such a change names a second admin in ``approved_by``
(``layers.services.role_requests``). The shell CLI on the server (``actor_role`` empty) acts
alone: whoever runs it holds the database anyway. Disabling an account and changing its
password, role or scopes end its sessions at once (``layers.services.sessions``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import ROLES, SOD_ROLES, ApiToken, User
from layers.models.base import utcnow
from layers.services import audit
from layers.services.sessions import auth_changed, auth_epoch, revoke_user_sessions

log = logging.getLogger(__name__)

# Machine roles exist only for API tokens: intake systems posting incidents, GIS clients.
MACHINE_ROLES = ("intake", "gis")
TOKEN_ROLES = ROLES + MACHINE_ROLES
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "gst_"
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
_HASHER = PasswordHasher()
# verified against when the user does not exist, so a wrong name costs as much as a wrong
# password and response times do not reveal which accounts exist
_DUMMY_HASH = _HASHER.hash("gridsight-timing-equaliser")


class UserError(ValueError):
    """Raised for a bad account or token request; the message names the field and the fix."""


class ApprovalRequired(UserError):
    """Raised when a privileged account change made in the app names no second admin."""


__all__ = ["auth_epoch"]  # re-exported: dashboard.auth reads the epoch through this module


def needs_second_person(role: str) -> bool:
    """Return True if creating, enabling or giving ``role`` needs a second admin's approval."""
    return role in SOD_ROLES


def check_second_person(
    role: str, *, actor: str, actor_role: str, approved_by: str | None, what: str
) -> None:
    """Raise ApprovalRequired unless an app change to a ``role`` account has a second admin.

    Changes from the shell (``actor_role`` empty) need none; ``approved_by`` must name a
    person other than ``actor``.
    """
    if not actor_role or not needs_second_person(role):
        return
    if not approved_by:
        raise ApprovalRequired(
            f"{what} a {role} account needs a second admin's approval: file a request in the "
            "admin console (another admin approves it) or use `python -m layers users` on "
            "the server"
        )
    if approved_by == actor:
        raise ApprovalRequired(f"{what} a {role} account: the approver must not be the requester")


# -- validation -------------------------------------------------------------------------------
def validate_username(name: object, field_name: str = "username") -> str:
    """Return the username if it is 2-64 letters, digits, ``_ . -``; else raise UserError."""
    if not isinstance(name, str) or not _USERNAME.match(name.strip()):
        raise UserError(
            f"{field_name} {name!r} is not valid: use 2-64 letters, digits, '_', '.' or '-'"
        )
    return name.strip()


def validate_role(role: object, *, allowed: tuple[str, ...] = ROLES) -> str:
    """Return ``role`` if it is one of ``allowed``; else raise UserError listing them."""
    if role not in allowed:
        raise UserError(f"role {role!r} is not valid; choose one of: {', '.join(allowed)}")
    return str(role)


def validate_password(password: object, username: str = "") -> str:
    """Return ``password`` if it is long enough and not the username; else raise UserError."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if username and password.strip().lower() == username.lower():
        raise UserError("password must not be the username")
    if len(password) > 1024:
        raise UserError("password must have at most 1024 characters")
    return password


_DISTRICT = re.compile(r"^\d{6}$")
_CAMERA = re.compile(r"^\d{20}$|^\d{1,12}$")


def parse_scopes(value: object) -> dict[str, list[str]]:
    """Return scopes as {"districts": [...], "cameras": [...]} from a dict or JSON text.

    Districts are 6-digit GB/T 2260 codes; cameras 20-digit GB/T 28181 ids (or numeric row
    ids). Empty lists mean "no restriction" on that axis; both empty: unrestricted.
    """
    if value is None or value == "":
        return {"districts": [], "cameras": []}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"scopes is not JSON ({exc}); e.g. {{'districts': ['530102']}}"
            ) from exc
    if not isinstance(value, dict):
        raise UserError("scopes must be an object with 'districts' and/or 'cameras' lists")
    unknown = set(value) - {"districts", "cameras"}
    if unknown:
        raise UserError(f"scopes has unknown keys {sorted(unknown)}; use districts, cameras")
    out: dict[str, list[str]] = {}
    for key, pattern, what in (
        ("districts", _DISTRICT, "6-digit GB/T 2260 codes"),
        ("cameras", _CAMERA, "20-digit GB/T 28181 ids"),
    ):
        items = value.get(key) or []
        if not isinstance(items, list):
            raise UserError(f"scopes.{key} must be a list of {what}")
        clean = [str(i).strip() for i in items]
        bad = [i for i in clean if not pattern.match(i)]
        if bad:
            raise UserError(f"scopes.{key} has invalid entries {bad[:5]}; use {what}")
        out[key] = sorted(set(clean))
    return out


# -- passwords --------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password``."""
    return _HASHER.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    """Return True if ``password`` matches ``password_hash`` (constant-time argon2 verify)."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """Return a random one-time password (16 URL-safe characters, ~96 bits)."""
    return secrets.token_urlsafe(12)


# -- users ------------------------------------------------------------------------------------
def get_user(session: Session, username: str) -> User | None:
    """Return the user called ``username`` (exact match) or None."""
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    """Return every user, by name."""
    return list(session.scalars(select(User).order_by(User.username)))


def user_count(session: Session) -> int:
    """Return the number of user accounts."""
    return session.scalar(select(func.count()).select_from(User)) or 0


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str | None = None,
    *,
    scopes: dict | str | None = None,
    display_name: str = "",
    must_change_password: bool | None = None,
    actor: str = "system",
    actor_role: str = "",
    approved_by: str | None = None,
) -> tuple[User, str | None]:
    """Return (user, generated_password) after creating an account.

    Without ``password`` a random one is generated and returned (show it once, never store
    it); such accounts must change it at first login. The creation is audited, naming the
    approver of a privileged account (``check_second_person``).
    """
    username = validate_username(username)
    role = validate_role(role)
    check_second_person(
        role, actor=actor, actor_role=actor_role, approved_by=approved_by, what="creating"
    )
    generated = None
    if password is None:
        generated = password = generate_password()
        if must_change_password is None:
            must_change_password = True
    else:
        validate_password(password, username)
    if get_user(session, username) is not None:
        raise UserError(f"user {username!r} already exists; pick another name")
    clean_scopes = parse_scopes(scopes)
    user = User(
        username=username,
        display_name=(display_name or "")[:128],
        role=role,
        password_hash=hash_password(password),
        active=True,
        failed_logins=0,
        must_change_password=bool(must_change_password),
        scopes=json.dumps(clean_scopes, sort_keys=True),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        role=actor_role,
        action="user.create",
        target=username,
        detail=_with_approver(
            {"role": role, "scopes": clean_scopes, "generated_password": generated is not None},
            actor,
            approved_by,
        ),
    )
    return user, generated


def _with_approver(detail: dict, actor: str, approved_by: str | None) -> dict:
    if approved_by:
        return {**detail, "requested_by": actor, "approved_by": approved_by}
    return detail


def _require_user(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise UserError(f"no user called {username!r}; see `python -m layers users list`")
    return user


def set_active(
    session: Session,
    username: str,
    active: bool,
    *,
    actor: str = "system",
    actor_role: str = "",
    approved_by: str | None = None,
) -> User:
    """Return the user after enabling or disabling the account (audited).

    Disabling ends the account's sessions at once; enabling a privileged account needs a
    second admin when done in the app (``check_second_person``).
    """
    user = _require_user(session, username)
    if active and not user.active:
        check_second_person(
            user.role, actor=actor, actor_role=actor_role, approved_by=approved_by, what="enabling"
        )
    user.active = bool(active)
    auth_changed(session)
    if active:
        user.failed_logins, user.locked_until = 0, None
    else:
        revoke_user_sessions(session, user.id, "disabled")
    audit.record(
        session,
        actor=actor,
        role=actor_role,
        action="user.enable" if active else "user.disable",
        target=username,
        detail=_with_approver({"role": user.role}, actor, approved_by),
    )
    return user


def set_password(
    session: Session,
    username: str,
    new_password: str,
    *,
    actor: str,
    actor_role: str = "",
    must_change: bool = False,
) -> User:
    """Return the user after setting a new password (validated, audited; its sessions end)."""
    user = _require_user(session, username)
    validate_password(new_password, username)
    if check_password(user.password_hash, new_password):
        raise UserError("the new password must differ from the current one")
    user.password_hash = hash_password(new_password)
    user.must_change_password = must_change
    user.failed_logins, user.locked_until = 0, None
    revoke_user_sessions(session, user.id, "password")
    audit.record(session, actor=actor, role=actor_role, action="user.password", target=username)
    return user


def set_role_and_scopes(
    session: Session,
    username: str,
    *,
    role: str | None = None,
    scopes: dict | str | None = None,
    actor: str,
    actor_role: str = "",
    approved_by: str | None = None,
) -> User:
    """Return the user after changing its role and/or scopes (audited with old and new).

    Either change ends the account's sessions at once; giving a privileged role in the app
    needs a second admin (``check_second_person``).
    """
    user = _require_user(session, username)
    detail: dict = {}
    if role is not None and role != user.role:
        detail["role"] = [user.role, validate_role(role)]
        check_second_person(
            role, actor=actor, actor_role=actor_role, approved_by=approved_by, what="giving"
        )
        user.role = role
    if scopes is not None:
        clean = parse_scopes(scopes)
        detail["scopes"] = [parse_scopes(user.scopes), clean]
        user.scopes = json.dumps(clean, sort_keys=True)
    if detail:
        revoke_user_sessions(session, user.id, "role" if "role" in detail else "scopes")
        audit.record(
            session,
            actor=actor,
            role=actor_role,
            action="user.role" if "role" in detail else "user.update",
            target=username,
            detail=_with_approver(detail, actor, approved_by),
        )
    return user


@dataclass
class LoginResult:
    """The outcome of ``authenticate``: ok, the user (when known) and why it failed."""

    ok: bool
    user: User | None = None
    reason: str = ""  # "", "unknown", "password", "disabled"
    extra: dict = field(default_factory=dict)


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    channel: str = "form",
    client: str = "",
) -> LoginResult:
    """Return the result of a login attempt, auditing every outcome.

    Unknown names are verified against a dummy hash, so they cost as much as a wrong
    password. There is no account-wide lockout here (a stranger could lock anyone out with a
    few guesses): the web tier throttles attempts per client address, per (account, client)
    and per account (``dashboard.throttle``). ``failed_logins`` counts wrong passwords since
    the last success, for the audit trail. Successful logins are audited as ``login.ok``
    (except for HTTP Basic, ``channel="basic"``, which would log every GIS request),
    failures as ``login.failed`` with the reason.
    """
    username = (username or "").strip()[:64]
    detail = {"channel": channel}
    if client:
        detail["client"] = client[:64]
    user = get_user(session, username) if username else None
    if user is None:
        check_password(_DUMMY_HASH, password or "")
        audit.record(
            session,
            actor=username or "(empty)",
            role="",
            action="login.failed",
            detail={**detail, "reason": "unknown user"},
        )
        return LoginResult(False, None, "unknown")
    if not check_password(user.password_hash, password or ""):
        user.failed_logins = (user.failed_logins or 0) + 1
        audit.record(
            session,
            actor=user.username,
            role=user.role,
            action="login.failed",
            detail={**detail, "reason": "password", "failures": user.failed_logins},
        )
        return LoginResult(False, user, "password")
    if not user.active:
        audit.record(
            session,
            actor=user.username,
            role=user.role,
            action="login.failed",
            detail={**detail, "reason": "disabled"},
        )
        return LoginResult(False, user, "disabled")
    user.failed_logins, user.locked_until = 0, None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    if channel != "basic":
        audit.record(session, actor=user.username, role=user.role, action="login.ok", detail=detail)
    return LoginResult(True, user)


def ensure_first_admin(session: Session) -> str | None:
    """Return a one-time password if no account existed and ``admin`` was just created.

    The password is random, returned once (the caller prints it), stored only as a hash, and
    must be changed at first login. Returns None when accounts already exist.
    """
    if user_count(session):
        return None
    _user, password = create_user(
        session,
        "admin",
        "admin",
        None,
        display_name="Administrator",
        must_change_password=True,
        actor="system",
    )
    return password


# -- API tokens -------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session, name: str, role: str, *, actor: str = "system", actor_role: str = ""
) -> tuple[ApiToken, str]:
    """Return (token row, plaintext token); only the digest is stored. Audited."""
    name = validate_username(name, "token name")
    role = validate_role(role, allowed=TOKEN_ROLES)
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise UserError(f"a token called {name!r} already exists; revoke it or pick another name")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, token_hash=token_digest(plaintext), created_by=actor)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        role=actor_role,
        action="token.create",
        target=name,
        detail={"role": role},
    )
    return row, plaintext


def revoke_token(
    session: Session, name: str, *, actor: str = "system", actor_role: str = ""
) -> ApiToken:
    """Return the token row after revoking it (idempotent: revoking twice keeps the first time)."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise UserError(f"no token called {name!r}; see `python -m layers tokens list`")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        auth_changed(session)
        audit.record(session, actor=actor, role=actor_role, action="token.revoke", target=name)
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    """Return every API token row (hashes only), by name."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def find_token_by_name(session: Session, name: str) -> ApiToken | None:
    """Return the token row called ``name`` (revoked or not), or None."""
    return session.scalar(select(ApiToken).where(ApiToken.name == name))


def find_token(session: Session, plaintext: str) -> ApiToken | None:
    """Return the live (not revoked) token row matching ``plaintext``, or None."""
    if not plaintext or not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(plaintext)))
    if row is None or row.revoked_at is not None:
        return None
    return row
