"""Spatial assignment against the stored grids: point → grid → community → street → district.

``GridLocator`` builds a ``geo.GridIndex`` over every grid once and is cached per database
and grid-layer version, so each incident insert costs a raster lookup, not a table scan.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from geo.assign import GridIndex
from layers.db import Database
from layers.models import VERSIONED_COLUMNS, AdminArea, Center, Grid
from layers.services import keep_recent
from layers.services.versions import stamps

LEVEL_OF_CENTER = {"village": "community", "township": "street", "county": "district",
                   "city": "city"}  # fmt: skip
ESCALATION_ORDER = ("grid", "community", "street", "district", "city")


@dataclass
class GridLocator:
    """The cached grid index of one database plus the hierarchy above each grid (``locator``)."""

    version: tuple
    grid_ids: np.ndarray  # position -> grid id
    index: GridIndex | None
    grid_community: dict[int, int]
    area_parent: dict[int, int | None]
    area_level: dict[int, str]
    center_of_area: dict[int, int]  # area id -> center id (the area's own center)
    city_center: int | None

    def grid_at(self, lon, lat) -> np.ndarray:
        """Return the grid id holding each point (WGS-84), -1 where outside every grid."""
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        if self.index is None or len(self.grid_ids) == 0:
            return np.full(lon.shape, -1, dtype=np.int64)
        pos = self.index.assign(lon, lat)
        out = np.full(pos.shape, -1, dtype=np.int64)
        ok = pos >= 0
        out[ok] = self.grid_ids[pos[ok]]
        return out

    def area_chain(self, grid_id: int) -> dict[str, int]:
        """Return {level: area id} for the community, street, district and city above a grid."""
        chain: dict[str, int] = {}
        area = self.grid_community.get(grid_id)
        while area is not None:
            chain[self.area_level.get(area, "?")] = area
            area = self.area_parent.get(area)
        return chain

    def center_for(self, grid_id: int | None, level: str) -> int | None:
        """Return the center responsible at ``level`` (grid/community/street/district/city)."""
        if grid_id is None or grid_id < 0:
            return self.city_center
        chain = self.area_chain(grid_id)
        start = ESCALATION_ORDER.index(level) if level in ESCALATION_ORDER else 1
        # a grid has no center of its own: its community's center owns grid-level work
        for lvl in ESCALATION_ORDER[max(start, 1) :]:
            area = chain.get(lvl)
            if area is not None and area in self.center_of_area:
                return self.center_of_area[area]
        return self.city_center


_cache: dict[str, GridLocator] = {}
_lock = threading.Lock()


def _grid_version(s: Session) -> tuple:
    # The database bumps a layer's stamp on every write to what the locator reads (whoever
    # writes, any process), and draws a new token each time, so a database recreated at the
    # same URL is not mistaken for the one cached.
    return stamps(s, VERSIONED_COLUMNS)


@contextmanager
def _session_of(db_or_session: Database | Session) -> Iterator[Session]:
    if isinstance(db_or_session, Session):
        yield db_or_session
    else:
        with db_or_session.session() as s:
            yield s


def grid_at_point(db_or_session: Database | Session, lon: float, lat: float) -> int | None:
    """Return the id of the grid holding the point (lon, lat) in WGS-84, or None.

    One point: on PostGIS a GiST-indexed ``ST_Covers`` query (no grid index to build or keep
    per web worker; see bench/RESULTS.md, PostGIS), elsewhere the cached ``locator``. Ties
    (a point on a shared edge) go to the lowest grid id either way, as in ``geo.GridIndex``.
    """
    with _session_of(db_or_session) as s:
        if s.get_bind().dialect.name == "postgresql":
            from layers.spatial_sql import point_covered_by

            return s.scalar(
                select(Grid.id).where(point_covered_by(Grid, lon, lat)).order_by(Grid.id).limit(1)
            )
        gid = int(locator(s).grid_at([lon], [lat])[0])
        return gid if gid >= 0 else None


def locator(db_or_session: Database | Session) -> GridLocator:
    """Return the (cached) GridLocator for a database; rebuilt when grids or centers change."""
    with _session_of(db_or_session) as s:
        version = _grid_version(s)
        key = str(s.get_bind().url)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.version == version:
            return keep_recent(_cache, key, cached)
    with _session_of(db_or_session) as s:
        grids = s.execute(select(Grid.id, Grid.community_id, Grid.geom_wkb).order_by(Grid.id)).all()
        areas = s.execute(select(AdminArea.id, AdminArea.parent_id, AdminArea.level)).all()
        centers = s.execute(
            select(Center.id, Center.area_id, Center.level).order_by(Center.id)
        ).all()
    ids = np.array([g.id for g in grids], dtype=np.int64)
    index = GridIndex(shapely.from_wkb([g.geom_wkb for g in grids])) if grids else None
    center_of_area: dict[int, int] = {}
    city_center = None
    for c in centers:
        if c.area_id is not None and c.area_id not in center_of_area:
            center_of_area[c.area_id] = c.id
        if c.level == "city" and city_center is None:
            city_center = c.id
    loc = GridLocator(
        version=version,
        grid_ids=ids,
        index=index,
        grid_community={g.id: g.community_id for g in grids},
        area_parent={a.id: a.parent_id for a in areas},
        area_level={a.id: a.level for a in areas},
        center_of_area=center_of_area,
        city_center=city_center,
    )
    with _lock:
        keep_recent(_cache, key, loc)
    return loc
