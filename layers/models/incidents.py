"""Incidents (事件), the versioned category dictionary and the workflow log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from layers.models.base import Base, PointGeomMixin, UTCDateTime, gist_index, utcnow

# GB/T 30428 workflow stages, in order.
INCIDENT_STATUSES = (
    "collected",  # 信息收集
    "registered",  # 案卷建立
    "dispatched",  # 任务派遣
    "handling",  # 任务处理
    "reported",  # 处理反馈
    "closed",  # 核查结案
    "evaluated",  # 综合考评
)
#: the stages of a case still being worked (before 核查结案)
OPEN_STATUSES = INCIDENT_STATUSES[:5]
SOURCES = ("patrol", "hotline_12345", "police", "public", "camera", "opinion", "api", "open311")


class Category(Base):
    """One entry of the versioned incident-category dictionary."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("dict_version", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dict_version: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(String(32), index=True)
    parent_code: Mapped[str | None] = mapped_column(String(32))
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    owner_level: Mapped[str] = mapped_column(String(16), default="grid")
    sla_hours: Mapped[float] = mapped_column(Float, default=72.0)


class Incident(PointGeomMixin, Base):
    """A reported incident. Reporter name/phone are stored but only ever displayed masked."""

    __tablename__ = "incidents"
    # the map's live counts filter open cases by deadline and windows by time + place
    __table_args__ = (
        Index("ix_incidents_status_due_at", "status", "due_at"),
        Index("ix_incidents_created_at_lon_lat", "created_at", "lon", "lat"),
        gist_index("incidents"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lon: Mapped[float] = mapped_column(Float, index=True)
    lat: Mapped[float] = mapped_column(Float, index=True)
    category_code: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)  # 1 urgent .. 4 low
    source: Mapped[str] = mapped_column(String(16), default="patrol")
    description: Mapped[str] = mapped_column(Text, default="")
    reporter_name: Mapped[str] = mapped_column(String(64), default="")
    reporter_phone: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="collected", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    registered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    handled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"), index=True)
    escalation_level: Mapped[str] = mapped_column(String(16), default="grid")
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # SLA clock: set while an approved extension pauses it (see layers.services.sla)
    sla_paused_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    extension_hours: Mapped[float] = mapped_column(Float, default=0.0)
    # next time escalate_overdue looks at it (the deadline, then one SLA step per level)
    escalate_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` seen by the intake API and the incident it created."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class IncidentEvent(Base):
    """One workflow transition: who moved an incident from which state to which, and why."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
