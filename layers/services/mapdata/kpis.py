"""The situation map's side panel: KPIs of the filter's window and the trend by category."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from layers.models import OPEN_STATUSES, Incident
from layers.services.kpi import closure_rates
from layers.services.mapdata.filters import (
    CST,
    MapFilter,
    area_condition,
    category_condition,
    category_group,
    incident_conditions,
    now_utc,
    sessioned,
)


@sessioned
def kpis(session: Session, f: MapFilter, now: dt.datetime | None = None) -> dict:
    """Return the side-panel KPIs for the filter's categories and area.

    Returns
    -------
    dict with ``open`` and ``overdue`` (current, whole history), ``new_today`` (since 00:00
    China time), and over the window: ``due`` (应结案: incidents whose deadline falls in the
    window), ``closed``, ``closed_on_time``, ``closure_rate`` (结案率 = closed / due)
    and ``ontime_rate`` (按期结案率 = closed on time / due) as 0..1 fractions
    (``kpi.closure_rates``), None when nothing is due.
    """
    now = now_utc(now)
    base: list = []
    cat = category_condition(f.categories)
    if cat is not None:
        base.append(cat)
    area = area_condition(session, f.area_id, use_index=True)
    if area is not None:
        base.append(area)
    base += f.scope.incidents(session)
    windowed = [c for c in (cat, area_condition(session, f.area_id)) if c is not None]
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
    closure, ontime = closure_rates(int(n_closed), int(n_ontime), int(n_due))
    return {
        "open": int(n_open), "overdue": int(n_overdue), "new_today": int(new_today or 0),
        "due": int(n_due), "closed": int(n_closed), "closed_on_time": int(n_ontime),
        "closure_rate": None if closure is None else float(closure),
        "ontime_rate": None if ontime is None else float(ontime),
    }  # fmt: skip


@sessioned
def trend(
    session: Session, f: MapFilter, now: dt.datetime | None = None, buckets: int = 24
) -> dict:
    """Return incidents per time bucket and category group over the window.

    Returns
    -------
    dict with ``edges`` (bucket start times, ISO strings in China time, length ``buckets``)
    and ``series`` ({group code: [count per bucket]}), largest groups first.
    """
    now = now_utc(now)
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
