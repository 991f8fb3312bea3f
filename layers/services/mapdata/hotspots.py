"""The map's hotspot list: the grids with the most incidents, with their Getis-Ord Gi* z.

Gi* compares each grid's count, with its neighbours' (grids sharing an edge or a vertex),
to the whole of the grids the filter covers (its area and the viewer's scope). The
neighbourhood weights, the costly part, are built once per grid-layer version, area and
scope and kept in a small process cache (derived data, not per-user state).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from geo.hotspots import hotspots, neighbourhood_weights
from layers.models import AdminArea, Grid, Incident
from layers.services import keep_recent
from layers.services.mapdata.filters import (
    MapFilter,
    area_grid_ids_query,
    incident_conditions,
    sessioned,
)
from layers.services.versions import stamps

#: neighbourhoods kept per process: one per (database, grid version, area, scope) in use
NEIGHBOURHOOD_ENTRIES = 16
#: what a neighbourhood is built from: the grids' shapes and communities, and the area tree
NEIGHBOURHOOD_STAMPS = ("grids", "admin_areas")


@dataclass
class Neighbourhood:
    """The grids a filter covers (ids ascending, WGS-84 shapes) and their queen weights."""

    grid_ids: np.ndarray
    geoms: np.ndarray
    weights: object  # libpysal.weights.W


@dataclass
class _NeighbourhoodCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict = field(default_factory=dict)


_cache = _NeighbourhoodCache()


def _neighbourhood(session: Session, f: MapFilter) -> Neighbourhood | None:
    """Return the neighbourhood of the filter's grids (None: fewer than 3 grids)."""
    key = (str(session.get_bind().url), stamps(session, NEIGHBOURHOOD_STAMPS), f.area_id,
           f.scope.key())  # fmt: skip
    with _cache.lock:
        hit = _cache.entries.get(key)
        if hit is not None:
            keep_recent(_cache.entries, key, hit, limit=NEIGHBOURHOOD_ENTRIES)
            return hit[0]
    stmt = select(Grid.id, Grid.geom_wkb).where(*f.scope.grids(session)).order_by(Grid.id)
    if f.area_id is not None:
        level = session.scalar(select(AdminArea.level).where(AdminArea.id == f.area_id))
        if level not in (None, "city"):
            stmt = stmt.where(Grid.id.in_(area_grid_ids_query(level, f.area_id)))
    rows = session.execute(stmt).all()
    geoms = shapely.from_wkb([r.geom_wkb for r in rows]) if rows else np.empty(0, object)
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    hood = None
    if usable.sum() >= 3:
        ids = np.array([r.id for r in rows], dtype=np.int64)[usable]
        hood = Neighbourhood(ids, geoms[usable], neighbourhood_weights(geoms[usable]))
    with _cache.lock:
        keep_recent(_cache.entries, key, (hood,), limit=NEIGHBOURHOOD_ENTRIES)
    return hood


def _gi_z(session: Session, f: MapFilter, counts: dict[int, int]) -> dict[int, float]:
    """Return {grid id: Gi* z} over the filter's grids (empty when it cannot be computed)."""
    hood = _neighbourhood(session, f)
    if hood is None:
        return {}
    y = np.array([counts.get(int(g), 0) for g in hood.grid_ids], dtype=float)
    frame = hotspots(hood.geoms, y, weights=hood.weights)
    return {int(g): float(z) for g, z in zip(hood.grid_ids, frame["gi_z"], strict=True)}


@sessioned
def top_hotspots(
    session: Session, f: MapFilter, now: dt.datetime | None = None, n: int = 8
) -> list[dict]:
    """Return the ``n`` grids with the most incidents in the filter (code, name, count, z).

    Ordered by count (then grid id). ``z`` is the grid's Getis-Ord Gi* z-score
    (``geo.hotspots``: queen contiguity, the grid itself included) over every grid of the
    filter's area and scope, with the filter's counts (0 where none); None when it is not
    defined (fewer than 3 grids, or every grid with the same count).
    """
    counts = {
        int(g): int(c)
        for g, c in session.execute(
            select(Incident.grid_id, func.count())
            .where(*incident_conditions(session, f, now), Incident.grid_id.is_not(None))
            .group_by(Incident.grid_id)
        )
    }
    if not counts:
        return []
    top = sorted(counts, key=lambda g: (-counts[g], g))[:n]
    info = {
        g.id: g
        for g in session.execute(
            select(Grid.id, Grid.code, Grid.name, Grid.minx, Grid.miny, Grid.maxx, Grid.maxy)
            .where(Grid.id.in_(top))
        )
    }  # fmt: skip
    z = _gi_z(session, f, counts)
    out = []
    for gid in top:
        g = info.get(gid)
        if g is None:
            continue
        gz = z.get(gid)
        out.append({"grid_id": g.id, "code": g.code, "name": g.name, "count": counts[gid],
                    "bounds": [g.minx, g.miny, g.maxx, g.maxy],
                    "z": None if gz is None or math.isnan(gz) else round(gz, 3)})  # fmt: skip
    return out
