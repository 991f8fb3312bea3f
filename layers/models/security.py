"""Accounts, API tokens, the hash-chained audit log, redaction rules (and pending changes to
them) and unmask grants."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from layers.models.base import Base, UTCDateTime, utcnow

ROLES = ("operator", "dispatcher", "privacy_officer", "auditor", "admin")


class User(Base):
    """A person who logs in. ``scopes`` is JSON: {"districts": [...], "cameras": [...]}."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    scopes: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A machine client's bearer token; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """An append-only, hash-chained audit record: ``hash`` covers ``prev_hash`` and the body."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32), default="")
    action: Mapped[str] = mapped_column(String(48), index=True)
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """The audit log's head (one row, id 1): last ``seq`` and ``hash``, updated with each append.

    Appends update this row first, which serialises concurrent writers (row/write lock) and
    lets ``verify`` detect a truncated tail (the checkpoint names an entry that is gone).
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: id of the key (a file outside the database) sealing the chain; None: not keyed yet
    key_id: Mapped[str | None] = mapped_column(String(32))
    #: first seq whose hash is keyed (HMAC); entries before it keep their plain SHA-256
    key_from_seq: Mapped[int | None] = mapped_column(Integer)
    #: HMAC of (seq, hash, key_from_seq) under the key: only the key holder can move the head
    mac: Mapped[str | None] = mapped_column(String(64))


class RedactionRule(Base):
    """A versioned redaction rule; ``config`` is JSON validated by ``streams.rules``."""

    __tablename__ = "redaction_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16), index=True)
    scope_value: Mapped[str | None] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    config: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: the second privacy officer who approved this version (a change lowering protection)
    approved_by: Mapped[str | None] = mapped_column(String(64))


class RuleChange(Base):
    """A rule change awaiting (or past) a second privacy officer's decision.

    ``op`` is ``save`` (``config`` holds the new rule) or ``deactivate`` (the scope falls back
    to broader rules). ``base_rule_id`` is the scope's active version when it was proposed:
    approving after the scope changed is refused. ``lowers`` is the JSON list of reasons.
    """

    __tablename__ = "rule_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_value: Mapped[str | None] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(12))
    config: Mapped[str | None] = mapped_column(Text)
    base_rule_id: Mapped[int | None] = mapped_column(Integer)
    lowers: Mapped[str] = mapped_column(Text, default="[]")
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), index=True, default="pending")
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rule_id: Mapped[int | None] = mapped_column(Integer)


class UnmaskGrant(Base):
    """Time-limited permission for one user to see unredacted video of some cameras."""

    __tablename__ = "unmask_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    grantee: Mapped[str] = mapped_column(String(64), index=True)
    camera_ids: Mapped[str] = mapped_column(Text)  # JSON list of camera ids
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
