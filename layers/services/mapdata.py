"""Map queries for the operator's situation map: filtered incidents, per-grid counts, KPIs.

Every function takes an open SQLAlchemy ``Session`` (or a ``Database`` where it says so) and
returns plain, JSON-ready data; pages and routes call these and never write SQL themselves.
Positions are WGS-84 (EPSG:4326); shifting to GCJ-02 happens at the display boundary.

The central object is ``MapFilter``: the time window (with an optional playback instant), the
category groups and the administrative area the operator drilled down to. "Open at T" means
created in the window no later than T and not closed by T; for the live view (no playback
instant) it is the incident's current status.
"""

from __future__ import annotations

import bisect
import datetime as dt
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import ParamSpec, TypeVar

import numpy as np
import shapely
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from layers.db import Database
from layers.models import AdminArea, Camera, Category, Grid, Incident, IncidentEvent
from layers.services import MAX_ROW_ID, NotFoundError, keep_recent
from layers.services.incidents import OPEN_STATUSES, default_categories
from layers.services.scope import Scope

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _sessioned(fn: Callable[P, R]) -> Callable[P, R]:
    """Let ``fn(session, ...)`` also be called with a ``Database`` (opens one session)."""

    @wraps(fn)
    def wrapper(db_or_session, *args, **kwargs):
        if isinstance(db_or_session, Database):
            with db_or_session.session() as s:
                return fn(s, *args, **kwargs)
        return fn(db_or_session, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24),
           "7d": dt.timedelta(days=7)}  # fmt: skip
CST = dt.timezone(dt.timedelta(hours=8))  # command centers count days in China Standard Time
MAX_CUSTOM_SPAN = dt.timedelta(days=366)


class MapFilterError(ValueError):
    """A map filter value is unusable; the message names the field and the fix."""


@dataclass(frozen=True)
class MapFilter:
    """Return-type of ``parse_filter``: what the operator chose to look at.

    Attributes
    ----------
    window : "1h", "24h", "7d" or "custom"
    start, end : aware datetimes, only for ``window == "custom"``
    playback : float or None
        Fraction 0..1 of the window shown (playback slider); None or 1 means live.
    categories : tuple of top-level category codes (empty: all)
    area_id : id of the district, street or community drilled down to (None: whole city)
    scope : what the viewer may see at all (``layers.services.scope.Scope``); required, so
        no query built from a filter can forget it
    """

    window: str = "24h"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    playback: float | None = None
    categories: tuple[str, ...] = ()
    area_id: int | None = None
    scope: Scope = field(kw_only=True)

    def time_range(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Return (window start, window end) as aware UTC datetimes."""
        if self.window == "custom":
            assert self.start is not None and self.end is not None
            return self.start, self.end
        return now - WINDOWS[self.window], now

    def instant(self, now: dt.datetime) -> dt.datetime | None:
        """Return the playback instant T, or None for the live view."""
        if self.playback is None or self.playback >= 1.0:
            return None if self.window != "custom" else self.time_range(now)[1]
        start, end = self.time_range(now)
        return start + (end - start) * max(0.0, self.playback)

    def key(self) -> str:
        """Return a short stable string identifying the filter (for cache keys and URLs)."""
        start = self.start.isoformat() if self.start else ""
        end = self.end.isoformat() if self.end else ""
        pb = "" if self.playback is None else f"{self.playback:.4f}"
        return (f"{self.window}|{start}|{end}|{pb}|{','.join(self.categories)}|"
                f"{self.area_id or ''}|{self.scope.key()}")  # fmt: skip


def _parse_time(name: str, value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime.combine(value, dt.time(), tzinfo=CST)
    else:
        try:
            out = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise MapFilterError(
                f"{name}: {value!r} is not a date/time; use ISO 8601 such as 2026-11-23T08:00+08:00"
            ) from None
    if out.tzinfo is None:
        out = out.replace(tzinfo=CST)  # a bare date from the date picker is a China-time day
    return out.astimezone(dt.UTC)


def parse_filter(data: dict | None, scope: Scope) -> MapFilter:
    """Return a validated MapFilter from a dict (e.g. a ``dcc.Store`` or URL query).

    ``scope`` is what the viewer may see (``dashboard.scoping.request_scope()`` in a request);
    every query built from the filter applies it.

    Raises
    ------
    MapFilterError
        Naming the bad field (window, start, end, playback, categories, area) and the fix.
    """
    if data is not None and not isinstance(data, dict):
        raise MapFilterError(f"filter: {type(data).__name__} is not an object of filter fields")
    if not isinstance(scope, Scope):
        raise TypeError("parse_filter: scope must be a layers.services.scope.Scope")
    data = dict(data or {})
    window = str(data.get("window") or "24h")
    if window not in (*WINDOWS, "custom"):
        raise MapFilterError(f"window: {window!r} is unknown; use 1h, 24h, 7d or custom")
    start = end = None
    if window == "custom":
        if not data.get("start") or not data.get("end"):
            raise MapFilterError("start/end: a custom window needs both a start and an end date")
        start = _parse_time("start", data["start"])
        end = _parse_time("end", data["end"])
        if isinstance(data["end"], str) and len(data["end"]) == 10:
            end = end + dt.timedelta(days=1)  # an end *date* includes that whole day
        if end <= start:
            raise MapFilterError("end: must be after start; swap the two dates")
        if end - start > MAX_CUSTOM_SPAN:
            raise MapFilterError("start/end: the custom window is longer than a year; shorten it")
    playback = data.get("playback")
    if playback is not None and playback != "":
        try:
            playback = float(playback)
        except (TypeError, ValueError):
            raise MapFilterError(
                f"playback: {playback!r} is not a number between 0 and 1"
            ) from None
        if not 0.0 <= playback <= 1.0 or math.isnan(playback):
            raise MapFilterError(f"playback: {playback} is outside 0..1")
    else:
        playback = None
    cats = data.get("categories") or ()
    if isinstance(cats, str):
        cats = [c for c in cats.split(",") if c]
    if not isinstance(cats, list | tuple) or not all(isinstance(c, str) for c in cats):
        raise MapFilterError("categories: give a list of top-level category codes")
    known = {c for c, e in default_categories().items() if e["parent_code"] is None}
    bad = [c for c in cats if c not in known]
    if bad:
        raise MapFilterError(
            f"categories: {bad[0]!r} is not a top-level category; use one of {', '.join(sorted(known))}"
        )
    area = data.get("area_id", data.get("area"))
    if area in ("", None):
        area = None
    else:
        try:
            area = int(str(area)[:20])
        except (TypeError, ValueError):
            raise MapFilterError(
                f"area_id: {str(area)[:40]!r} is not an area id (an integer)"
            ) from None
        if not 1 <= area <= MAX_ROW_ID:
            raise MapFilterError(f"area_id: {area} is not an area id; give 1..{MAX_ROW_ID}")
    return MapFilter(window=window, start=start, end=end, playback=playback,
                     categories=tuple(sorted(cats)), area_id=area, scope=scope)  # fmt: skip


# -- building blocks -------------------------------------------------------------------------


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def category_group(code: str) -> str:
    """Return the top-level category code of a (possibly dotted) category code."""
    return code.split(".", 1)[0]


def _category_condition(groups: Sequence[str]):
    if not groups:
        return None
    return or_(*[or_(Incident.category_code == g, Incident.category_code.like(f"{g}.%"))
                 for g in groups])  # fmt: skip


def area_grid_ids_query(area_level: str, area_id: int):
    """Return a SELECT of the grid ids inside an area of ``area_level`` (SQL subquery)."""
    if area_level == "community":
        communities = select(AdminArea.id).where(AdminArea.id == area_id)
    elif area_level == "street":
        communities = select(AdminArea.id).where(AdminArea.parent_id == area_id)
    elif area_level == "district":
        street = aliased(AdminArea)
        communities = (
            select(AdminArea.id)
            .join(street, AdminArea.parent_id == street.id)
            .where(street.parent_id == area_id)
        )
    else:  # the city: every grid
        return select(Grid.id)
    return select(Grid.id).where(Grid.community_id.in_(communities))


def _area_condition(session: Session, area_id: int | None, *, use_index: bool = False):
    """Return "incident in a grid of the area" (None for the whole city).

    By default the grid_id index is kept out of play (``grid_id + 0``) so time-window and
    id-range queries scan their few thousand rows instead of every incident of the area;
    whole-history counts (``use_index``) are better served by the grid index.
    """
    if area_id is None:
        return None
    level = session.scalar(select(AdminArea.level).where(AdminArea.id == area_id))
    if level is None:
        raise MapFilterError(f"area: no administrative area with id {area_id}; clear the filter")
    if level == "city":
        return None
    col = Incident.grid_id if use_index else Incident.grid_id + 0
    return col.in_(area_grid_ids_query(level, area_id))


@_sessioned
def incident_conditions(
    session: Session, f: MapFilter, now: dt.datetime | None = None, *, open_only: bool = False
) -> list:
    """Return SQL conditions selecting the incidents ``f`` shows (created in window, up to T)."""
    now = _now(now)
    start, end = f.time_range(now)
    t = f.instant(now)
    conds = [Incident.created_at >= start, Incident.created_at <= (t or end)]
    cat = _category_condition(f.categories)
    if cat is not None:
        conds.append(cat)
    area = _area_condition(session, f.area_id)
    if area is not None:
        conds.append(area)
    conds += f.scope.incidents(session, use_index=False)
    if open_only:
        # status || '' (and closed_at || '') keep the planner on the created_at range: the
        # window holds a few thousand rows, while "open" matches a large share of the table
        if t is None:
            conds.append((Incident.status + "").in_(OPEN_STATUSES))
        else:
            conds.append(or_(Incident.closed_at.is_(None), Incident.closed_at > t))
    return conds


# -- per-grid counts and incremental changes -----------------------------------------------


@_sessioned
def grid_counts(
    session: Session,
    f: MapFilter,
    now: dt.datetime | None = None,
    grid_ids: Iterable[int] | None = None,
) -> dict[int, int]:
    """Return {grid id: incidents open at T} for the filter (only grids with at least one).

    With ``grid_ids`` only those grids are counted (for incremental updates); grids among
    them with no open incident are returned with 0 so the client can clear them.
    """
    conds = incident_conditions(session, f, now, open_only=True)
    conds.append((Incident.grid_id + 0) >= 0)  # not NULL, without steering to the grid index
    wanted = None
    if grid_ids is not None:
        allowed = f.scope.grid_ids(session)
        wanted = sorted({int(g) for g in grid_ids if allowed is None or int(g) in allowed})
        if not wanted:
            return {}
        conds.append(Incident.grid_id.in_(wanted))
    rows = session.execute(
        select(Incident.grid_id, func.count()).where(*conds).group_by(Incident.grid_id)
    ).all()
    out = {int(g): int(n) for g, n in rows}
    if wanted is not None:
        for g in wanted:
            out.setdefault(g, 0)
    return out


@dataclass
class _SharedCounts:
    """Open counts per grid that one session computed and the others of this process reuse.

    ``entries[(database, filter key)][grid] = (count, as_of, monotonic time)``: ``count`` is
    exact for every workflow event up to ``as_of`` (the computing session's gap-safe cursor).
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple[str, str], dict[int, tuple[int, int, float]]] = field(default_factory=dict)


_shared_counts = _SharedCounts()
SHARED_COUNTS_MAX_AGE_S = 5.0  # windows slide: a count is recomputed after this long anyway
SHARED_COUNTS_FILTERS = 64  # filters remembered per process


@_sessioned
def grid_counts_changed(
    session: Session, f: MapFilter, changes: dict, now: dt.datetime | None = None
) -> dict[int, int]:
    """Return ``grid_counts`` of the grids in ``changes`` (from ``changes_since``), shared.

    Every open map of a process asks, once a second, for the grids the newest workflow
    events touched: the same grids, the same counts. A count another session computed after
    the grid's newest event (``changes["grid_events"]``), less than SHARED_COUNTS_MAX_AGE_S
    ago, is reused; the rest are counted in one query. Results equal ``grid_counts``.
    """
    wanted = changes.get("grid_events") or {}
    if not wanted:
        return {}
    key = (str(session.get_bind().url), f.key())
    clock = time.monotonic()
    out: dict[int, int] = {}
    with _shared_counts.lock:
        table = _shared_counts.entries.get(key, {})
        for g, last in wanted.items():
            hit = table.get(g)
            if hit is not None and hit[1] >= last and clock - hit[2] < SHARED_COUNTS_MAX_AGE_S:
                out[g] = hit[0]
    missing = [g for g in wanted if g not in out]
    if missing:
        fresh = grid_counts(session, f, now, grid_ids=missing)
        as_of = int(changes["cursor"])
        with _shared_counts.lock:
            table = _shared_counts.entries.setdefault(key, {})
            for g in missing:
                prev = table.get(g)
                if prev is None or prev[1] <= as_of:
                    table[g] = (fresh[g], as_of, clock)
            keep_recent(_shared_counts.entries, key, table, limit=SHARED_COUNTS_FILTERS)
        out.update(fresh)
    return out


@_sessioned
def last_event_id(session: Session) -> int:
    """Return the map's change cursor: the newest workflow event id (0 if none).

    Not past an id gap a transaction in flight may still fill (``_before_open_gap``): the
    newest ``LAST_EVENTS_LOOKBACK`` events are checked.
    """
    rows = session.execute(
        select(IncidentEvent.id, IncidentEvent.ts)
        .order_by(IncidentEvent.id.desc())
        .limit(LAST_EVENTS_LOOKBACK)
    ).all()
    if not rows:
        return 0
    rows.reverse()
    kept = _before_open_gap(rows[1:], int(rows[0].id))
    return int(kept[-1].id) if kept else int(rows[0].id)


#: how many of the newest events ``last_event_id`` checks for gaps
LAST_EVENTS_LOOKBACK = 500


@_sessioned
def last_incident_id(session: Session) -> int:
    """Return the id of the newest incident (0 if none)."""
    return int(session.scalar(select(func.max(Incident.id))) or 0)


#: how long an id gap in the workflow log may be a transaction still in flight (see below)
GAP_GRACE_S = 5.0


def _before_open_gap(rows: list, after_event_id: int, now: dt.datetime | None = None) -> list:
    """Return the rows up to the first id gap that a transaction in flight may still fill.

    Several writers (web workers, machines) draw event ids from one sequence but commit in
    their own order: id 105 can be visible while 104 is not yet. A cursor moved past 105
    would never see 104, so it stops before such a gap; a gap older than GAP_GRACE_S (the
    event after it was logged that long ago) is a rolled-back transaction, and is passed.
    """
    if not rows:
        return rows
    horizon = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=GAP_GRACE_S)
    prev = int(after_event_id)
    for k, r in enumerate(rows):
        if prev and int(r.id) != prev + 1 and r.ts is not None and r.ts > horizon:
            return rows[:k]
        prev = int(r.id)
    return rows


@dataclass
class _EventTail:
    """The newest workflow events of one database, shared by every open map of the process.

    ``rows`` hold every event with ``start < id <= end`` as (id, incident id, from status,
    to status, grid id); ids below ``end`` are settled (``_before_open_gap``), and events
    never change, so any cursor in the range is answered from memory.
    """

    start: int
    end: int
    rows: list[tuple[int, int, str | None, str, int | None]]
    fetched_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)


_tails: dict[str, _EventTail] = {}
_tails_lock = threading.Lock()
TAIL_MAX_EVENTS = 20_000  # newest events kept per database
TAIL_FRESH_S = 0.2  # the tail asks the database for newer events at most this often


def _fetch_events(session: Session, after: int, limit: int) -> tuple[list, bool]:
    """Return (settled event rows after ``after`` with their grid ids, more than ``limit``)."""
    rows = session.execute(
        select(IncidentEvent.id, IncidentEvent.incident_id, IncidentEvent.from_status,
               IncidentEvent.to_status, IncidentEvent.ts)
        .where(IncidentEvent.id > after)
        .order_by(IncidentEvent.id)
        .limit(limit + 1)
    ).all()  # fmt: skip
    overflow = len(rows) > limit
    rows = _before_open_gap(rows[:limit], after)
    inc_ids = sorted({int(r.incident_id) for r in rows})
    grid_of: dict[int, int] = {}
    for chunk in range(0, len(inc_ids), 900):
        part = inc_ids[chunk : chunk + 900]
        grid_of.update(
            (int(i), int(g))
            for i, g in session.execute(
                select(Incident.id, Incident.grid_id).where(
                    Incident.id.in_(part), Incident.grid_id.is_not(None)
                )
            )
        )
    out = [(int(r.id), int(r.incident_id), r.from_status, r.to_status,
            grid_of.get(int(r.incident_id))) for r in rows]  # fmt: skip
    return out, overflow


def _event_id(row: tuple) -> int:
    return row[0]


def _events_after(session: Session, after: int, limit: int) -> tuple[list, bool]:
    """Return (event rows after ``after``, overflow), from the process's shared tail if it can.

    Twenty open maps asking once a second for "what happened since my cursor" read the same
    few hundred events: the first asks the database, the others get them from memory.
    """
    key = str(session.get_bind().url)
    with _tails_lock:
        tail = _tails.get(key)
        if tail is not None:
            keep_recent(_tails, key, tail)
    if tail is None or after < tail.start:
        rows, overflow = _fetch_events(session, after, limit)
        if tail is None and not overflow:
            with _tails_lock:
                if key not in _tails:
                    end = rows[-1][0] if rows else after
                    keep_recent(_tails, key, _EventTail(after, end, rows, time.monotonic()))
        return rows, overflow
    with tail.lock:
        if after >= tail.end or time.monotonic() - tail.fetched_at > TAIL_FRESH_S:
            new, more = _fetch_events(session, tail.end, 5000)
            if more:  # a flood: the tail starts again where the flood stands now
                tail.rows = []
                tail.start = tail.end = new[-1][0]
            else:
                tail.rows.extend(new)
                if new:
                    tail.end = new[-1][0]
            tail.fetched_at = time.monotonic()
            if len(tail.rows) > TAIL_MAX_EVENTS:
                drop = len(tail.rows) - TAIL_MAX_EVENTS
                tail.start = tail.rows[drop - 1][0]
                del tail.rows[:drop]
        if after < tail.start or after > tail.end:
            covered = False
        else:
            covered = True
            pos = bisect.bisect_right(tail.rows, after, key=_event_id)  # rows are in id order
            picked = tail.rows[pos : pos + limit + 1]
    if not covered:
        return _fetch_events(session, after, limit)
    return picked[:limit], len(picked) > limit


@_sessioned
def changes_since(session: Session, after_event_id: int, limit: int = 5000) -> dict:
    """Return what changed after a workflow-event id: new cursor, incident and grid ids.

    Every create and every status transition logs an ``IncidentEvent``, so this one cursor
    catches new incidents and closures alike. ``overflow`` is True when more than ``limit``
    events arrived (the caller should then resynchronise in full). The events come from the
    process's shared tail of the log where it covers the cursor (``_events_after``).
    """
    rows, overflow = _events_after(session, int(after_event_id), limit)
    if not rows:
        return {"cursor": after_event_id, "incidents": [], "grids": [], "grid_events": {},
                "overflow": overflow, "transitions": []}  # fmt: skip
    grid_events: dict[int, int] = {}  # grid -> newest event that touched it
    for ev_id, _inc, _a, _b, g in rows:
        if g is not None:
            grid_events[g] = ev_id
    inc_ids = sorted({r[1] for r in rows})
    transitions = [(inc, a, b) for _ev, inc, a, b, _g in rows]
    return {"cursor": rows[-1][0], "incidents": inc_ids, "grids": sorted(grid_events),
            "grid_events": grid_events, "overflow": overflow,
            "transitions": transitions}  # fmt: skip


def _filter_conditions(session: Session, f: MapFilter, *, use_index: bool = False) -> list:
    conds = []
    cat = _category_condition(f.categories)
    if cat is not None:
        conds.append(cat)
    area = _area_condition(session, f.area_id, use_index=use_index)
    if area is not None:
        conds.append(area)
    return conds + f.scope.incidents(session, use_index=use_index)


@_sessioned
def live_counts(session: Session, f: MapFilter, now: dt.datetime | None = None) -> dict:
    """Return ``open`` (current) and ``new_today`` (since 00:00 China time) for the filter.

    Both are index-only counts without a category/area filter; the live refresh keeps them
    up to date afterwards with ``live_counts_delta`` instead of counting again.
    """
    now = _now(now)
    conds = _filter_conditions(session, f, use_index=True)
    day_start = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    n_open = session.scalar(select(func.count()).where(Incident.status.in_(OPEN_STATUSES), *conds))
    n_today = session.scalar(
        select(func.count()).where(
            Incident.created_at >= day_start, *_filter_conditions(session, f)
        )
    )
    return {"open": int(n_open or 0), "new_today": int(n_today or 0),
            "day": day_start.date().isoformat()}  # fmt: skip


@_sessioned
def live_counts_delta(
    session: Session, f: MapFilter, changes: dict, now: dt.datetime | None = None
) -> dict:
    """Return the change of ``open`` and ``new_today`` implied by ``changes_since`` output.

    Uses the logged transitions (from -> to status) of the incidents matching the filter's
    categories and area: a create adds to both, a move out of an open status subtracts one.
    """
    now = _now(now)
    if not changes["transitions"]:
        return {"open": 0, "new_today": 0}
    ids = changes["incidents"]
    conds = _filter_conditions(session, f)
    day_start = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    matching: dict[int, dt.datetime] = {}
    for chunk in range(0, len(ids), 900):
        part = ids[chunk : chunk + 900]
        for r in session.execute(
            select(Incident.id, Incident.created_at).where(Incident.id.in_(part), *conds)
        ):
            matching[int(r.id)] = r.created_at
    d_open = d_today = 0
    for inc_id, before, after in changes["transitions"]:
        if inc_id not in matching:
            continue
        d_open += int(after in OPEN_STATUSES) - int(before in OPEN_STATUSES)
        if before is None and matching[inc_id] >= day_start:
            d_today += 1
    return {"open": d_open, "new_today": d_today}


def _incident_feature(r, lang: str = "zh") -> dict:
    cats = default_categories()
    group = category_group(r.category_code)
    entry = cats.get(r.category_code) or cats.get(group) or {}
    name = entry.get("name_en" if lang == "en" else "name_zh", r.category_code)
    return {
        "type": "Feature",
        "id": int(r.id),
        "geometry": {"type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
        "properties": {
            "id": int(r.id), "cat": group, "name": name, "prio": int(r.priority),
            "status": r.status, "t": r.created_at.isoformat(timespec="seconds"),
            "grid": r.grid_id,
        },
    }  # fmt: skip


_POINT_COLUMNS = (Incident.id, Incident.lon, Incident.lat, Incident.category_code,
                  Incident.priority, Incident.status, Incident.created_at, Incident.grid_id)  # fmt: skip


@_sessioned
def new_incidents(
    session: Session,
    after_id: int,
    f: MapFilter,
    now: dt.datetime | None = None,
    *,
    limit: int = 200,
    lang: str = "zh",
) -> list[dict]:
    """Return GeoJSON point features of incidents with id > ``after_id`` (oldest first).

    Only incidents matching the filter's categories, area and scope are returned (the time
    window is ignored: a new incident is always "now").
    """
    conds = [Incident.id > after_id, *_filter_conditions(session, f)]
    rows = session.execute(
        select(*_POINT_COLUMNS).where(*conds).order_by(Incident.id.desc()).limit(limit)
    ).all()
    return [_incident_feature(r, lang) for r in reversed(rows)]


@_sessioned
def incident_points(
    session: Session,
    f: MapFilter,
    bbox: Sequence[float] | None = None,
    now: dt.datetime | None = None,
    *,
    limit: int = 3000,
    lang: str = "zh",
) -> dict:
    """Return a FeatureCollection of the filtered incidents inside ``bbox`` (newest first)."""
    conds = incident_conditions(session, f, now)
    if bbox is not None:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        conds += [Incident.lon >= minx, Incident.lon <= maxx, Incident.lat >= miny,
                  Incident.lat <= maxy]  # fmt: skip
    rows = session.execute(
        select(*_POINT_COLUMNS).where(*conds).order_by(Incident.id.desc()).limit(limit)
    ).all()
    return {"type": "FeatureCollection", "features": [_incident_feature(r, lang) for r in rows]}


@_sessioned
def incident_lonlat(
    session: Session, f: MapFilter, now: dt.datetime | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (lon, lat) arrays of every incident the filter shows (for the heat map)."""
    rows = session.execute(
        select(Incident.lon, Incident.lat).where(*incident_conditions(session, f, now))
    ).all()
    if not rows:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


# -- KPIs, trend, hotspots ------------------------------------------------------------------


@_sessioned
def kpis(session: Session, f: MapFilter, now: dt.datetime | None = None) -> dict:
    """Return the side-panel KPIs for the filter's categories and area.

    Returns
    -------
    dict with ``open`` and ``overdue`` (current, whole history), ``new_today`` (since 00:00
    China time), and over the window: ``due`` (应结案: incidents whose deadline falls in the
    window), ``closed``, ``closed_on_time``, ``closure_rate`` (结案率 = closed / due)
    and ``ontime_rate`` (按期结案率 = closed on time / due), rates None when nothing is due.
    """
    now = _now(now)
    base: list = []
    cat = _category_condition(f.categories)
    if cat is not None:
        base.append(cat)
    area = _area_condition(session, f.area_id, use_index=True)
    if area is not None:
        base.append(area)
    base += f.scope.incidents(session)
    windowed = [c for c in (cat, _area_condition(session, f.area_id)) if c is not None]
    windowed += f.scope.incidents(session, use_index=False)
    is_open = Incident.status.in_(OPEN_STATUSES)
    day_start = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    n_open, n_overdue = session.execute(
        select(func.count(), func.coalesce(func.sum(case((Incident.due_at < now, 1), else_=0)), 0))
        .where(is_open, *base)
    ).one()  # fmt: skip
    new_today = session.scalar(
        select(func.count()).where(Incident.created_at >= day_start, *windowed)
    )
    start, end = f.time_range(now)
    t = f.instant(now) or min(end, now)
    # 应结案数 of the window: cases whose deadline falls in it (GB/T 30428 evaluation);
    # counting by creation time instead would leave out almost every case not yet due
    # and show a meaningless 100 % for short windows.
    closed = and_(Incident.closed_at.is_not(None), Incident.closed_at <= t)
    ontime = and_(closed, Incident.closed_at <= Incident.due_at)
    n_due, n_closed, n_ontime = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((closed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((ontime, 1), else_=0)), 0),
        ).where(Incident.due_at >= start, Incident.due_at <= t, *windowed)
    ).one()
    return {
        "open": int(n_open), "overdue": int(n_overdue), "new_today": int(new_today or 0),
        "due": int(n_due), "closed": int(n_closed), "closed_on_time": int(n_ontime),
        "closure_rate": (n_closed / n_due) if n_due else None,
        "ontime_rate": (n_ontime / n_due) if n_due else None,
    }  # fmt: skip


@_sessioned
def trend(
    session: Session, f: MapFilter, now: dt.datetime | None = None, buckets: int = 24
) -> dict:
    """Return incidents per time bucket and category group over the window.

    Returns
    -------
    dict with ``edges`` (bucket start times, ISO strings in China time, length ``buckets``)
    and ``series`` ({group code: [count per bucket]}), largest groups first.
    """
    now = _now(now)
    start, end = f.time_range(now)
    t = f.instant(now) or end
    rows = session.execute(
        select(Incident.created_at, Incident.category_code).where(
            *incident_conditions(session, f, now)
        )
    ).all()
    span = (end - start).total_seconds() / buckets
    edges = [(start + dt.timedelta(seconds=span * i)).astimezone(CST) for i in range(buckets)]
    series: dict[str, list[int]] = {}
    for created, code in rows:
        i = int((created - start).total_seconds() // span)
        if 0 <= i < buckets and created <= t:
            series.setdefault(category_group(code), [0] * buckets)[i] += 1
    ordered = dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))
    return {"edges": [e.isoformat(timespec="minutes") for e in edges], "series": ordered}


@_sessioned
def top_hotspots(
    session: Session, f: MapFilter, now: dt.datetime | None = None, n: int = 8
) -> list[dict]:
    """Return the ``n`` grids with the most incidents in the filter (code, name, count, z).

    ``z`` is the Getis-Ord Gi* z-score from ``geo.hotspots`` when that is available (None
    otherwise); the list is ordered by count.
    """
    rows = session.execute(
        select(Incident.grid_id, func.count().label("n"))
        .where(*incident_conditions(session, f, now), Incident.grid_id.is_not(None))
        .group_by(Incident.grid_id)
        .order_by(func.count().desc())
        .limit(n)
    ).all()
    if not rows:
        return []
    ids = [int(r.grid_id) for r in rows]
    info = {
        g.id: g
        for g in session.execute(
            select(Grid.id, Grid.code, Grid.name, Grid.minx, Grid.miny, Grid.maxx, Grid.maxy)
            .where(Grid.id.in_(ids))
        )
    }  # fmt: skip
    out = []
    for r in rows:
        g = info.get(int(r.grid_id))
        if g is None:
            continue
        out.append({"grid_id": g.id, "code": g.code, "name": g.name, "count": int(r.n),
                    "bounds": [g.minx, g.miny, g.maxx, g.maxy], "z": None})  # fmt: skip
    return out


# -- areas, cards, cones ---------------------------------------------------------------------


@_sessioned
def area_path(session: Session, area_id: int | None, scope: Scope) -> list[dict]:
    """Return the breadcrumb from the top area down to ``area_id`` ([] for the whole city).

    An area outside ``scope`` has no breadcrumb ([]); areas above the scope are left out.
    """
    out: list[dict] = []
    if not scope.allows_area(session, area_id):
        return out
    seen = set()
    while area_id is not None and area_id not in seen:
        seen.add(area_id)
        a = session.execute(
            select(AdminArea.id, AdminArea.level, AdminArea.name, AdminArea.code,
                   AdminArea.parent_id, AdminArea.minx, AdminArea.miny, AdminArea.maxx,
                   AdminArea.maxy).where(AdminArea.id == area_id)
        ).first()  # fmt: skip
        if a is None:
            break
        if a.level != "city" and scope.allows_area(session, a.id):
            out.append({"id": a.id, "level": a.level, "name": a.name, "code": a.code,
                        "bounds": [a.minx, a.miny, a.maxx, a.maxy]})  # fmt: skip
        area_id = a.parent_id
    return list(reversed(out))


@_sessioned
def grid_bounds(session: Session, grid_id: int, scope: Scope) -> list[float] | None:
    """Return [minx, miny, maxx, maxy] of one grid (WGS-84), None if none in ``scope``."""
    if not scope.allows_grid(session, grid_id):
        return None
    b = session.execute(
        select(Grid.minx, Grid.miny, Grid.maxx, Grid.maxy).where(Grid.id == grid_id)
    ).first()
    return None if b is None else [float(v) for v in b]


@_sessioned
def city_bounds(session: Session) -> list[float] | None:
    """Return [minx, miny, maxx, maxy] of every grid (WGS-84), None for an empty city."""
    b = session.execute(
        select(func.min(Grid.minx), func.min(Grid.miny), func.max(Grid.maxx), func.max(Grid.maxy))
    ).one()
    if b[0] is None:
        return None
    return [float(v) for v in b]


@_sessioned
def categories(session: Session) -> list[dict]:
    """Return the top-level category groups: code, name_zh, name_en (shipped dictionary order)."""
    rows = session.execute(
        select(Category.code, Category.name_zh, Category.name_en).where(
            Category.parent_code.is_(None)
        )
    ).all()
    if rows:
        seen: dict[str, dict] = {}
        for r in rows:
            seen.setdefault(r.code, {"code": r.code, "name_zh": r.name_zh, "name_en": r.name_en})
        return list(seen.values())
    return [{"code": c, "name_zh": e["name_zh"], "name_en": e["name_en"]}
            for c, e in default_categories().items() if e["parent_code"] is None]  # fmt: skip


def grid_card(db: Database, grid_id: int, lang: str = "zh", *, scope: Scope) -> dict:
    """Return the grid card: code, names, workers (masked phones), open incidents, coverage.

    Raises ``layers.services.NotFoundError`` for an unknown grid or one outside ``scope``.
    """
    from layers.services import grids as grid_service

    with db.session() as session:
        if not scope.allows_grid(session, grid_id):
            raise NotFoundError(f"no grid with id {grid_id!r}")
        card = grid_service.grid_card(session, grid_id)
        rows = session.execute(
            select(*_POINT_COLUMNS)
            .where(Incident.grid_id == grid_id, Incident.status.in_(OPEN_STATUSES))
            .order_by(Incident.priority, Incident.id.desc())
            .limit(5)
        ).all()
    card["open_incidents"] = [_incident_feature(r, lang)["properties"] for r in rows]
    cov = grid_coverage(db, scope)
    card["coverage"] = cov.get(int(grid_id))
    return card


@_sessioned
def camera_statuses(session: Session, scope: Scope) -> dict[int, str]:
    """Return {camera id: health status} of the cameras in ``scope`` (map's status layer)."""
    q = select(Camera.id, Camera.status).where(*scope.cameras_condition())
    return {int(i): str(st) for i, st in session.execute(q)}


@_sessioned
def camera_card(session: Session, camera_id: int, scope: Scope) -> dict:
    """Return the display-safe camera card (credentials stripped from the stream URL).

    Raises ``layers.services.NotFoundError`` for an unknown camera or one outside ``scope``.
    """
    from layers.services import cameras as camera_service

    cam = camera_service.get_camera(session, camera_id)
    if not scope.allows_camera(cam.gb_id, cam.id):
        raise NotFoundError(f"no camera {camera_id!r}")
    grid_code = None
    if cam.grid_id is not None:
        grid_code = session.scalar(select(Grid.code).where(Grid.id == cam.grid_id))
    card = camera_service.public_dict(cam, grid_code)
    card.pop("stream_url", None)  # the operator needs none of it, even stripped
    if card.get("last_seen") is not None:
        card["last_seen"] = card["last_seen"].astimezone(CST).isoformat(timespec="seconds")
    return card


@_sessioned
def camera_cones(
    session: Session, bbox: Sequence[float], scope: Scope, *, limit: int = 3000
) -> dict:
    """Return the view cones of the ``scope``'s cameras inside ``bbox`` (FeatureCollection)."""
    import pandas as pd

    from geo.sectors import camera_sectors
    from layers.services import bbox_filter_points

    rows = session.execute(
        select(Camera.id, Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m,
               Camera.status, Camera.cls)
        .where(bbox_filter_points(Camera, [float(v) for v in bbox]), *scope.cameras_condition())
        .limit(limit)
    ).all()  # fmt: skip
    if not rows:
        return {"type": "FeatureCollection", "features": []}
    frame = pd.DataFrame([r._asdict() for r in rows])
    cones = camera_sectors(frame, arc_step_deg=10.0)
    feats = []
    for r, g in zip(rows, cones, strict=True):
        if g is None:
            continue
        g = shapely.set_precision(g, 1e-6)
        feats.append({"type": "Feature", "id": int(r.id),
                      "geometry": shapely.geometry.mapping(g),
                      "properties": {"status": r.status, "cls": r.cls}})  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


CHILD_LEVEL = {None: "district", "city": "district", "district": "street", "street": "community"}


@_sessioned
def area_labels(session: Session, area_id: int | None, scope: Scope) -> dict:
    """Return the areas one level below ``area_id`` as labelled points (for drill-down).

    The whole city (None) lists its districts, a district its streets, a street its
    communities; a community has no children (empty collection). Points sit at each area's
    representative point (inside the polygon), WGS-84.
    """
    level = None
    if area_id is not None:
        level = session.scalar(select(AdminArea.level).where(AdminArea.id == area_id))
    child = CHILD_LEVEL.get(level)
    if child is None:
        return {"type": "FeatureCollection", "features": []}
    q = select(AdminArea.id, AdminArea.name, AdminArea.code, AdminArea.level,
               AdminArea.geom_wkb).where(AdminArea.level == child, *scope.areas(session))  # fmt: skip
    if area_id is not None:
        q = q.where(AdminArea.parent_id == area_id)
    rows = session.execute(q.order_by(AdminArea.code)).all()
    pts = shapely.point_on_surface(shapely.from_wkb([r.geom_wkb for r in rows])) if rows else []
    feats = [{"type": "Feature", "id": int(r.id),
              "geometry": {"type": "Point", "coordinates": [round(p.x, 6), round(p.y, 6)]},
              "properties": {"area": int(r.id), "name": r.name, "level": r.level}}
             for r, p in zip(rows, pts, strict=True)]  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


@_sessioned
def locate_click(
    session: Session,
    lon: float,
    lat: float,
    zoom: float,
    *,
    scope: Scope,
    cameras: bool = True,
    tolerance_px: float = 9.0,
) -> dict:
    """Return what a map click at (lon, lat) WGS-84 hit: ``{"camera": id|None, "grid": id|None}``.

    A camera is hit when one lies within ``tolerance_px`` screen pixels at ``zoom`` (Web
    Mercator scale); the grid is the one containing the point. Only cameras and grids in
    ``scope`` are hit.
    """
    from layers.services import bbox_filter_points
    from layers.services.spatial import grid_at_point

    out: dict = {"camera": None, "grid": None}
    if cameras:
        m_per_px = 156_543.03 * math.cos(math.radians(lat)) / (2.0 ** float(zoom))
        r_m = tolerance_px * m_per_px
        dlat = r_m / 110_574.0
        dlon = r_m / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
        window = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        rows = session.execute(
            select(Camera.id, Camera.lon, Camera.lat).where(
                bbox_filter_points(Camera, window), *scope.cameras_condition()
            )
        ).all()
        best = None
        for r in rows:
            d = math.hypot((r.lon - lon) / dlon, (r.lat - lat) / dlat)
            if d <= 1.0 and (best is None or d < best[0]):
                best = (d, int(r.id))
        if best is not None:
            out["camera"] = best[1]
    grid = grid_at_point(session, lon, lat)
    out["grid"] = grid if scope.allows_grid(session, grid) else None
    return out


# -- camera coverage per grid (cached per layer version) ------------------------------------


@dataclass
class _CoverageCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple, dict[int, float]] = field(default_factory=dict)


_coverage_cache = _CoverageCache()


def _layer_fingerprint(session: Session) -> tuple:
    g = session.execute(select(func.count(), func.max(Grid.id))).one()
    c = session.execute(
        select(func.count(), func.max(Camera.id), func.sum(Camera.azimuth + Camera.range_m))
    ).one()
    return (tuple(g), tuple(c))


def grid_coverage(db: Database, scope: Scope) -> dict[int, float]:
    """Return {grid id: fraction 0..1 of its area inside a camera cone} of ``scope``'s grids.

    Computed once per grid/camera layer version and kept in a process cache keyed by the
    database URL and that version (a cache of derived data, not per-user state).
    """
    with db.session() as s:
        allowed = scope.grid_ids(s)
    every = _grid_coverage_all(db)
    if allowed is None:
        return every
    return {g: v for g, v in every.items() if g in allowed}


def _grid_coverage_all(db: Database) -> dict[int, float]:
    with db.session() as s:
        key = (str(db.url), _layer_fingerprint(s))
    with _coverage_cache.lock:
        hit = _coverage_cache.entries.get(key)
    if hit is not None:
        return hit
    import pandas as pd

    from geo.coverage import coverage

    with db.session() as s:
        grids = s.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
        cams = s.execute(
            select(Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m)
        ).all()
    if not grids:
        return {}
    geoms = shapely.from_wkb([g.geom_wkb for g in grids])
    if cams:
        frame = pd.DataFrame([c._asdict() for c in cams])
        frac = coverage(geoms, frame, row_m=5.0, min_rows=16)
    else:
        frac = np.zeros(len(grids))
    out = {int(g.id): (None if np.isnan(v) else round(float(v), 4))
           for g, v in zip(grids, frac, strict=True)}  # fmt: skip
    with _coverage_cache.lock:
        _coverage_cache.entries = {k: v for k, v in _coverage_cache.entries.items()
                                   if k[0] != key[0]}  # fmt: skip
        _coverage_cache.entries[key] = out
    return out


# -- heat map raster --------------------------------------------------------------------------


def _mercator_y(lat: np.ndarray) -> np.ndarray:
    lat = np.radians(np.clip(lat, -85.0, 85.0))
    return np.log(np.tan(np.pi / 4 + lat / 2))


def density_grid(
    lon: np.ndarray,
    lat: np.ndarray,
    bounds: Sequence[float],
    shape: tuple[int, int] = (256, 256),
    bandwidth_m: float = 400.0,
) -> np.ndarray:
    """Return a (rows, cols) kernel density raster of points over ``bounds`` (north row first).

    Uses ``geo.density`` (rows evenly spaced in latitude; over a city's few tenths of a
    degree that differs from the Web-Mercator spacing of a Leaflet ImageOverlay by < 0.3 %)
    and falls back to a binned Gaussian KDE with rows evenly spaced in Web-Mercator y.
    Units: relative density (max 1).
    """
    import geo

    minx, miny, maxx, maxy = (float(v) for v in bounds)
    rows, cols = shape
    if len(lon) == 0:
        return np.zeros(shape)
    geo_density = getattr(geo, "density", None)
    if geo_density is not None:
        try:
            raster = np.asarray(
                geo_density(lon, lat, (minx, miny, maxx, maxy), shape, bandwidth_m), dtype=float
            )
            if raster.shape == shape:
                raster = np.flipud(raster)  # geo.density puts the southern edge in row 0
                m = raster.max()
                return raster / m if m > 0 else raster
        except (TypeError, ValueError) as exc:  # an older/newer signature: use our own
            log.warning("geo.density failed (%s); using the built-in binned KDE", exc)
    from scipy.ndimage import gaussian_filter

    y0, y1 = _mercator_y(np.array([miny, maxy]))
    ys = _mercator_y(np.asarray(lat))
    hist, _, _ = np.histogram2d(
        y1 - ys + y0, np.asarray(lon), bins=shape, range=[[y0, y1], [minx, maxx]]
    )  # first axis flipped so row 0 is the north edge
    m_per_col = (maxx - minx) * 111_320.0 * math.cos(math.radians((miny + maxy) / 2)) / cols
    sigma = max(bandwidth_m / max(m_per_col, 1e-6), 0.5)
    raster = gaussian_filter(hist, sigma=sigma, mode="constant")
    m = raster.max()
    return raster / m if m > 0 else raster


def density_png(raster: np.ndarray) -> bytes:
    """Return the density raster as an RGBA PNG (transparent where there is nothing)."""
    import cv2

    # scale to a high percentile, not the maximum: one very hot grid would otherwise leave
    # the rest of the city transparent
    nz = raster[raster > 0]
    ref = float(np.percentile(nz, 99.0)) if nz.size else 1.0
    v = np.clip(raster / max(ref, 1e-12), 0, 1) ** 0.6
    stops = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    colors = np.array([[40, 90, 255], [0, 210, 255], [60, 255, 120], [255, 210, 0],
                       [255, 40, 40]], dtype=float)  # fmt: skip
    rgb = np.stack([np.interp(v, stops, colors[:, i]) for i in range(3)], axis=-1)
    alpha = np.clip((v - 0.08) * 1.4, 0, 0.8) * 255  # low density stays see-through
    bgra = np.dstack([rgb[..., 2], rgb[..., 1], rgb[..., 0], alpha]).astype(np.uint8)
    ok, buf = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGRA array
        raise RuntimeError("PNG encoding failed")
    return io.BytesIO(buf.tobytes()).getvalue()
