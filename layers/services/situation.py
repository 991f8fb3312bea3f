"""The situation snapshot of a map view: what the offline situation export draws, read at once.

One transaction reads the grid counts, KPIs and breadcrumb of a map filter and, for the
layers asked for, the grids, district outlines, heat-map points, incident points, cameras
and centers inside a WGS-84 window (EPSG:4326), all limited to the filter's scope. Camera
coverage (a cached, Database-level computation) is ``mapdata.grid_coverage``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field

import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.models import AdminArea, Camera, Center, Grid
from layers.services import mapdata

MAX_GRIDS = 20_000
MAX_POINTS = 3_000
MAX_CAMERAS = 5_000


@dataclass(frozen=True)
class Situation:
    """A map view's data: counts {grid id: open}, KPIs, breadcrumb and the layers asked for.

    ``grids`` and ``districts`` hold {id, code?, name, geometry} (shapely, rounded to 1e-6°);
    ``heat`` the (lon, lat) arrays of the heat map's incidents; ``incidents`` a GeoJSON
    FeatureCollection; ``cameras`` {name, status, cls, lon, lat}; ``centers`` {name, level,
    lon, lat}. A layer not asked for is empty (``heat``: None).
    """

    counts: dict[int, int]
    kpis: dict
    path: list[dict]
    grids: list[dict] = field(default_factory=list)
    districts: list[dict] = field(default_factory=list)
    heat: tuple | None = None
    incidents: dict | None = None
    cameras: list[dict] = field(default_factory=list)
    centers: list[dict] = field(default_factory=list)


def _grids(session: Session, f: mapdata.MapFilter, window: tuple) -> list[dict]:
    minx, miny, maxx, maxy = window
    rows = session.execute(
        select(Grid.id, Grid.code, Grid.name, Grid.geom_wkb)
        .where(Grid.maxx >= minx, Grid.minx <= maxx, Grid.maxy >= miny, Grid.miny <= maxy,
               *f.scope.grids(session))
        .limit(MAX_GRIDS)
    ).all()  # fmt: skip
    geoms = shapely.from_wkb([r.geom_wkb for r in rows])
    return [{"id": r.id, "code": r.code, "name": r.name,
             "geometry": shapely.set_precision(g, 1e-6)}
            for r, g in zip(rows, geoms, strict=True)]  # fmt: skip


def _districts(session: Session, f: mapdata.MapFilter, window: tuple) -> list[dict]:
    minx, miny, maxx, maxy = window
    rows = session.execute(
        select(AdminArea.id, AdminArea.name, AdminArea.geom_wkb).where(
            AdminArea.level == "district", AdminArea.maxx >= minx, AdminArea.minx <= maxx,
            AdminArea.maxy >= miny, AdminArea.miny <= maxy, *f.scope.areas(session))
    ).all()  # fmt: skip
    geoms = shapely.from_wkb([r.geom_wkb for r in rows])
    return [{"id": r.id, "name": r.name, "geometry": shapely.set_precision(g, 1e-6)}
            for r, g in zip(rows, geoms, strict=True)]  # fmt: skip


def _cameras(session: Session, f: mapdata.MapFilter, window: tuple) -> list[dict]:
    minx, miny, maxx, maxy = window
    rows = session.execute(
        select(Camera.name, Camera.status, Camera.cls, Camera.lon, Camera.lat)
        .where(Camera.lon.between(minx, maxx), Camera.lat.between(miny, maxy),
               *f.scope.cameras_condition())
        .limit(MAX_CAMERAS)
    ).all()  # fmt: skip
    return [r._asdict() for r in rows]


def _centers(session: Session, f: mapdata.MapFilter, window: tuple) -> list[dict]:
    minx, miny, maxx, maxy = window
    rows = session.execute(
        select(Center.name, Center.level, Center.lon, Center.lat).where(
            Center.lon.between(minx, maxx), Center.lat.between(miny, maxy),
            *f.scope.centers(session))
    ).all()  # fmt: skip
    return [r._asdict() for r in rows]


def situation(
    session: Session,
    f: mapdata.MapFilter,
    window: tuple[float, float, float, float],
    layers: Collection[str],
    *,
    now: dt.datetime,
    lang: str = "zh",
) -> Situation:
    """Return the situation of filter ``f`` (its scope) inside ``window`` for ``layers``.

    ``layers`` names any of grids, areas, heat, incidents, cameras, centers; ``window`` is
    (minx, miny, maxx, maxy) in WGS-84 degrees.
    """
    return Situation(
        counts=mapdata.grid_counts(session, f, now),
        kpis=mapdata.kpis(session, f, now),
        path=mapdata.area_path(session, f.area_id, f.scope) if f.area_id else [],
        grids=_grids(session, f, window) if "grids" in layers else [],
        districts=_districts(session, f, window) if "areas" in layers else [],
        heat=mapdata.incident_lonlat(session, f, now) if "heat" in layers else None,
        incidents=mapdata.incident_points(session, f, window, now, limit=MAX_POINTS, lang=lang)
        if "incidents" in layers
        else None,
        cameras=_cameras(session, f, window) if "cameras" in layers else [],
        centers=_centers(session, f, window) if "centers" in layers else [],
    )
