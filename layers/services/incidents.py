"""Incidents: validated intake with spatial assignment, queries for the map, KPI basics.

``create_incident`` is the one way an incident enters the database (API, Open311, import,
simulator): it validates, assigns the grid, the responsible center and the grid worker, sets
the SLA deadline and logs the first workflow event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from layers.codes import mask_name, mask_phone
from layers.db import Database
from layers.events import emit
from layers.models import (
    OPEN_STATUSES,
    SOURCES,
    Category,
    IdempotencyKey,
    Incident,
    IncidentEvent,
    utcnow,
)
from layers.services import get_row
from layers.services.scope import Scope
from layers.services.spatial import GridLocator, locator

log = logging.getLogger(__name__)

CATEGORIES_FILE = Path(__file__).resolve().parents[1] / "data" / "categories_v1.json"


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
        if v is not None:
            now = utcnow()
            if not (dt.datetime(2000, 1, 1, tzinfo=dt.UTC) <= v <= now + dt.timedelta(days=1)):
                raise ValueError("must lie between 2000-01-01 and now (not in the future)")
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


class DuplicateExternalIdError(IncidentInputError):
    """An ``external_id`` that another incident already carries was submitted."""


class IdempotencyConflictError(IncidentInputError):
    """An ``Idempotency-Key`` was reused with a different request body."""


def _check_external_id(session: Session, external_id: str | None) -> None:
    if not external_id:
        return
    other = session.scalar(select(Incident.id).where(Incident.external_id == external_id))
    if other is not None:
        raise DuplicateExternalIdError(
            [{"field": "external_id", "message": f"{external_id!r} is already incident {other}; "
              "send a new external_id or GET /api/v1/incidents/{other}"}]
        )  # fmt: skip


@dataclass
class _Prepared:
    values: dict
    reason: str
    id: int | None = None

    def row(self) -> SimpleNamespace:
        """Return a read-only stand-in of the inserted row (for ``public_dict``)."""
        return SimpleNamespace(**_ROW_DEFAULTS, **self.values, id=self.id)


_ROW_DEFAULTS = {"registered_at": None, "dispatched_at": None, "handled_at": None,
                 "reported_at": None, "closed_at": None, "evaluated_at": None,
                 "duplicate_of": None, "rework_count": 0, "sla_paused_at": None,
                 "escalated_at": None, "extension_hours": 0.0}  # fmt: skip


def _prepare(
    session: Session,
    inc: IncidentIn,
    *,
    now: dt.datetime,
    loc: GridLocator,
    grid_id: int | None = None,
    cache: dict | None = None,
) -> _Prepared:
    """Return the validated, routed but unsaved incident row (raises IncidentInputError)."""
    from layers.services import sla as sla_service
    from layers.services.routing import route_incident

    cache = cache if cache is not None else {}
    cats = cache.setdefault("category", {})
    cat = cats.get(inc.category)
    if cat is None:
        cat = _category(session, inc.category)
        if cat is None:
            ensure_categories(session)
            cat = _category(session, inc.category)
        if cat is None:
            raise IncidentInputError(
                [{"field": "category", "message": f"unknown category {inc.category!r}; "
                  "GET /api/v1/categories lists the codes"}]
            )  # fmt: skip
        cats[inc.category] = cat
    if grid_id is None:
        grid_id = int(loc.grid_at([inc.lon], [inc.lat])[0])
    if grid_id < 0:
        raise IncidentInputError(
            [{"field": "lon/lat", "message": f"({inc.lon}, {inc.lat}) lies outside every grid of "
              "the city; check the coordinates are WGS-84 (convert GCJ-02/BD-09 first) and "
              "not swapped"}]
        )  # fmt: skip
    _check_external_id(session, inc.external_id)
    owner = cat.owner_level or "grid"
    routes = cache.setdefault("route", {})
    route = routes.get((grid_id, owner))
    if route is None:
        route = route_incident(
            session, grid_id=grid_id, lon=inc.lon, lat=inc.lat, level=owner, loc=loc
        )
        if route.reason == "grid worker":  # independent of the exact point: reusable
            routes[(grid_id, owner)] = route
    created = inc.occurred_at.astimezone(dt.UTC) if inc.occurred_at else now
    due = sla_service.deadline(created, float(cat.sla_hours), inc.priority)
    values = dict(
        lon=inc.lon, lat=inc.lat, category_code=cat.code, priority=inc.priority,
        source=inc.source, description=inc.description, reporter_name=inc.reporter_name,
        reporter_phone=inc.reporter_phone, status="collected", created_at=created,
        due_at=due, escalate_at=due, grid_id=grid_id,
        center_id=route.center_id, assignee_id=route.assignee_id, escalation_level=owner,
        external_id=inc.external_id,
    )  # fmt: skip
    return _Prepared(values, f"source={inc.source}; routed: {route.reason}")


def live_event_data(incident_id: int, values: dict) -> dict:
    """Return the ``incident.created`` live-event payload (no reporter data, no description)."""
    created = values["created_at"]
    return {"id": int(incident_id), "grid_id": values.get("grid_id"),
            "category": values["category_code"], "priority": int(values["priority"]),
            "status": values.get("status") or "collected", "source": values.get("source"),
            "lon": round(float(values["lon"]), 6), "lat": round(float(values["lat"]), 6),
            "created_at": created.isoformat() if created is not None else None}  # fmt: skip


def _created_event(incident_id: int, reason: str, actor: str, role: str, now: dt.datetime) -> dict:
    return dict(incident_id=incident_id, from_status=None, to_status="collected",
                action="create", actor=actor, role=role, ts=now, reason=reason)  # fmt: skip


def create_incident(
    session: Session,
    data: dict | IncidentIn,
    *,
    actor: str = "api",
    role: str = "system",
    now: dt.datetime | None = None,
) -> Incident:
    """Return the new, flushed Incident after validation, spatial assignment and routing.

    The point's grid decides the territory; the category's ``owner_level`` the level and
    center; ``layers.services.routing`` the assignee; the deadline counts working hours
    (``layers.services.sla``). Raises IncidentInputError for a bad field, an unknown category,
    a point outside every grid of the city or a reused external id (nothing is added to the
    session then). The caller's session commits; the commit publishes an
    ``incident.created`` live event (``layers.events``).
    """
    inc = parse_incident(data)
    now = now or utcnow()
    prep = _prepare(session, inc, now=now, loc=locator(session))
    row = Incident(**prep.values)
    session.add(row)
    session.flush()
    session.add(IncidentEvent(**_created_event(row.id, prep.reason, actor, role, now)))
    emit(session, "incident.created", live_event_data(row.id, prep.values))
    return row


def body_hash(inc: IncidentIn) -> str:
    """Return the SHA-256 of the validated incident (canonical JSON), for idempotency checks."""
    return hashlib.sha256(inc.model_dump_json().encode()).hexdigest()


def create_idempotent(
    session: Session,
    data: dict | IncidentIn,
    idempotency_key: str | None,
    *,
    actor: str = "api",
    role: str = "system",
    now: dt.datetime | None = None,
) -> tuple[Incident, bool]:
    """Return (incident, created): a retry with the same key returns the first incident.

    Raises
    ------
    IdempotencyConflictError
        If the key was used before with a different body.
    IncidentInputError
        As ``create_incident``.
    """
    inc = parse_incident(data)
    if not idempotency_key:
        return create_incident(session, inc, actor=actor, role=role, now=now), True
    digest = body_hash(inc)
    seen = session.get(IdempotencyKey, idempotency_key)
    if seen is not None:
        if seen.body_hash != digest:
            raise IdempotencyConflictError(
                [{"field": "Idempotency-Key", "message": f"{idempotency_key!r} was already used "
                  f"for incident {seen.incident_id} with a different body; use a new key for a "
                  "new incident"}]
            )  # fmt: skip
        return get_row(session, Incident, seen.incident_id), False
    row = create_incident(session, inc, actor=actor, role=role, now=now)
    session.add(IdempotencyKey(key=idempotency_key, incident_id=row.id, body_hash=digest,
                               created_at=now or utcnow()))  # fmt: skip
    return row, True


def get_incident(session: Session, incident_id: int, *, scope: Scope) -> Incident:
    """Return the Incident with this id; raise NotFoundError if none is in ``scope``."""
    from layers.services import NotFoundError

    row = get_row(session, Incident, incident_id)
    if row is None or not scope.allows_grid(session, row.grid_id):
        raise NotFoundError(f"no incident with id {incident_id!r}")
    return row


def list_incidents(
    session: Session,
    *,
    scope: Scope,
    bbox: tuple[float, float, float, float] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    category: str | list[str] | None = None,
    status: str | list[str] | None = None,
    grid_id: int | None = None,
    include_duplicates: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """Return (page of incidents newest first, total matching) for the filters.

    Parameters
    ----------
    scope : layers.services.scope.Scope
        What the reader may see (a district scope: incidents in its grids only).
    bbox : (minx, miny, maxx, maxy), optional
        WGS-84 window on the indexed lon/lat columns.
    start, end : aware datetime, optional
        ``start <= created_at < end``.
    category : str or list, optional
        Category codes; a parent code (e.g. ``DISPUTE``) also matches its children.
    status : str or list, optional
        Workflow statuses, or ``open``.
    """
    from sqlalchemy import or_

    from layers.services import bbox_filter_points, check_bbox

    conds = []
    box = check_bbox(bbox)
    if box:
        conds.append(bbox_filter_points(Incident, box))
    if start is not None:
        conds.append(Incident.created_at >= start)
    if end is not None:
        conds.append(Incident.created_at < end)
    if category:
        codes = [category] if isinstance(category, str) else list(category)
        # equality and an escaped prefix: a "%" or "_" in a code is a character, not a wildcard
        conds.append(or_(*[or_(Incident.category_code == c,
                               Incident.category_code.startswith(c + ".", autoescape=True))
                           for c in codes]))  # fmt: skip
    if status:
        statuses = [status] if isinstance(status, str) else list(status)
        expanded = []
        for st in statuses:
            expanded.extend(OPEN_STATUSES if st == "open" else [st])
        conds.append(Incident.status.in_(expanded))
    if grid_id is not None:
        conds.append(Incident.grid_id == int(grid_id))
    conds += scope.incidents(session)
    if not include_duplicates:
        conds.append(Incident.duplicate_of.is_(None))
    total = session.scalar(select(func.count()).select_from(Incident).where(*conds)) or 0
    rows = session.execute(
        select(Incident).where(*conds).order_by(Incident.created_at.desc(), Incident.id.desc())
        .limit(int(limit)).offset(int(offset))
    ).scalars()  # fmt: skip
    return list(rows), int(total)


def list_categories(session: Session) -> list[dict]:
    """Return the newest dictionary's categories as dicts (code, names, owner level, SLA)."""
    ensure_categories(session)
    rows = session.execute(select(Category).order_by(Category.code, Category.dict_version.desc()))
    out: dict[str, dict] = {}
    for c in rows.scalars():
        out.setdefault(c.code, {"code": c.code, "parent_code": c.parent_code, "name_zh": c.name_zh,
                                "name_en": c.name_en, "owner_level": c.owner_level,
                                "sla_hours": c.sla_hours, "dict_version": c.dict_version})  # fmt: skip
    return list(out.values())


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
        "rework_count": row.rework_count, "external_id": row.external_id,
        "registered_at": _iso(row.registered_at), "dispatched_at": _iso(row.dispatched_at),
        "reported_at": _iso(row.reported_at), "escalated_at": _iso(row.escalated_at),
        "sla_paused": row.sla_paused_at is not None,
    }  # fmt: skip


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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


def _grid_worker_routes(session: Session, loc: GridLocator, grid_ids) -> dict:
    """Return {(grid id, "grid"): Route} for the grids (of a batch) that have a free worker."""
    from layers.models import Responder
    from layers.services.routing import Route

    wanted = sorted({int(g) for g in grid_ids if g >= 0})
    if not wanted:
        return {}
    rows = session.execute(
        select(Responder.grid_id, func.min(Responder.id))
        .where(Responder.grid_id.in_(wanted), Responder.available.is_(True))
        .group_by(Responder.grid_id)
    ).all()
    return {
        (int(g), "grid"): Route("grid", loc.center_for(int(g), "grid"), int(r), "grid worker")
        for g, r in rows
    }


@dataclass
class _Job:
    data: IncidentIn
    key: str | None
    actor: str
    role: str
    future: Future


class IntakeWriter:
    """A single writer thread that commits queued incidents in groups (group commit).

    Request threads call ``create``; the writer drains the queue, creates up to
    ``max_batch`` incidents in one transaction, commits, and only then resolves each caller's
    future, so an acknowledged incident is always on disk. If a group's commit fails, its
    incidents are retried one per transaction so one bad row cannot sink the others.
    """

    def __init__(self, db: Database, *, max_batch: int = 256, linger_s: float = 0.004) -> None:
        """``linger_s``: how long a batch waits for more incidents before it is written."""
        self.db = db
        self.max_batch = int(max_batch)
        self.linger_s = float(linger_s)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gridsight-intake", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0
        self.written = 0

    def start(self) -> IntakeWriter:
        """Start the writer thread (idempotent); return self."""
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued work and stop the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    def submit(
        self,
        data: dict | IncidentIn,
        *,
        idempotency_key: str | None = None,
        actor: str = "api",
        role: str = "system",
    ) -> Future:
        """Return a Future of ``(public dict, created)``; validates the body first.

        Raises
        ------
        IncidentInputError
            At once, for a body that fails validation.
        """
        inc = parse_incident(data)
        self.start()
        fut: Future = Future()
        self._queue.put(_Job(inc, idempotency_key, actor, role, fut))
        return fut

    def create(
        self,
        data: dict | IncidentIn,
        *,
        idempotency_key: str | None = None,
        actor: str = "api",
        role: str = "system",
        timeout: float = 60.0,
    ) -> tuple[dict, bool]:
        """Return ``(public dict, created)`` once the incident is committed."""
        fut = self.submit(data, idempotency_key=idempotency_key, actor=actor, role=role)
        return fut.result(timeout=timeout)

    def _one(self, session: Session, job: _Job) -> tuple[dict, bool]:
        row, created = create_idempotent(session, job.data, job.key, actor=job.actor, role=job.role)
        return public_dict(row), created

    def _batch(self, session: Session, batch: list[_Job]) -> list[tuple[_Job, object]]:
        """Return (job, result or exception) for a batch written in ``session`` (not committed).

        One vectorised grid lookup for the whole batch, one INSERT flush for the incidents,
        one for their events and keys; a key repeated inside the batch gets the first row.
        """
        now = utcnow()
        loc = locator(session)
        gids = loc.grid_at([j.data.lon for j in batch], [j.data.lat for j in batch])
        cache: dict = {"route": _grid_worker_routes(session, loc, gids)}
        keyed = [j.key for j in batch if j.key]
        known_keys = (
            {
                k.key: k
                for k in session.scalars(
                    select(IdempotencyKey).where(IdempotencyKey.key.in_(keyed))
                )
            }
            if keyed
            else {}
        )
        plan: list[tuple[_Job, object]] = []
        first_of_key: dict[str, tuple[str, int]] = {}
        external_ids: set[str] = set()
        for k, job in enumerate(batch):
            try:
                digest = body_hash(job.data) if job.key else ""
                if job.key in first_of_key:
                    first_digest, first_k = first_of_key[job.key]
                    if first_digest != digest:
                        raise IdempotencyConflictError([{"field": "Idempotency-Key", "message":
                            f"{job.key!r} was already used with a different body; use a new key"}])  # fmt: skip
                    plan.append((job, ("same", first_k)))
                    continue
                if job.key:
                    seen = known_keys.get(job.key)
                    if seen is not None:
                        if seen.body_hash != digest:
                            raise IdempotencyConflictError([{"field": "Idempotency-Key",
                                "message": f"{job.key!r} was already used for incident "
                                f"{seen.incident_id} with a different body; use a new key"}])  # fmt: skip
                        plan.append((job, ("replay", seen.incident_id)))
                        continue
                ext = job.data.external_id
                if ext and ext in external_ids:
                    raise DuplicateExternalIdError([{"field": "external_id", "message":
                        f"{ext!r} appears twice in the same batch; send each once"}])  # fmt: skip
                prep = _prepare(session, job.data, now=now, loc=loc, grid_id=int(gids[k]),
                                cache=cache)  # fmt: skip
                if ext:
                    external_ids.add(ext)
                if job.key:
                    first_of_key[job.key] = (digest, k)
                plan.append((job, prep))
            except IncidentInputError as exc:
                plan.append((job, exc))
        new = [p for _, p in plan if isinstance(p, _Prepared)]
        if new:
            ids = session.scalars(
                insert(Incident).returning(Incident.id, sort_by_parameter_order=True),
                [p.values for p in new],
            ).all()
            for p, new_id in zip(new, ids, strict=True):
                p.id = int(new_id)
            events, keys = [], []
            for job, p in plan:
                if isinstance(p, _Prepared):
                    events.append(_created_event(p.id, p.reason, job.actor, job.role, now))
                    if job.key:
                        keys.append({"key": job.key, "incident_id": p.id,
                                     "body_hash": body_hash(job.data), "created_at": now})  # fmt: skip
            session.execute(insert(IncidentEvent), events)
            for p in new:
                emit(session, "incident.created", live_event_data(p.id, p.values))
            if keys:
                session.execute(insert(IdempotencyKey), keys)
        out: list[tuple[_Job, object]] = []
        for job, p in plan:
            if isinstance(p, _Prepared):
                out.append((job, (public_dict(p.row()), True)))
            elif isinstance(p, tuple) and p[0] == "same":
                out.append((job, (public_dict(plan[p[1]][1].row()), False)))
            elif isinstance(p, tuple):
                out.append((job, (public_dict(get_row(session, Incident, p[1])), False)))
            else:
                out.append((job, p))
        return out

    def _run(self) -> None:
        try:  # numba's parallel grid lookup: for <= max_batch points, waking a thread pool
            import numba  # costs more than the work (ms under load); thread-local setting

            numba.set_num_threads(1)
        except (ImportError, ValueError):
            log.debug("numba thread count unchanged")
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            # group commit: wait a few ms for company (PostgreSQL's commit_delay idea); each
            # batch pays the grid-version check, the route and key look-ups and the COMMIT
            # once, which at 100 posts/s cut the database's CPU per incident
            linger_until = time.monotonic() + self.linger_s
            while len(batch) < self.max_batch:
                try:
                    wait = linger_until - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, object]] = []
        try:
            with self.db.session() as session:
                outcomes = self._batch(session, batch)
            self.batches += 1
        except SQLAlchemyError:
            log.warning("group commit of %s incidents failed; retrying one by one", len(batch))
            outcomes = []
            for job in batch:
                try:
                    with self.db.session() as session:
                        outcomes.append((job, self._one(session, job)))
                except (IncidentInputError, SQLAlchemyError) as exc:
                    outcomes.append((job, exc))
        except Exception as exc:  # noqa: BLE001 - every waiting caller must get an answer
            log.exception("intake writer failed")
            outcomes = [(job, exc) for job in batch]
        for job, result in outcomes:
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                self.written += 1
                job.future.set_result(result)
