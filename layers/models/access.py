"""Server-side login sessions and two-person requests for privileged accounts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from layers.models.base import Base, UTCDateTime, utcnow

# Roles whose accounts one admin alone may not create, enable or give: they watch or limit
# the admin (auditor, privacy officer), or could approve for the admin (another admin).
SOD_ROLES = ("admin", "auditor", "privacy_officer")
REQUEST_ACTIONS = ("create", "enable", "role")
REQUEST_STATES = ("pending", "approved", "rejected", "cancelled")


class UserSession(Base):
    """One signed-in browser: the signed cookie carries a random id, the row its SHA-256.

    A session is live while ``revoked_at`` is empty and it was used within the idle limit;
    logout, disabling the account and changes of password, role or scopes set ``revoked_at``.
    """

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str] = mapped_column(String(32), default="")
    client: Mapped[str] = mapped_column(String(64), default="")


class RoleRequest(Base):
    """A pending change of a privileged account that a second admin must approve.

    ``action`` is "create" (a new account of ``role``), "enable" (re-enable a disabled
    account of ``role``) or "role" (give an existing account ``role``); ``scopes`` is JSON.
    """

    __tablename__ = "role_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text, default="{}")
    display_name: Mapped[str] = mapped_column(String(128), default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
