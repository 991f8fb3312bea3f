"""The map's hotspot list: the grids with the most incidents, with their Getis-Ord Gi* z.

Gi* compares each grid's count, with its neighbours' (grids sharing an edge or a vertex),
to the whole of the grids the filter covers (its area and the viewer's scope). The
neighbourhood weights of the whole city, the costly part, are built once per grid-layer
version and kept in a small process cache (derived data, not per-user state); a filter's
grids take their rows and columns.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
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
#: cities kept per process: one per (database, grid version) in use
NEIGHBOURHOOD_ENTRIES = 4
#: what the city's neighbourhood is built from: the grids (shapes, communities)
NEIGHBOURHOOD_STAMPS = ("grids",)


@dataclass
class Neighbourhood:
    """A set of grids (ids ascending, WGS-84 shapes) and their Gi* weights."""

    grid_ids: np.ndarray
    geoms: np.ndarray
    weights: sp.csr_matrix  # geo.hotspots.neighbourhood_weights

    def subset(self, ids: np.ndarray) -> Neighbourhood:
        """Return the neighbourhood of the grids ``ids`` among these (same contiguity)."""
        if not len(self.grid_ids):
            return self
        pos = np.clip(np.searchsorted(self.grid_ids, ids), 0, len(self.grid_ids) - 1)
        pos = pos[self.grid_ids[pos] == ids]
        return Neighbourhood(self.grid_ids[pos], self.geoms[pos],
                             self.weights[pos][:, pos].tocsr())  # fmt: skip


@dataclass
class _NeighbourhoodCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict = field(default_factory=dict)


_cache = _NeighbourhoodCache()


def _city(session: Session) -> Neighbourhood:
    """Return every grid of the city with its queen contiguity, built once per grid version."""
    key = (str(session.get_bind().url), stamps(session, NEIGHBOURHOOD_STAMPS))
    with _cache.lock:
        hit = _cache.entries.get(key)
        if hit is not None:
            return keep_recent(_cache.entries, key, hit, limit=NEIGHBOURHOOD_ENTRIES)
    rows = session.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
    geoms = shapely.from_wkb([r.geom_wkb for r in rows]) if rows else np.empty(0, object)
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    ids = np.array([r.id for r in rows], dtype=np.int64)[usable]
    weights = neighbourhood_weights(geoms[usable]) if usable.sum() else sp.csr_matrix((0, 0))
    city = Neighbourhood(ids, geoms[usable], weights)
    with _cache.lock:
        keep_recent(_cache.entries, key, city, limit=NEIGHBOURHOOD_ENTRIES)
    return city


def _neighbourhood(session: Session, f: MapFilter) -> Neighbourhood | None:
    """Return the neighbourhood of the filter's grids (None: fewer than 3 grids)."""
    city = _city(session)
    if f.area_id is None and f.scope.unrestricted:
        hood = city
    else:
        stmt = select(Grid.id).where(*f.scope.grids(session)).order_by(Grid.id)
        if f.area_id is not None:
            level = session.scalar(select(AdminArea.level).where(AdminArea.id == f.area_id))
            if level not in (None, "city"):
                stmt = stmt.where(Grid.id.in_(area_grid_ids_query(level, f.area_id)))
        hood = city.subset(np.array(session.scalars(stmt).all(), dtype=np.int64))
    return hood if len(hood.grid_ids) >= 3 else None


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
