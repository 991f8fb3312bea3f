"""Two-person changes of privileged accounts: one admin asks, a second admin approves.

Creating, enabling or giving the role of an admin, auditor or privacy officer
(``layers.models.SOD_ROLES``) from the app needs two people: ``request_change`` files the
change (audited ``user.request``), ``approve`` by a different admin applies it through
``layers.services.users`` with ``approved_by`` (audited with both names: ``user.create``,
``user.enable`` or ``user.role`` plus ``user.request.approve``), ``reject`` or ``cancel``
closes it. Nobody approves a request they filed or one about their own account. The shell
CLI on the server acts alone and needs none of this.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import SOD_ROLES, RoleRequest
from layers.models.access import REQUEST_ACTIONS
from layers.models.base import utcnow
from layers.services import audit
from layers.services import users as user_service
from layers.services.users import UserError


def request_change(
    session: Session,
    action: str,
    username: str,
    role: str,
    *,
    actor: str,
    actor_role: str,
    scopes: dict | str | None = None,
    display_name: str = "",
) -> RoleRequest:
    """Return the filed request to ``action`` ("create", "enable", "role") ``username``.

    Checked now (and again at approval): the name and role are valid, a new name is free,
    an account to enable is disabled, a role change changes the role. Audited.
    """
    if action not in REQUEST_ACTIONS:
        raise UserError(f"action {action!r} is not valid; use one of {', '.join(REQUEST_ACTIONS)}")
    username = user_service.validate_username(username)
    role = user_service.validate_role(role)
    if role not in SOD_ROLES:
        raise UserError(
            f"role {role!r} needs no second admin; change it directly (requests are for "
            f"{', '.join(SOD_ROLES)})"
        )
    clean = user_service.parse_scopes(scopes)
    _check_applicable(session, action, username, role)
    if _pending(session, username):
        raise UserError(f"a request about {username!r} is already pending; decide it first")
    row = RoleRequest(
        action=action,
        username=username,
        role=role,
        scopes=json.dumps(clean, sort_keys=True),
        display_name=(display_name or "")[:128],
        requested_by=actor,
        requested_at=utcnow(),
        state="pending",
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        role=actor_role,
        action="user.request",
        target=username,
        detail={"request": row.id, "change": action, "role": role, "scopes": clean},
    )
    return row


def _pending(session: Session, username: str) -> RoleRequest | None:
    return session.scalar(
        select(RoleRequest).where(RoleRequest.username == username, RoleRequest.state == "pending")
    )


def _check_applicable(session: Session, action: str, username: str, role: str) -> None:
    user = user_service.get_user(session, username)
    if action == "create" and user is not None:
        raise UserError(f"user {username!r} already exists; pick another name")
    if action != "create" and user is None:
        raise UserError(f"no user called {username!r}; see the users table")
    if action == "enable" and (user.active or user.role != role):
        raise UserError(f"{username!r} is not a disabled {role} account")
    if action == "role" and user.role == role:
        raise UserError(f"{username!r} already has the role {role!r}")


def list_requests(session: Session, state: str | None = "pending") -> list[RoleRequest]:
    """Return requests in ``state`` (None: all), newest first."""
    query = select(RoleRequest).order_by(RoleRequest.id.desc())
    if state is not None:
        query = query.where(RoleRequest.state == state)
    return list(session.scalars(query))


def _open_request(session: Session, request_id: object) -> RoleRequest:
    try:
        rid = int(request_id)
    except (TypeError, ValueError):
        raise UserError(f"request id {request_id!r} is not a number") from None
    if not 0 < rid < 2**63:
        raise UserError(f"no request #{str(rid)[:20]}; see the pending requests table")
    row = session.get(RoleRequest, rid)
    if row is None:
        raise UserError(f"no request #{rid}; see the pending requests table")
    if row.state != "pending":
        raise UserError(f"request #{rid} is already {row.state}")
    return row


def approve(
    session: Session, request_id: object, *, approver: str, approver_role: str
) -> tuple[RoleRequest, str | None]:
    """Return (request, one-time password of a created account or None) after applying it.

    ``approver`` must be an admin other than the requester and the account concerned.
    """
    row = _open_request(session, request_id)
    if approver_role != "admin":
        raise UserError("only an admin may approve account requests")
    if approver in (row.requested_by, row.username):
        raise UserError(
            f"request #{row.id}: the approver must be a second admin, not the requester or "
            "the account concerned"
        )
    _check_applicable(session, row.action, row.username, row.role)
    who = {"actor": row.requested_by, "actor_role": "admin", "approved_by": approver}
    password = None
    if row.action == "create":
        _user, password = user_service.create_user(
            session,
            row.username,
            row.role,
            None,
            scopes=row.scopes,
            display_name=row.display_name,
            **who,
        )
    elif row.action == "enable":
        user_service.set_active(session, row.username, True, **who)
    else:
        user_service.set_role_and_scopes(
            session, row.username, role=row.role, scopes=row.scopes, **who
        )
    _close(session, row, "approved", approver, approver_role)
    return row, password


def reject(session: Session, request_id: object, *, actor: str, actor_role: str) -> RoleRequest:
    """Return the request after a second admin rejected it (or its requester cancelled it)."""
    row = _open_request(session, request_id)
    if actor_role != "admin":
        raise UserError("only an admin may decide account requests")
    state = "cancelled" if actor == row.requested_by else "rejected"
    return _close(session, row, state, actor, actor_role)


def _close(
    session: Session, row: RoleRequest, state: str, actor: str, actor_role: str
) -> RoleRequest:
    row.state, row.decided_by, row.decided_at = state, actor, utcnow()
    verb = {"approved": "approve", "rejected": "reject", "cancelled": "cancel"}[state]
    audit.record(
        session,
        actor=actor,
        role=actor_role,
        action=f"user.request.{verb}",
        target=row.username,
        detail={
            "request": row.id,
            "change": row.action,
            "role": row.role,
            "requested_by": row.requested_by,
            "decided_by": actor,
        },
    )
    return row
