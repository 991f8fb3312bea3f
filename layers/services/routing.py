"""Routing: which level, center and person own a new or escalated incident.

Rule (GB/T 30428, "先属地后属主" events to the territory first): the point's grid decides the
territory; the category's ``owner_level`` decides the level inside it. Grid-level work goes to
the grid's own available worker (lowest id first); if none is available, to the nearest
available responder anywhere (great-circle distance, ties broken by the lower id). Work above
grid level goes to the center of that level above the grid, to its nearest available staff
member (same tie-break), or stays in the center's queue when nobody is available. A
dispatcher can always override the assignee (``workflow.apply(..., assignee_id=...)``).
Positions are WGS-84 (EPSG:4326).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from geo.measure import haversine_m, window_reach_m
from layers.models import Camera, Center, Grid, Responder
from layers.services.scope import Scope
from layers.services.spatial import ESCALATION_ORDER, GridLocator, locator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where an incident goes (``route_incident``): owning level, center, assignee (None: queue)."""

    level: str
    center_id: int | None
    assignee_id: int | None
    reason: str


def _positions(session: Session, where) -> list[tuple[int, float, float]]:
    """Return (id, lon, lat) of matching responders: own position, else center, else grid."""
    rows = session.execute(
        select(Responder.id, Responder.lon, Responder.lat, Center.lon, Center.lat, Grid.geom_wkb)
        .outerjoin(Center, Responder.center_id == Center.id)
        .outerjoin(Grid, Responder.grid_id == Grid.id)
        .where(where)
        .order_by(Responder.id)
    ).all()
    out = []
    for rid, lon, lat, clon, clat, gwkb in rows:
        if lon is None or lat is None:
            if clon is not None and clat is not None:
                lon, lat = clon, clat
            elif gwkb is not None:
                p = shapely.point_on_surface(shapely.from_wkb(gwkb))
                lon, lat = p.x, p.y
            else:
                continue
        out.append((int(rid), float(lon), float(lat)))
    return out


def nearest_available(
    session: Session,
    lon: float,
    lat: float,
    *,
    center_id: int | None = None,
    exclude: tuple[int, ...] = (),
    n: int = 1,
) -> list[tuple[int, float]]:
    """Return up to ``n`` (responder id, metres) of available responders nearest to a point.

    Ties in distance go to the lower id (a stable sort over id-ordered rows).

    Parameters
    ----------
    lon, lat : float
        WGS-84 degrees.
    center_id : int, optional
        Only the staff of this center.
    exclude : tuple of int
        Responder ids to leave out.
    """
    cond = Responder.available.is_(True)
    if center_id is not None:
        cond = and_(cond, Responder.center_id == int(center_id))
    if exclude:
        cond = and_(cond, Responder.id.not_in([int(e) for e in exclude]))
    # Look in growing windows around the point first: a city has ~13,000 responders and
    # reading them all cost ~85 ms per incident whose grid worker was busy. A window's
    # answer stands once its n-th nearest is no farther than the window's half-width
    # (anyone outside is farther); otherwise the next window, at last the whole city.
    for half_deg in (*WINDOWS_DEG, None):
        where = cond if half_deg is None else and_(cond, _near_window(lon, lat, half_deg))
        people = _positions(session, where)
        if not people:
            continue
        ids = np.array([p[0] for p in people], dtype=np.int64)
        dist = haversine_m(lon, lat, [p[1] for p in people], [p[2] for p in people])
        order = np.lexsort((ids, np.round(dist, 3)))[: int(n)]
        if half_deg is not None and (
            len(order) < int(n) or dist[order[-1]] > window_reach_m(lat, half_deg)
        ):
            continue
        return [(int(ids[i]), float(dist[i])) for i in order]
    return []


#: half-widths (degrees) of the windows ``nearest_available`` tries before the whole city
WINDOWS_DEG = (0.02, 0.08, 0.32)


def _near_window(lon: float, lat: float, half_deg: float):
    """Return the condition "the responder's position can lie in the window" (see _positions).

    Own position in the window; else its center's; else its grid's bbox meets the window
    (the grid's representative point lies inside the grid).
    """
    x0, x1, y0, y1 = lon - half_deg, lon + half_deg, lat - half_deg, lat + half_deg
    own = and_(Responder.lon.is_not(None), Responder.lat.is_not(None),
               Responder.lon.between(x0, x1), Responder.lat.between(y0, y1))  # fmt: skip
    at_center = and_(Center.lon.between(x0, x1), Center.lat.between(y0, y1))
    in_grid = and_(Grid.maxx >= x0, Grid.minx <= x1, Grid.maxy >= y0, Grid.miny <= y1)
    return or_(own, and_(or_(Responder.lon.is_(None), Responder.lat.is_(None)),
                         or_(at_center, in_grid)))  # fmt: skip


def grid_worker(session: Session, grid_id: int) -> int | None:
    """Return the id of the grid's available worker with the lowest id, or None."""
    return (
        session.execute(
            select(Responder.id)
            .where(Responder.grid_id == int(grid_id), Responder.available.is_(True))
            .order_by(Responder.id)
            .limit(1)
        )
        .scalars()
        .first()
    )


def route_incident(
    session: Session,
    *,
    grid_id: int,
    lon: float,
    lat: float,
    level: str,
    loc: GridLocator | None = None,
) -> Route:
    """Return the Route (level, center, assignee) of an incident at WGS-84 (lon, lat).

    Parameters
    ----------
    grid_id : int
        The grid holding the point.
    level : str
        The owning level: the category's ``owner_level`` at intake, a higher level on
        escalation (one of grid, community, street, district, city).
    """
    if level not in ESCALATION_ORDER:
        level = "grid"
    loc = loc or locator(session)
    center_id = loc.center_for(grid_id, level)
    if level == "grid":
        worker = grid_worker(session, grid_id)
        if worker is not None:
            return Route(level, center_id, worker, "grid worker")
        near = nearest_available(session, lon, lat)
        if near:
            rid, dist = near[0]
            return Route(level, center_id, rid, f"grid worker unavailable; nearest {dist:.0f} m")
        return Route(level, center_id, None, "nobody available; queued at the center")
    if center_id is not None:
        near = nearest_available(session, lon, lat, center_id=center_id)
        if near:
            return Route(level, center_id, near[0][0], f"{level} center staff")
    return Route(level, center_id, None, f"queued at the {level} center")


def cameras_seeing_point(
    session: Session, lon: float, lat: float, limit: int = 8, *, scope: Scope
) -> list[dict]:
    """Return up to ``limit`` ``scope`` cameras whose view cone holds WGS-84 (lon, lat).

    Each item: id, gb_id, name, status, distance_m. Uses ``geo.cameras_seeing``; candidates
    come from a ~1 km window on the indexed lon/lat columns.
    """
    from geo import cameras_seeing

    d = 0.01
    rows = session.execute(
        select(
            Camera.id, Camera.gb_id, Camera.name, Camera.status, Camera.lon, Camera.lat,
            Camera.azimuth, Camera.fov, Camera.range_m,
        ).where(
            Camera.lon.between(lon - d, lon + d), Camera.lat.between(lat - d, lat + d),
            *scope.cameras_condition(),
        ).order_by(Camera.id)
    ).all()  # fmt: skip
    if not rows:
        return []
    frame = pd.DataFrame(
        [r._asdict() for r in rows],
        columns=["id", "gb_id", "name", "status", "lon", "lat", "azimuth", "fov", "range_m"],
    )
    pos = cameras_seeing(lon, lat, frame)[:limit]
    out = []
    for p in pos:
        r = frame.iloc[p]
        dist = float(haversine_m(lon, lat, r["lon"], r["lat"]))
        out.append({"id": int(r["id"]), "gb_id": r["gb_id"], "name": r["name"],
                    "status": r["status"], "distance_m": round(dist, 1)})  # fmt: skip
    return out
