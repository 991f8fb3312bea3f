"""Responsibility grids 网格: 14-digit unit-grid codes, polygons, parent community, workers.

Geometries WGS-84 (EPSG:4326). Grid workers' phone numbers are only ever returned masked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import geopandas as gpd
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from layers.codes import mask_phone
from layers.db import Database
from layers.models import AdminArea, Camera, Grid, Incident, Responder
from layers.services import (
    NotFoundError,
    bbox_filter_polygons,
    check_bbox,
    exact_bbox_mask,
    get_row,
    make_gdf,
    use_session,
)
from layers.services.scope import Scope

log = logging.getLogger(__name__)

COLUMNS = ("id", "code", "name", "community_id", "community_code", "community_name", "area_m2")
# Incident statuses that still need work (not yet closed / evaluated).
OPEN_INCIDENT_STATUSES = ("collected", "registered", "dispatched", "handling", "reported")


def read_gdf(
    db: Database | Session,
    *,
    scope: Scope,
    bbox: Sequence[float] | None = None,
    community_code: str | None = None,
    codes: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """Return grids as a GeoDataFrame in EPSG:4326.

    Parameters
    ----------
    db : Database or Session
    scope : layers.services.scope.Scope
        What the reader may see (a district scope: the grids of its districts).
    bbox : (minx, miny, maxx, maxy), optional
        WGS-84 window (indexed bbox columns, then an exact intersects test).
    community_code : str, optional
        Only the grids of the community with this 12-digit code.
    codes : sequence of str, optional
        Only these grid codes.

    Returns
    -------
    GeoDataFrame with columns id, code, name, community_id, community_code, community_name,
    area_m2 and geometry, ordered by code.
    """
    box = check_bbox(bbox)
    community = aliased(AdminArea)
    stmt = (
        select(Grid, community.code, community.name)
        .outerjoin(community, Grid.community_id == community.id)
        .order_by(Grid.code)
    )
    if box:
        stmt = stmt.where(bbox_filter_polygons(Grid, box))
    if community_code is not None:
        stmt = stmt.where(community.code == str(community_code))
    if codes is not None:
        stmt = stmt.where(Grid.code.in_([str(c) for c in codes]))
    with use_session(db) as session:
        rows = session.execute(stmt.where(*scope.grids(session))).all()
    geoms = [shapely.from_wkb(g.geom_wkb) for g, _, _ in rows]
    keep = exact_bbox_mask(geoms, box)
    records = [
        {
            "id": g.id,
            "code": g.code,
            "name": g.name,
            "community_id": g.community_id,
            "community_code": ccode,
            "community_name": cname,
            "area_m2": g.area_m2,
        }
        for (g, ccode, cname), k in zip(rows, keep, strict=True)
        if k
    ]
    return make_gdf(records, [g for g, k in zip(geoms, keep, strict=True) if k], COLUMNS)


def get_grid(db: Database | Session, grid_id: int | str) -> Grid:
    """Return the Grid with this database id (int) or grid code (14/15-digit str).

    Raises
    ------
    NotFoundError
        If there is no such grid.
    """
    with use_session(db) as session:
        if isinstance(grid_id, str) and not grid_id.isdigit():
            grid = None
        elif isinstance(grid_id, str) and len(grid_id) >= 14:
            grid = session.scalar(select(Grid).where(Grid.code == grid_id))
        else:
            grid = get_row(session, Grid, grid_id)
    if grid is None:
        raise NotFoundError(f"no grid with id or code {grid_id!r}")
    return grid


def grid_card(db: Database | Session, grid_id: int | str) -> dict:
    """Return the information card of one grid, safe to display.

    Returns
    -------
    dict with id, code, name, area_km2, community / street / district (code and name),
    workers (name, masked phone, availability) and counts (cameras, cameras_online,
    incidents, incidents_open, responders).

    Raises
    ------
    NotFoundError
        If there is no such grid.
    """
    with use_session(db) as session:
        grid = get_grid(session, grid_id)
        chain: dict[str, dict | None] = {"community": None, "street": None, "district": None}
        area = session.get(AdminArea, grid.community_id) if grid.community_id else None
        while area is not None:
            if area.level in chain:
                chain[area.level] = {"code": area.code, "name": area.name}
            area = session.get(AdminArea, area.parent_id) if area.parent_id else None
        workers = session.scalars(
            select(Responder).where(Responder.grid_id == grid.id).order_by(Responder.id)
        ).all()
        n_cameras = session.scalar(select(func.count()).where(Camera.grid_id == grid.id))
        n_online = session.scalar(
            select(func.count()).where(Camera.grid_id == grid.id, Camera.status == "online")
        )
        n_incidents = session.scalar(select(func.count()).where(Incident.grid_id == grid.id))
        n_open = session.scalar(
            select(func.count()).where(
                Incident.grid_id == grid.id, Incident.status.in_(OPEN_INCIDENT_STATUSES)
            )
        )
    return {
        "id": grid.id,
        "code": grid.code,
        "name": grid.name,
        "area_km2": None if grid.area_m2 is None else round(grid.area_m2 / 1e6, 4),
        **chain,
        "workers": [
            {
                "id": w.id,
                "name": w.name,
                "kind": w.kind,
                "phone": mask_phone(w.phone),
                "available": bool(w.available),
            }
            for w in workers
        ],
        "counts": {
            "cameras": int(n_cameras or 0),
            "cameras_online": int(n_online or 0),
            "incidents": int(n_incidents or 0),
            "incidents_open": int(n_open or 0),
            "responders": len(workers),
        },
    }


def count(db: Database | Session) -> int:
    """Return the number of stored grids."""
    with use_session(db) as session:
        return int(session.scalar(select(func.count()).select_from(Grid)) or 0)
