"""Sign-in, sign-out, password change and the access re-checks of the web guard, each one
transaction over ``users`` and ``sessions``.

The web tier keeps the cookie and the request; here live the account and session rows. A
server-side session row outlives its idle limit by ``keep_rows_s`` before a later sign-in
deletes it (``purge_sessions``), so "expired" stays visible for a while.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from layers.models import User
from layers.models.base import utcnow
from layers.services import audit, get_row
from layers.services import sessions as session_service
from layers.services import users as user_service


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the password check's result and, for a form sign-in that
    succeeded, the new server-side session id (None otherwise)."""

    result: user_service.LoginResult
    session_id: str | None = None


def open_session(session: Session, user: User, client: str, keep_rows_s: float) -> str:
    """Return a new server-side session id for ``user``; old rows past ``keep_rows_s`` go."""
    sid = session_service.start_session(session, user, client)
    session_service.purge_sessions(session, utcnow() - dt.timedelta(seconds=keep_rows_s))
    return sid


def sign_in(
    session: Session,
    username: str,
    password: str,
    *,
    channel: str,
    client: str,
    keep_rows_s: float,
) -> SignIn:
    """Return the outcome of a sign-in (audited); a form sign-in opens a server-side session."""
    result = user_service.authenticate(session, username, password, channel=channel, client=client)
    if result.ok and channel == "form":
        return SignIn(result, open_session(session, result.user, client, keep_rows_s))
    return SignIn(result)


def sign_out(session: Session, session_digest: str | None, *, actor: str, role: str) -> None:
    """End the server-side session ``session_digest`` (if any) and audit the logout."""
    if session_digest is not None:
        session_service.revoke_session(session, session_digest, "logout")
    audit.record(session, actor=actor, role=role, action="logout")


class WrongPasswordError(user_service.UserError):
    """The current password given with a password change is not the account's."""


def change_password(
    session: Session,
    user_id: int,
    current: str,
    new: str,
    *,
    actor: str,
    actor_role: str,
    client: str,
    keep_rows_s: float,
) -> str:
    """Return a new server-side session id after changing the password of ``user_id``.

    Every other session of the account ends with the change (``users.set_password``).

    Raises
    ------
    WrongPasswordError
        If the account is gone or ``current`` is not its password.
    users.UserError
        If ``new`` is not acceptable (the message says why).
    """
    user = get_row(session, User, user_id)
    if user is None or not user_service.check_password(user.password_hash, current):
        raise WrongPasswordError("the current password is wrong")
    user_service.set_password(session, user.username, new, actor=actor, actor_role=actor_role)
    session.flush()
    return open_session(session, user, client, keep_rows_s)


def account_active(session: Session, username: str) -> bool:
    """Return True if ``username`` (as a sign-in form reads it) names an active account.

    No password is checked: the sign-in throttle asks this, cheaply, before deciding whether
    an attempt from a busy address is worth an argon2 verification.
    """
    name = (username or "").strip()[:64]
    user = user_service.get_user(session, name) if name else None
    return user is not None and bool(user.active)


def user_by_id(session: Session, user_id: int) -> User | None:
    """Return the account with this id, or None."""
    return get_row(session, User, user_id)


def token_in_force(session: Session, name: str, role: str) -> bool:
    """Return True if the API token ``name`` exists, is not revoked and still has ``role``."""
    row = user_service.find_token_by_name(session, name)
    return row is not None and row.revoked_at is None and row.role == role


def account_in_force(
    session: Session,
    *,
    role: str,
    scopes: dict,
    session_digest: str | None = None,
    user_id: int | None = None,
    idle_s: float = 0.0,
) -> bool:
    """Return True if the account still acts with ``role`` and ``scopes``.

    With ``session_digest``: that server-side session must be live (not logged out, expired
    after ``idle_s`` or revoked); else the account ``user_id`` (HTTP Basic) must be active.
    """
    if session_digest is not None:
        live = session_service.live_session(session, session_digest, idle_s)
        user = live[1] if live is not None else None
    else:
        user = get_row(session, User, user_id) if user_id is not None else None
    return (
        user is not None
        and user.active
        and user.role == role
        and user_service.parse_scopes(user.scopes) == scopes
    )
