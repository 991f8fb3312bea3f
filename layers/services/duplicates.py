"""Duplicate reports: suggest merging same-category reports close in space and time.

The same problem reported several times must not be dispatched to several departments
(避免多头交办). Reports of the same category within ``radius_m`` metres (default 50) and
``window`` (default 2 h) of each other are suggested as duplicates; the older report is the
primary. A merge (``workflow.apply(..., "merge", into=...)``) closes the duplicate, links it
(and everything already merged into it) to the primary, and the workflow refuses to dispatch
a merged report. Positions WGS-84 (EPSG:4326), distances great-circle metres.
"""

from __future__ import annotations

import datetime as dt
import logging
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from geo.measure import degree_box, haversine_m
from layers.models import OPEN_STATUSES, Incident
from layers.services import NotFoundError, ServiceError, get_row
from layers.services.scope import Scope

log = logging.getLogger(__name__)

DEFAULT_RADIUS_M = 50.0
DEFAULT_WINDOW = dt.timedelta(hours=2)


def _check(radius_m: float, window: dt.timedelta) -> None:
    if not (isinstance(radius_m, int | float) and math.isfinite(radius_m) and radius_m > 0):
        raise ServiceError(f"radius_m: {radius_m!r}; give a distance in metres > 0")
    if window <= dt.timedelta(0):
        raise ServiceError(f"window: {window!r}; give a positive time window")


def candidates_near(
    session: Session,
    *,
    lon: float,
    lat: float,
    category: str,
    at: dt.datetime,
    radius_m: float = DEFAULT_RADIUS_M,
    window: dt.timedelta = DEFAULT_WINDOW,
    exclude_id: int | None = None,
    open_only: bool = True,
    scope: Scope,
) -> list[dict]:
    """Return possible duplicates of a report at WGS-84 (lon, lat), nearest first.

    Each item: id, distance_m, minutes_apart, status. Only unmerged reports of the same
    category, within ``radius_m`` and ``window`` of ``at``; open ones only by default; only
    those in ``scope``.
    """
    _check(radius_m, window)
    dlon, dlat = degree_box(lat, radius_m)
    stmt = select(
        Incident.id, Incident.lon, Incident.lat, Incident.created_at, Incident.status
    ).where(
        Incident.category_code == category,
        Incident.lon.between(lon - dlon, lon + dlon),
        Incident.lat.between(lat - dlat, lat + dlat),
        Incident.created_at.between(at - window, at + window),
        Incident.duplicate_of.is_(None),
        *scope.incidents(session),
    )
    if open_only:
        stmt = stmt.where(Incident.status.in_(OPEN_STATUSES))
    if exclude_id is not None:
        stmt = stmt.where(Incident.id != int(exclude_id))
    rows = session.execute(stmt.order_by(Incident.id)).all()
    if not rows:
        return []
    dist = haversine_m(lon, lat, [r.lon for r in rows], [r.lat for r in rows])
    out = [
        {"id": int(r.id), "distance_m": round(float(d), 1),
         "minutes_apart": round(abs((r.created_at - at).total_seconds()) / 60.0, 1),
         "status": r.status}
        for r, d in zip(rows, dist, strict=True)
        if d <= radius_m
    ]  # fmt: skip
    out.sort(key=lambda c: (c["distance_m"], c["id"]))
    return out


def candidates(
    session: Session,
    incident_id: int,
    *,
    scope: Scope,
    radius_m: float = DEFAULT_RADIUS_M,
    window: dt.timedelta = DEFAULT_WINDOW,
) -> list[dict]:
    """Return possible duplicates of a stored incident in ``scope`` (``candidates_near``)."""
    row = get_row(session, Incident, incident_id)
    if row is None:
        raise NotFoundError(f"no incident with id {incident_id!r}")
    return candidates_near(
        session, lon=row.lon, lat=row.lat, category=row.category_code, at=row.created_at,
        radius_m=radius_m, window=window, exclude_id=row.id, scope=scope,
    )  # fmt: skip


def suggest_merges(
    session: Session,
    *,
    since: dt.datetime | None = None,
    radius_m: float = DEFAULT_RADIUS_M,
    window: dt.timedelta = DEFAULT_WINDOW,
    limit: int = 200,
) -> list[dict]:
    """Return merge suggestions among open reports: {duplicate, primary, distance_m}.

    The primary of a pair is the older report (then the lower id); each open report appears
    at most once as a duplicate, pointing at its nearest older candidate.
    """
    _check(radius_m, window)
    stmt = select(Incident).where(
        Incident.status.in_(OPEN_STATUSES), Incident.duplicate_of.is_(None)
    )
    if since is not None:
        stmt = stmt.where(Incident.created_at >= since)
    rows = list(session.execute(stmt.order_by(Incident.created_at, Incident.id)).scalars())
    out = []
    for row in rows:
        older = [
            c
            for c in candidates_near(
                session, lon=row.lon, lat=row.lat, category=row.category_code,
                at=row.created_at, radius_m=radius_m, window=window, exclude_id=row.id,
                scope=Scope.ALL,  # pairs are judged on the whole city; callers filter rows
            )
            if _is_older(session, c["id"], row)
        ]  # fmt: skip
        if older:
            out.append({"duplicate": row.id, "primary": older[0]["id"],
                        "distance_m": older[0]["distance_m"]})  # fmt: skip
        if len(out) >= limit:
            break
    return out


def _is_older(session: Session, other_id: int, row: Incident) -> bool:
    other = get_row(session, Incident, other_id)
    return (other.created_at, other.id) < (row.created_at, row.id)


def root_of(session: Session, incident_id: int) -> int:
    """Return the primary case of a (possibly merged) incident, following ``duplicate_of``."""
    seen = set()
    current = int(incident_id)
    while current not in seen:
        seen.add(current)
        nxt = session.scalar(select(Incident.duplicate_of).where(Incident.id == current))
        if nxt is None:
            return current
        current = int(nxt)
    return current


def linked_reports(session: Session, incident_id: int) -> list[int]:
    """Return the ids of every report of the same problem (primary first, then by id)."""
    root = root_of(session, incident_id)
    ids = session.execute(
        select(Incident.id).where(Incident.duplicate_of == root).order_by(Incident.id)
    ).scalars()
    return [root, *ids]
