"""Responders: grid workers 网格员 and center staff who can be dispatched.

A responder's position is its own lon/lat when known, else its center's location, else the
representative point of its home grid. Positions WGS-84 (EPSG:4326); phone numbers are only
ever returned masked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from geo.measure import haversine_m
from layers.codes import mask_phone
from layers.db import Database
from layers.models import Center, Grid, Responder
from layers.services import (
    NotFoundError,
    ServiceError,
    check_bbox,
    get_row,
    make_gdf,
    use_session,
)
from layers.services.scope import Scope

log = logging.getLogger(__name__)

RESPONDER_KINDS = ("grid_worker", "center_staff")
COLUMNS = (
    "id", "name", "kind", "phone", "available", "grid_id", "grid_code", "center_id",
    "center_name", "lon", "lat",
)  # fmt: skip


def list_responders(
    db: Database | Session,
    *,
    scope: Scope,
    kind: str | None = None,
    available: bool | None = None,
    grid_id: int | None = None,
    center_id: int | None = None,
    bbox: Sequence[float] | None = None,
) -> list[dict]:
    """Return responders as display-safe dicts (masked phone) with a resolved position.

    ``lon``/``lat`` are the responder's own position, else its center's, else its grid's
    representative point (None if none is known). ``bbox`` filters on that position;
    ``scope`` keeps the workers of its grids and the staff of its centers.
    """
    if kind is not None and kind not in RESPONDER_KINDS:
        raise ServiceError(f"kind: {kind!r} is unknown; use one of {', '.join(RESPONDER_KINDS)}")
    box = check_bbox(bbox)
    stmt = (
        select(Responder, Grid.code, Grid.geom_wkb, Center.name, Center.lon, Center.lat)
        .outerjoin(Grid, Responder.grid_id == Grid.id)
        .outerjoin(Center, Responder.center_id == Center.id)
        .order_by(Responder.id)
    )
    if kind is not None:
        stmt = stmt.where(Responder.kind == kind)
    if available is not None:
        stmt = stmt.where(Responder.available == bool(available))
    if grid_id is not None:
        stmt = stmt.where(Responder.grid_id == int(grid_id))
    if center_id is not None:
        stmt = stmt.where(Responder.center_id == int(center_id))
    with use_session(db) as session:
        rows = session.execute(stmt.where(*scope.responders(session))).all()
    out = []
    for r, gcode, gwkb, cname, clon, clat in rows:
        lon, lat = r.lon, r.lat
        if lon is None or lat is None:
            if clon is not None and clat is not None:
                lon, lat = clon, clat
            elif gwkb is not None:
                p = shapely.point_on_surface(shapely.from_wkb(gwkb))
                lon, lat = p.x, p.y
        if box and (lon is None or not (box[0] <= lon <= box[2] and box[1] <= lat <= box[3])):
            continue
        out.append(
            {
                "id": r.id,
                "name": r.name,
                "kind": r.kind,
                "phone": mask_phone(r.phone),
                "available": bool(r.available),
                "grid_id": r.grid_id,
                "grid_code": gcode,
                "center_id": r.center_id,
                "center_name": cname,
                "lon": lon,
                "lat": lat,
            }
        )
    return out


def read_gdf(
    db: Database | Session,
    *,
    scope: Scope,
    kind: str | None = None,
    available: bool | None = None,
    bbox: Sequence[float] | None = None,
) -> gpd.GeoDataFrame:
    """Return responders with a known position as a point GeoDataFrame in EPSG:4326."""
    records = [
        r
        for r in list_responders(db, scope=scope, kind=kind, available=available, bbox=bbox)
        if r["lon"] is not None
    ]
    geoms = [shapely.Point(r["lon"], r["lat"]) for r in records]
    return make_gdf(records, geoms, COLUMNS)


def available_near(
    db: Database | Session,
    lon: float,
    lat: float,
    n: int = 5,
    *,
    scope: Scope,
    kind: str | None = None,
) -> list[dict]:
    """Return up to ``n`` available responders nearest to WGS-84 (lon, lat), nearest first.

    Each dict is a ``list_responders`` entry plus ``distance_m`` (great-circle metres).
    Responders whose position is unknown are left out.

    Raises
    ------
    ServiceError
        If lon/lat are not finite degrees or ``n`` is not positive.
    """
    try:
        lon_f, lat_f = float(lon), float(lat)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"lon/lat: {lon!r}, {lat!r} are not numbers") from exc
    if not (
        np.isfinite(lon_f) and np.isfinite(lat_f) and -180 <= lon_f <= 180 and -90 <= lat_f <= 90
    ):
        raise ServiceError(f"lon/lat: ({lon!r}, {lat!r}) is not a WGS-84 position in degrees")
    if int(n) < 1:
        raise ServiceError(f"n: {n!r}; ask for at least 1 responder")
    people = [r for r in list_responders(db, scope=scope, available=True, kind=kind)
              if r["lon"] is not None]  # fmt: skip
    if not people:
        return []
    dist = haversine_m(lon_f, lat_f, [r["lon"] for r in people], [r["lat"] for r in people])
    order = np.argsort(dist, kind="stable")[: int(n)]
    return [{**people[i], "distance_m": float(dist[i])} for i in order]


def set_available(db: Database | Session, responder_id: int, available: bool) -> Responder:
    """Return the responder after setting its availability."""
    with use_session(db) as session:
        responder = get_row(session, Responder, responder_id)
        if responder is None:
            raise NotFoundError(f"no responder with id {responder_id!r}")
        responder.available = bool(available)
        session.flush()
    return responder
