"""Administrative areas: city 市, district/county 区县, street/township 街道/乡镇, community/village.

One table (``AdminArea``) holds all four levels, told apart by ``level``. Codes: 6-digit
GB/T 2260 for city and district, 9 digits for streets, 12-digit statistical codes for
communities. Geometries WGS-84 (EPSG:4326).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import geopandas as gpd
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from layers.db import Database
from layers.models import ADMIN_LEVELS, AdminArea
from layers.services import (
    NotFoundError,
    ServiceError,
    bbox_filter_polygons,
    check_bbox,
    exact_bbox_mask,
    make_gdf,
    use_session,
)
from layers.services.scope import Scope

log = logging.getLogger(__name__)

COLUMNS = ("id", "level", "code", "name", "parent_id", "parent_code", "area_m2")


def check_level(level: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Return the level(s) as a tuple, or None; raise ServiceError for an unknown level."""
    if level is None:
        return None
    levels = (level,) if isinstance(level, str) else tuple(level)
    bad = [lv for lv in levels if lv not in ADMIN_LEVELS]
    if bad:
        raise ServiceError(f"level: {bad[0]!r} is unknown; use one of {', '.join(ADMIN_LEVELS)}")
    return levels


def read_gdf(
    db: Database | Session,
    *,
    scope: Scope,
    level: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    parent_code: str | None = None,
    codes: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """Return administrative areas as a GeoDataFrame in EPSG:4326.

    Parameters
    ----------
    db : Database or Session
    scope : layers.services.scope.Scope
        What the reader may see: a district scope keeps its districts and the areas below.
    level : str or sequence of str, optional
        "city", "district", "street" and/or "community"; all levels if None.
    bbox : (minx, miny, maxx, maxy), optional
        WGS-84 window: the indexed bbox columns pick candidates, then an exact shapely
        intersects test keeps those that really meet the window.
    parent_code : str, optional
        Only the children of the area with this code.
    codes : sequence of str, optional
        Only these codes.

    Returns
    -------
    GeoDataFrame with columns id, level, code, name, parent_id, parent_code, area_m2 and
    geometry, ordered by level then code.
    """
    levels = check_level(level)
    box = check_bbox(bbox)
    parent = aliased(AdminArea)
    stmt = select(AdminArea, parent.code).outerjoin(parent, AdminArea.parent_id == parent.id)
    if levels:
        stmt = stmt.where(AdminArea.level.in_(levels))
    if box:
        stmt = stmt.where(bbox_filter_polygons(AdminArea, box))
    if parent_code is not None:
        stmt = stmt.where(parent.code == str(parent_code))
    if codes is not None:
        stmt = stmt.where(AdminArea.code.in_([str(c) for c in codes]))
    order = {lv: i for i, lv in enumerate(ADMIN_LEVELS)}
    with use_session(db) as session:
        rows = session.execute(stmt.where(*scope.areas(session))).all()
    rows.sort(key=lambda r: (order.get(r[0].level, 9), r[0].code))
    records = [
        {
            "id": a.id,
            "level": a.level,
            "code": a.code,
            "name": a.name,
            "parent_id": a.parent_id,
            "parent_code": pcode,
            "area_m2": a.area_m2,
        }
        for a, pcode in rows
    ]
    geoms = [shapely.from_wkb(a.geom_wkb) for a, _ in rows]
    keep = exact_bbox_mask(geoms, box)
    records = [r for r, k in zip(records, keep, strict=True) if k]
    geoms = [g for g, k in zip(geoms, keep, strict=True) if k]
    return make_gdf(records, geoms, COLUMNS)


def get_area(db: Database | Session, code: str) -> AdminArea:
    """Return the AdminArea with this code; raise NotFoundError if none."""
    with use_session(db) as session:
        area = session.scalar(select(AdminArea).where(AdminArea.code == str(code)))
    if area is None:
        raise NotFoundError(f"no administrative area with code {code!r}")
    return area


def city_outline(db: Database | Session) -> shapely.Geometry | None:
    """Return the union of all district outlines (WGS-84), or None if no district is stored."""
    with use_session(db) as session:
        wkbs = session.scalars(
            select(AdminArea.geom_wkb).where(AdminArea.level == "district")
        ).all()
    if not wkbs:
        return None
    return shapely.union_all(shapely.from_wkb(list(wkbs)))


def counts_by_level(db: Database | Session) -> dict[str, int]:
    """Return {level: number of stored areas} for every level (zeros included)."""
    from sqlalchemy import func

    with use_session(db) as session:
        rows = session.execute(
            select(AdminArea.level, func.count()).group_by(AdminArea.level)
        ).all()
    out = dict.fromkeys(ADMIN_LEVELS, 0)
    out.update({lv: int(n) for lv, n in rows})
    return out
