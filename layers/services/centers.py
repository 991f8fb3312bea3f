"""Comprehensive governance centers 综治中心 at city, county, township and village level.

Points in WGS-84 (EPSG:4326), each linked to the administrative area it serves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import geopandas as gpd
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import CENTER_LEVELS, AdminArea, Center
from layers.services import (
    ServiceError,
    bbox_filter_points,
    check_bbox,
    make_gdf,
    use_session,
)
from layers.services.scope import Scope

log = logging.getLogger(__name__)

COLUMNS = (
    "id", "level", "name", "area_id", "area_code", "area_name",
    "services", "hours", "phone", "lon", "lat",
)  # fmt: skip
# The administrative level each center level serves.
AREA_LEVEL_OF_CENTER = {
    "city": "city",
    "county": "district",
    "township": "street",
    "village": "community",
}


def check_level(level: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Return the center level(s) as a tuple, or None; raise ServiceError for unknown ones."""
    if level is None:
        return None
    levels = (level,) if isinstance(level, str) else tuple(level)
    bad = [lv for lv in levels if lv not in CENTER_LEVELS]
    if bad:
        raise ServiceError(f"level: {bad[0]!r} is unknown; use one of {', '.join(CENTER_LEVELS)}")
    return levels


def list_centers(
    db: Database | Session,
    *,
    scope: Scope,
    level: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    area_code: str | None = None,
) -> list[dict]:
    """Return the ``scope``'s centers as plain dicts (``read_gdf``'s columns) by level, name."""
    levels = check_level(level)
    box = check_bbox(bbox)
    stmt = select(Center, AdminArea.code, AdminArea.name).outerjoin(
        AdminArea, Center.area_id == AdminArea.id
    )
    if levels:
        stmt = stmt.where(Center.level.in_(levels))
    if box:
        stmt = stmt.where(bbox_filter_points(Center, box))
    if area_code is not None:
        stmt = stmt.where(AdminArea.code == str(area_code))
    with use_session(db) as session:
        rows = session.execute(stmt.where(*scope.centers(session))).all()
    order = {lv: i for i, lv in enumerate(CENTER_LEVELS)}
    rows.sort(key=lambda r: (order.get(r[0].level, 9), r[0].name, r[0].id))
    return [
        {
            "id": c.id,
            "level": c.level,
            "name": c.name,
            "area_id": c.area_id,
            "area_code": acode,
            "area_name": aname,
            "services": c.services,
            "hours": c.hours,
            "phone": c.phone,
            "lon": c.lon,
            "lat": c.lat,
        }
        for c, acode, aname in rows
    ]


def read_gdf(
    db: Database | Session,
    *,
    scope: Scope,
    level: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    area_code: str | None = None,
) -> gpd.GeoDataFrame:
    """Return centers as a point GeoDataFrame in EPSG:4326.

    Parameters
    ----------
    scope : layers.services.scope.Scope
        What the reader may see (a district scope: the centers of its areas).
    level : "city", "county", "township", "village" or a sequence of them, optional
    bbox : (minx, miny, maxx, maxy), optional
        WGS-84 window on the indexed lon/lat columns.
    area_code : str, optional
        Only centers serving the area with this code.
    """
    records = list_centers(db, scope=scope, level=level, bbox=bbox, area_code=area_code)
    geoms = [shapely.Point(r["lon"], r["lat"]) for r in records]
    return make_gdf(records, geoms, COLUMNS)


def counts_by_level(db: Database | Session) -> dict[str, int]:
    """Return {center level: count} with zeros for missing levels."""
    with use_session(db) as session:
        rows = session.execute(select(Center.level, func.count()).group_by(Center.level)).all()
    out = dict.fromkeys(CENTER_LEVELS, 0)
    out.update({lv: int(n) for lv, n in rows})
    return out
