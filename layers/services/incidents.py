"""Incidents: validated intake with spatial assignment, queries for the map, KPI basics.

``create_incident`` is the one way an incident enters the database (API, Open311, import,
simulator): it validates, assigns the grid, the responsible center and the grid worker, sets
the SLA deadline and logs the first workflow event.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from layers.codes import mask_name, mask_phone
from layers.models import SOURCES, Category, Incident, IncidentEvent, Responder, utcnow
from layers.services.spatial import locator

log = logging.getLogger(__name__)

CATEGORIES_FILE = Path(__file__).resolve().parents[1] / "data" / "categories_v1.json"
OPEN_STATUSES = ("collected", "registered", "dispatched", "handling", "reported")


class IncidentInputError(ValueError):
    """An incident failed validation; ``errors`` lists {field, message} items."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class IncidentIn(BaseModel):
    """An incident as submitted (WGS-84 coordinates)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lon: float = Field(..., ge=-180, le=180, description="longitude, WGS-84 degrees")
    lat: float = Field(..., ge=-90, le=90, description="latitude, WGS-84 degrees")
    category: str = Field(..., min_length=1, max_length=32, description="category code, e.g. ENV")
    priority: int = Field(3, ge=1, le=4, description="1 urgent, 2 high, 3 normal, 4 low")
    source: str = Field("api", description="one of " + ", ".join(SOURCES))
    description: str = Field("", max_length=4000)
    reporter_name: str = Field("", max_length=64)
    reporter_phone: str = Field("", max_length=32, pattern=r"^[0-9+\- ]*$")
    occurred_at: dt.datetime | None = Field(None, description="ISO 8601 with timezone")
    external_id: str | None = Field(None, max_length=64)

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"unknown source {v!r}; use one of {', '.join(SOURCES)}")
        return v

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-11-23T08:00:00+08:00")
        return v


@lru_cache(maxsize=1)
def default_categories() -> dict[str, dict]:
    """Return the shipped category dictionary (v1) as {code: entry}."""
    data = json.loads(CATEGORIES_FILE.read_text(encoding="utf-8"))
    return {c["code"]: c for c in data["categories"]}


def ensure_categories(session: Session) -> int:
    """Insert the shipped dictionary if the categories table is empty; return rows added."""
    if session.scalar(select(func.count()).select_from(Category)):
        return 0
    rows = [
        Category(dict_version="v1", code=c["code"], parent_code=c["parent_code"],
                 name_zh=c["name_zh"], name_en=c["name_en"], owner_level=c["owner_level"],
                 sla_hours=c["sla_hours"])
        for c in default_categories().values()
    ]  # fmt: skip
    session.add_all(rows)
    session.flush()
    return len(rows)


def _category(session: Session, code: str) -> Category | None:
    return (
        session.execute(
            select(Category).where(Category.code == code).order_by(Category.dict_version.desc())
        )
        .scalars()
        .first()
    )


def parse_incident(data: dict | IncidentIn) -> IncidentIn:
    """Return the validated incident or raise IncidentInputError naming each bad field."""
    if isinstance(data, IncidentIn):
        return data
    from pydantic import ValidationError

    try:
        return IncidentIn.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body",
             "message": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors()
        ]  # fmt: skip
        raise IncidentInputError(errors) from None


def create_incident(
    session: Session,
    data: dict | IncidentIn,
    *,
    actor: str = "api",
    role: str = "system",
    now: dt.datetime | None = None,
) -> Incident:
    """Return the new, flushed Incident after validation and spatial assignment.

    Raises IncidentInputError for a bad field, an unknown category or a point outside every
    grid of the city. The caller's session commits.
    """
    inc = parse_incident(data)
    now = now or utcnow()
    cat = _category(session, inc.category)
    if cat is None:
        ensure_categories(session)
        cat = _category(session, inc.category)
    if cat is None:
        raise IncidentInputError(
            [{"field": "category", "message": f"unknown category {inc.category!r}; "
              "GET /api/v1/categories lists the codes"}]
        )  # fmt: skip
    loc = locator(session)
    grid_id = int(loc.grid_at([inc.lon], [inc.lat])[0])
    if grid_id < 0:
        raise IncidentInputError(
            [{"field": "lon/lat", "message": f"({inc.lon}, {inc.lat}) lies outside every grid of "
              "the city; check the coordinates are WGS-84 (convert GCJ-02/BD-09 first) and "
              "not swapped"}]
        )  # fmt: skip
    owner = cat.owner_level or "grid"
    center_id = loc.center_for(grid_id, owner)
    assignee = (
        session.execute(
            select(Responder.id)
            .where(and_(Responder.grid_id == grid_id, Responder.available.is_(True)))
            .order_by(Responder.id)
        )
        .scalars()
        .first()
    )
    created = inc.occurred_at or now
    row = Incident(
        lon=inc.lon, lat=inc.lat, category_code=cat.code, priority=inc.priority,
        source=inc.source, description=inc.description, reporter_name=inc.reporter_name,
        reporter_phone=inc.reporter_phone, status="collected", created_at=created,
        due_at=created + dt.timedelta(hours=float(cat.sla_hours)), grid_id=grid_id,
        center_id=center_id, assignee_id=assignee, escalation_level=owner,
        external_id=inc.external_id,
    )  # fmt: skip
    session.add(row)
    session.flush()
    session.add(IncidentEvent(incident_id=row.id, from_status=None, to_status="collected",
                              action="create", actor=actor, role=role, ts=now,
                              reason=f"source={inc.source}"))  # fmt: skip
    return row


def public_dict(row: Incident, *, unmask: bool = False) -> dict:
    """Return the incident as JSON-ready dict; reporter name/phone masked unless ``unmask``."""
    return {
        "id": row.id, "lon": row.lon, "lat": row.lat, "category": row.category_code,
        "priority": row.priority, "source": row.source, "description": row.description,
        "reporter_name": row.reporter_name if unmask else mask_name(row.reporter_name),
        "reporter_phone": row.reporter_phone if unmask else mask_phone(row.reporter_phone),
        "status": row.status, "created_at": row.created_at.isoformat(),
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "closed_at": row.closed_at.isoformat() if row.closed_at else None,
        "grid_id": row.grid_id, "center_id": row.center_id, "assignee_id": row.assignee_id,
        "escalation_level": row.escalation_level, "duplicate_of": row.duplicate_of,
    }  # fmt: skip


def open_counts_by_grid(session: Session) -> dict[int, int]:
    """Return {grid id: number of open incidents}."""
    rows = session.execute(
        select(Incident.grid_id, func.count())
        .where(Incident.status.in_(OPEN_STATUSES), Incident.grid_id.is_not(None))
        .group_by(Incident.grid_id)
    ).all()
    return {int(g): int(n) for g, n in rows}


def summary(session: Session, now: dt.datetime | None = None) -> dict[str, int]:
    """Return headline counts: open, overdue, new today (UTC+8 day), closed today."""
    now = now or utcnow()
    cst = dt.timezone(dt.timedelta(hours=8))
    day_start = now.astimezone(cst).replace(hour=0, minute=0, second=0, microsecond=0)
    open_q = Incident.status.in_(OPEN_STATUSES)
    return {
        "open": session.scalar(select(func.count()).where(open_q)) or 0,
        "overdue": session.scalar(select(func.count()).where(open_q, Incident.due_at < now)) or 0,
        "new_today": session.scalar(
            select(func.count()).where(Incident.created_at >= day_start)) or 0,
        "closed_today": session.scalar(
            select(func.count()).where(Incident.closed_at >= day_start)) or 0,
    }  # fmt: skip


def incidents_since(session: Session, after_id: int, limit: int = 500) -> list[Incident]:
    """Return incidents with id > ``after_id`` (oldest first), for incremental map updates."""
    return list(
        session.execute(
            select(Incident).where(Incident.id > after_id).order_by(Incident.id).limit(limit)
        ).scalars()
    )
