"""An admin's account changes, each one transaction: done at once, or filed for a second admin.

Creating an account, giving it a role or enabling it again goes through the separation-of-
duties rule (``users.needs_second_person``): for an admin, auditor or privacy officer the
change is filed as a request (``role_requests``) that another admin approves; any other role
changes at once. Every change is audited by the services it calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from layers.services import role_requests
from layers.services import users as user_service


@dataclass(frozen=True)
class AccountChange:
    """What an account change did: ``filed`` a request for a second admin, or made it.

    ``user`` and ``password`` (shown once) are set when an account was created.
    """

    filed: Any = None
    user: Any = None
    password: str | None = None


def create_account(
    session: Session, name: str, role: str, scopes: dict, *, actor: str, actor_role: str
) -> AccountChange:
    """Return the change after creating ``name`` with ``role`` and ``scopes`` (or filing it)."""
    name = (name or "").strip()
    if user_service.needs_second_person(role):
        return AccountChange(filed=role_requests.request_change(
            session, "create", name, role, scopes=scopes, actor=actor, actor_role=actor_role
        ))  # fmt: skip
    user, password = user_service.create_user(
        session, name, role, None, scopes=scopes, actor=actor, actor_role=actor_role
    )
    return AccountChange(user=user, password=password)


def change_role(
    session: Session, target: str, role: str | None, *, actor: str, actor_role: str
) -> AccountChange:
    """Return the change after giving ``target`` the ``role`` (or filing it).

    Raises
    ------
    users.UserError
        If no role is given, the account does not exist or the change is refused.
    """
    if not role:
        raise user_service.UserError("choose the new role in the role list first")
    who = {"actor": actor, "actor_role": actor_role}
    if user_service.get_user(session, target) is not None and user_service.needs_second_person(
        role
    ):
        return AccountChange(
            filed=role_requests.request_change(session, "role", target, role, **who)
        )
    user_service.set_role_and_scopes(session, target, role=role, **who)
    return AccountChange()


def set_account_active(
    session: Session, target: str, active: bool, *, actor: str, actor_role: str
) -> AccountChange:
    """Return the change after disabling or enabling ``target`` (enabling a privileged
    account again is filed for a second admin)."""
    who = {"actor": actor, "actor_role": actor_role}
    user = user_service.get_user(session, target)
    if active and user is not None and not user.active:
        if user_service.needs_second_person(user.role):
            return AccountChange(
                filed=role_requests.request_change(session, "enable", target, user.role, **who)
            )
    user_service.set_active(session, target, active, **who)
    return AccountChange()
