"""Unmask grants: time-limited, reasoned, audited permission to see unredacted video.

A privacy officer grants a named, active user access to unredacted frames of listed cameras
for a stated reason and a bounded time. With ``require_approval`` (the two-person rule) a
grant only takes effect once a *second* privacy officer approves it. Grants end by themselves
at ``expires_at``; they can be revoked earlier. Every step is an audit entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import UnmaskGrant, User
from layers.models.base import utcnow
from layers.services import audit, get_row

log = logging.getLogger(__name__)

GRANTOR_ROLES = ("privacy_officer",)
MAX_MINUTES = 8 * 60
MIN_REASON = 5


class GrantError(ValueError):
    """Raised for an invalid grant request; the message names the field and the fix."""


def _camera_ids(camera_ids: object) -> list[int]:
    if not isinstance(camera_ids, list | tuple | set) or not camera_ids:
        raise GrantError("camera_ids must be a non-empty list of camera ids")
    out = []
    for c in camera_ids:
        try:
            out.append(int(c))
        except (TypeError, ValueError) as exc:
            raise GrantError(f"camera_ids has {c!r}, which is not a camera id") from exc
    return sorted(set(out))


def create_grant(
    session: Session,
    *,
    grantee: str,
    camera_ids: list[int],
    reason: str,
    minutes: int,
    granted_by: str,
    granted_by_role: str,
    now: dt.datetime | None = None,
) -> UnmaskGrant:
    """Return a new grant (audited as ``grant.create``) after validating every field."""
    if granted_by_role not in GRANTOR_ROLES:
        raise GrantError(f"role {granted_by_role!r} may not grant unmasking; a privacy officer can")
    user = session.scalar(select(User).where(User.username == grantee))
    if user is None or not user.active:
        raise GrantError(f"grantee {grantee!r} is not an active user")
    if grantee == granted_by:
        raise GrantError("a privacy officer cannot grant unmasking to themself")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise GrantError(f"reason must state why (at least {MIN_REASON} characters)")
    if not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise GrantError(f"minutes must be a whole number from 1 to {MAX_MINUTES}")
    cams = _camera_ids(camera_ids)
    now = now or utcnow()
    grant = UnmaskGrant(
        grantee=grantee,
        camera_ids=json.dumps(cams),
        reason=reason[:2000],
        granted_by=granted_by,
        created_at=now,
        expires_at=now + dt.timedelta(minutes=minutes),
        user_id=user.id,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session,
        actor=granted_by,
        role=granted_by_role,
        action="grant.create",
        target=f"grant:{grant.id}",
        detail={"grantee": grantee, "cameras": cams, "minutes": minutes, "reason": reason[:200]},
    )
    return grant


def approve_grant(
    session: Session, grant_id: int, *, approver: str, approver_role: str
) -> UnmaskGrant:
    """Return the grant after a second privacy officer approved it (audited)."""
    grant = _get(session, grant_id)
    if approver_role not in GRANTOR_ROLES:
        raise GrantError(f"role {approver_role!r} may not approve grants")
    if approver == grant.granted_by:
        raise GrantError("the approver must be a different privacy officer than the grantor")
    if approver == grant.grantee:
        raise GrantError("the grantee cannot approve their own grant")
    if grant.approved_by is None:
        grant.approved_by = approver
        audit.record(
            session,
            actor=approver,
            role=approver_role,
            action="grant.approve",
            target=f"grant:{grant.id}",
        )
    return grant


def revoke_grant(session: Session, grant_id: int, *, actor: str, actor_role: str) -> UnmaskGrant:
    """Return the grant after revoking it now (audited; idempotent)."""
    grant = _get(session, grant_id)
    if actor_role not in GRANTOR_ROLES:
        raise GrantError(f"role {actor_role!r} may not revoke grants")
    if grant.revoked_at is None:
        grant.revoked_at = utcnow()
        audit.record(
            session, actor=actor, role=actor_role, action="grant.revoke", target=f"grant:{grant.id}"
        )
    return grant


def _get(session: Session, grant_id: int) -> UnmaskGrant:
    grant = get_row(session, UnmaskGrant, grant_id)
    if grant is None:
        raise GrantError(f"no grant #{grant_id}")
    return grant


def is_active(grant: UnmaskGrant, now: dt.datetime, *, require_approval: bool = False) -> bool:
    """Return True if ``grant`` is in force at ``now``."""
    if grant.revoked_at is not None or grant.expires_at <= now:
        return False
    return grant.approved_by is not None or not require_approval


def active_grant(
    session: Session,
    grantee: str,
    camera_id: int,
    *,
    now: dt.datetime | None = None,
    require_approval: bool = False,
) -> UnmaskGrant | None:
    """Return the grant letting ``grantee`` see camera ``camera_id`` unredacted now, or None."""
    now = now or utcnow()
    rows = session.scalars(
        select(UnmaskGrant)
        .where(UnmaskGrant.grantee == grantee)
        .where(UnmaskGrant.revoked_at.is_(None))
        .where(UnmaskGrant.expires_at > now)
        .order_by(UnmaskGrant.expires_at.desc())
    )
    for g in rows:
        if int(camera_id) in json.loads(g.camera_ids) and is_active(
            g, now, require_approval=require_approval
        ):
            return g
    return None


def list_grants(session: Session, *, include_expired: bool = False) -> list[UnmaskGrant]:
    """Return grants, newest first (only unexpired, unrevoked ones unless ``include_expired``)."""
    stmt = select(UnmaskGrant).order_by(UnmaskGrant.created_at.desc())
    if not include_expired:
        stmt = stmt.where(UnmaskGrant.revoked_at.is_(None)).where(UnmaskGrant.expires_at > utcnow())
    return list(session.scalars(stmt))


def watermark_text(grant: UnmaskGrant, now: dt.datetime | None = None) -> str:
    """Return the text burned into unredacted frames: who, when, which grant."""
    now = now or utcnow()
    return f"UNMASKED {grant.grantee} {now.strftime('%Y-%m-%dT%H:%MZ')} grant#{grant.id}"


def watermark_for(
    session: Session,
    username: str,
    camera_id: int,
    *,
    roles: frozenset[str] | set[str] | tuple[str, ...],
    require_approval: bool = False,
) -> str | None:
    """Return the watermark of the grant letting ``username`` see the camera unredacted now,
    or None (no grant in force, or the account is gone, disabled or not of one of ``roles``)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or user.role not in roles:
        return None
    grant = active_grant(session, username, camera_id, require_approval=require_approval)
    return watermark_text(grant) if grant is not None else None
