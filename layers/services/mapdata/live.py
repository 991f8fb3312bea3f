"""Live map data: per-grid counts, the event cursor and incremental changes, incident points.

Open maps poll with a cursor (the last ``IncidentEvent`` id they saw); ``changes_since``
answers from a per-process shared tail of recent events where it can, so many open maps
cost one database read. Positions are WGS-84 (EPSG:4326).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import OPEN_STATUSES, Incident, IncidentEvent
from layers.services import keep_recent
from layers.services.incidents import default_categories
from layers.services.mapdata.filters import (
    CST,
    MapFilter,
    category_group,
    filter_conditions,
    incident_conditions,
    now_utc,
    sessioned,
)


@sessioned
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


@sessioned
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


@sessioned
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


@sessioned
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


@sessioned
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


@sessioned
def live_counts(session: Session, f: MapFilter, now: dt.datetime | None = None) -> dict:
    """Return ``open`` (current) and ``new_today`` (since 00:00 China time) for the filter.

    Both are index-only counts without a category/area filter; the live refresh keeps them
    up to date afterwards with ``live_counts_delta`` instead of counting again.
    """
    now = now_utc(now)
    conds = filter_conditions(session, f, use_index=True)
    day_start = now.astimezone(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    n_open = session.scalar(select(func.count()).where(Incident.status.in_(OPEN_STATUSES), *conds))
    n_today = session.scalar(
        select(func.count()).where(Incident.created_at >= day_start, *filter_conditions(session, f))
    )
    return {"open": int(n_open or 0), "new_today": int(n_today or 0),
            "day": day_start.date().isoformat()}  # fmt: skip


@sessioned
def live_counts_delta(
    session: Session, f: MapFilter, changes: dict, now: dt.datetime | None = None
) -> dict:
    """Return the change of ``open`` and ``new_today`` implied by ``changes_since`` output.

    Uses the logged transitions (from -> to status) of the incidents matching the filter's
    categories and area: a create adds to both, a move out of an open status subtracts one.
    """
    now = now_utc(now)
    if not changes["transitions"]:
        return {"open": 0, "new_today": 0}
    ids = changes["incidents"]
    conds = filter_conditions(session, f)
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


def incident_feature(r, lang: str = "zh") -> dict:
    """Return one incident row as a GeoJSON point Feature (category named in ``lang``)."""
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


POINT_COLUMNS = (Incident.id, Incident.lon, Incident.lat, Incident.category_code,
                  Incident.priority, Incident.status, Incident.created_at, Incident.grid_id)  # fmt: skip


@sessioned
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
    conds = [Incident.id > after_id, *filter_conditions(session, f)]
    rows = session.execute(
        select(*POINT_COLUMNS).where(*conds).order_by(Incident.id.desc()).limit(limit)
    ).all()
    return [incident_feature(r, lang) for r in reversed(rows)]


@sessioned
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
        select(*POINT_COLUMNS).where(*conds).order_by(Incident.id.desc()).limit(limit)
    ).all()
    return {"type": "FeatureCollection", "features": [incident_feature(r, lang) for r in rows]}


@sessioned
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
