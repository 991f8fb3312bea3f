"""Server-side login sessions: create, find live, touch, revoke; the process's auth epoch.

A browser's signed cookie carries a random 256-bit session id; the database keeps only its
SHA-256 (a copy of the table opens no session). A session is live while it is not revoked,
its account is active, and it was used within the idle limit. Logout revokes one session;
disabling an account and changing its password, role or scopes revoke all of its sessions
(``layers.services.users`` calls ``revoke_user_sessions``). Every revocation bumps the auth
epoch, so principal caches in this process (``dashboard.auth``) forget it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading

from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from layers.models import User, UserSession
from layers.models.base import utcnow

_epoch = [0]
_epoch_lock = threading.Lock()


def auth_epoch() -> int:
    """Return this process's count of changes to who may do what (accounts, roles, tokens).

    Caches of resolved principals (``dashboard.auth``) compare it on every hit, so a change
    made through this process invalidates them at once; other processes re-read the database
    when their short cache lifetime ends.
    """
    return _epoch[0]


def auth_changed(session: Session) -> None:
    """Bump the epoch now and again when ``session`` commits (a request in between may have
    cached the old state)."""

    def bump(*_args) -> None:
        with _epoch_lock:
            _epoch[0] += 1

    bump()
    event.listen(session, "after_commit", bump, once=True)


def session_digest(session_id: str) -> str:
    """Return the SHA-256 hex digest under which a session id is stored."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def start_session(session: Session, user: User, client: str = "") -> str:
    """Return a new random session id for ``user`` (only its digest is stored)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        UserSession(
            id=session_digest(session_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            revoked_reason="",
            client=(client or "")[:64],
        )
    )
    session.flush()
    return session_id


def live_session(
    session: Session, digest: str, idle_s: float, now: dt.datetime | None = None
) -> tuple[UserSession, User] | None:
    """Return (session row, active user) for the session ``digest`` if it is live, else None.

    A session unused for more than ``idle_s`` seconds is revoked here (reason "expired").
    """
    now = now or utcnow()
    row = session.get(UserSession, digest) if digest else None
    if row is None or row.revoked_at is not None:
        return None
    if (now - row.last_seen_at).total_seconds() > idle_s:
        row.revoked_at, row.revoked_reason = now, "expired"
        auth_changed(session)
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return row, user


def touch_session(session: Session, digest: str, now: dt.datetime | None = None) -> None:
    """Record that the session ``digest`` was used now (the server-side idle clock)."""
    session.execute(
        update(UserSession)
        .where(UserSession.id == digest, UserSession.revoked_at.is_(None))
        .values(last_seen_at=now or utcnow())
    )


def revoke_session(session: Session, digest: str, reason: str) -> bool:
    """Return True if the live session ``digest`` was revoked now (False: already gone)."""
    done = session.execute(
        update(UserSession)
        .where(UserSession.id == digest, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:32])
    ).rowcount
    auth_changed(session)
    return bool(done)


def revoke_user_sessions(session: Session, user_id: int, reason: str) -> int:
    """Return how many live sessions of the account ``user_id`` were revoked now."""
    done = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:32])
    ).rowcount
    auth_changed(session)
    return int(done or 0)


def live_session_count(session: Session, user_id: int) -> int:
    """Return the number of unrevoked sessions of the account ``user_id``."""
    rows = session.scalars(
        select(UserSession.id).where(
            UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
        )
    )
    return len(list(rows))


def purge_sessions(session: Session, older_than: dt.datetime) -> int:
    """Return how many session rows last used before ``older_than`` were deleted."""
    return int(
        session.execute(delete(UserSession).where(UserSession.last_seen_at < older_than)).rowcount
        or 0
    )
