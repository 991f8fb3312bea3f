"""Areas, cards and cones of the situation map: breadcrumbs, labels, bounds, grid and
camera cards, camera cones in view and what a click hit (WGS-84, EPSG:4326).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from geo.measure import mercator_metres_per_pixel, metres_per_degree
from layers.db import Database
from layers.models import OPEN_STATUSES, AdminArea, Camera, Category, Grid, Incident
from layers.services import NotFoundError
from layers.services.incidents import default_categories
from layers.services.mapdata.coverage import grid_coverage
from layers.services.mapdata.filters import CST, sessioned
from layers.services.mapdata.live import POINT_COLUMNS, incident_feature
from layers.services.scope import Scope


@sessioned
def area_path(session: Session, area_id: int | None, scope: Scope) -> list[dict]:
    """Return the breadcrumb from the top area down to ``area_id`` ([] for the whole city).

    An area outside ``scope`` has no breadcrumb ([]); areas above the scope are left out.
    """
    out: list[dict] = []
    if not scope.allows_area(session, area_id):
        return out
    seen = set()
    while area_id is not None and area_id not in seen:
        seen.add(area_id)
        a = session.execute(
            select(AdminArea.id, AdminArea.level, AdminArea.name, AdminArea.code,
                   AdminArea.parent_id, AdminArea.minx, AdminArea.miny, AdminArea.maxx,
                   AdminArea.maxy).where(AdminArea.id == area_id)
        ).first()  # fmt: skip
        if a is None:
            break
        if a.level != "city" and scope.allows_area(session, a.id):
            out.append({"id": a.id, "level": a.level, "name": a.name, "code": a.code,
                        "bounds": [a.minx, a.miny, a.maxx, a.maxy]})  # fmt: skip
        area_id = a.parent_id
    return list(reversed(out))


@sessioned
def grid_bounds(session: Session, grid_id: int, scope: Scope) -> list[float] | None:
    """Return [minx, miny, maxx, maxy] of one grid (WGS-84), None if none in ``scope``."""
    if not scope.allows_grid(session, grid_id):
        return None
    b = session.execute(
        select(Grid.minx, Grid.miny, Grid.maxx, Grid.maxy).where(Grid.id == grid_id)
    ).first()
    return None if b is None else [float(v) for v in b]


@sessioned
def city_bounds(session: Session) -> list[float] | None:
    """Return [minx, miny, maxx, maxy] of every grid (WGS-84), None for an empty city."""
    b = session.execute(
        select(func.min(Grid.minx), func.min(Grid.miny), func.max(Grid.maxx), func.max(Grid.maxy))
    ).one()
    if b[0] is None:
        return None
    return [float(v) for v in b]


@sessioned
def categories(session: Session) -> list[dict]:
    """Return the top-level category groups: code, name_zh, name_en (shipped dictionary order)."""
    rows = session.execute(
        select(Category.code, Category.name_zh, Category.name_en).where(
            Category.parent_code.is_(None)
        )
    ).all()
    if rows:
        seen: dict[str, dict] = {}
        for r in rows:
            seen.setdefault(r.code, {"code": r.code, "name_zh": r.name_zh, "name_en": r.name_en})
        return list(seen.values())
    return [{"code": c, "name_zh": e["name_zh"], "name_en": e["name_en"]}
            for c, e in default_categories().items() if e["parent_code"] is None]  # fmt: skip


def grid_card(db: Database, grid_id: int, lang: str = "zh", *, scope: Scope) -> dict:
    """Return the grid card: code, names, workers (masked phones), open incidents, coverage.

    Raises ``layers.services.NotFoundError`` for an unknown grid or one outside ``scope``.
    """
    from layers.services import grids as grid_service

    with db.session() as session:
        if not scope.allows_grid(session, grid_id):
            raise NotFoundError(f"no grid with id {grid_id!r}")
        card = grid_service.grid_card(session, grid_id)
        rows = session.execute(
            select(*POINT_COLUMNS)
            .where(Incident.grid_id == grid_id, Incident.status.in_(OPEN_STATUSES))
            .order_by(Incident.priority, Incident.id.desc())
            .limit(5)
        ).all()
    card["open_incidents"] = [incident_feature(r, lang)["properties"] for r in rows]
    cov = grid_coverage(db, scope)
    card["coverage"] = cov.get(int(grid_id))
    return card


@sessioned
def camera_statuses(session: Session, scope: Scope) -> dict[int, str]:
    """Return {camera id: health status} of the cameras in ``scope`` (map's status layer)."""
    q = select(Camera.id, Camera.status).where(*scope.cameras_condition())
    return {int(i): str(st) for i, st in session.execute(q)}


@sessioned
def camera_card(session: Session, camera_id: int, scope: Scope) -> dict:
    """Return the display-safe camera card (no stream URL at all).

    Raises ``layers.services.NotFoundError`` for an unknown camera or one outside ``scope``.
    """
    from layers.services import cameras as camera_service

    cam = camera_service.get_camera(session, camera_id)
    if not scope.allows_camera(cam.gb_id, cam.id):
        raise NotFoundError(f"no camera {camera_id!r}")
    grid_code = None
    if cam.grid_id is not None:
        grid_code = session.scalar(select(Grid.code).where(Grid.id == cam.grid_id))
    card = camera_service.public_dict(cam, grid_code)
    card.pop("stream_url", None)  # the operator needs none of it, even scrubbed
    if card.get("last_seen") is not None:
        card["last_seen"] = card["last_seen"].astimezone(CST).isoformat(timespec="seconds")
    return card


@sessioned
def camera_cones(
    session: Session, bbox: Sequence[float], scope: Scope, *, limit: int = 3000
) -> dict:
    """Return the view cones of the ``scope``'s cameras inside ``bbox`` (FeatureCollection)."""
    import pandas as pd

    from geo.sectors import camera_sectors
    from layers.services import bbox_filter_points

    rows = session.execute(
        select(Camera.id, Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m,
               Camera.status, Camera.cls)
        .where(bbox_filter_points(Camera, [float(v) for v in bbox]), *scope.cameras_condition())
        .limit(limit)
    ).all()  # fmt: skip
    if not rows:
        return {"type": "FeatureCollection", "features": []}
    frame = pd.DataFrame([r._asdict() for r in rows])
    cones = camera_sectors(frame, arc_step_deg=10.0)
    feats = []
    for r, g in zip(rows, cones, strict=True):
        if g is None:
            continue
        g = shapely.set_precision(g, 1e-6)
        feats.append({"type": "Feature", "id": int(r.id),
                      "geometry": shapely.geometry.mapping(g),
                      "properties": {"status": r.status, "cls": r.cls}})  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


CHILD_LEVEL = {None: "district", "city": "district", "district": "street", "street": "community"}


@sessioned
def area_labels(session: Session, area_id: int | None, scope: Scope) -> dict:
    """Return the areas one level below ``area_id`` as labelled points (for drill-down).

    The whole city (None) lists its districts, a district its streets, a street its
    communities; a community has no children (empty collection). Points sit at each area's
    representative point (inside the polygon), WGS-84.
    """
    level = None
    if area_id is not None:
        level = session.scalar(select(AdminArea.level).where(AdminArea.id == area_id))
    child = CHILD_LEVEL.get(level)
    if child is None:
        return {"type": "FeatureCollection", "features": []}
    q = select(AdminArea.id, AdminArea.name, AdminArea.code, AdminArea.level,
               AdminArea.geom_wkb).where(AdminArea.level == child, *scope.areas(session))  # fmt: skip
    if area_id is not None:
        q = q.where(AdminArea.parent_id == area_id)
    rows = session.execute(q.order_by(AdminArea.code)).all()
    pts = shapely.point_on_surface(shapely.from_wkb([r.geom_wkb for r in rows])) if rows else []
    feats = [{"type": "Feature", "id": int(r.id),
              "geometry": {"type": "Point", "coordinates": [round(p.x, 6), round(p.y, 6)]},
              "properties": {"area": int(r.id), "name": r.name, "level": r.level}}
             for r, p in zip(rows, pts, strict=True)]  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


@sessioned
def locate_click(
    session: Session,
    lon: float,
    lat: float,
    zoom: float,
    *,
    scope: Scope,
    cameras: bool = True,
    tolerance_px: float = 9.0,
) -> dict:
    """Return what a map click at (lon, lat) WGS-84 hit: ``{"camera": id|None, "grid": id|None}``.

    A camera is hit when one lies within ``tolerance_px`` screen pixels at ``zoom`` (Web
    Mercator scale); the grid is the one containing the point. Only cameras and grids in
    ``scope`` are hit.
    """
    from layers.services import bbox_filter_points
    from layers.services.spatial import grid_at_point

    out: dict = {"camera": None, "grid": None}
    if cameras:
        r_m = tolerance_px * mercator_metres_per_pixel(lat, zoom)
        m_lon, m_lat = metres_per_degree(lat)
        dlon, dlat = r_m / max(m_lon, 1e-6), r_m / m_lat
        window = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        rows = session.execute(
            select(Camera.id, Camera.lon, Camera.lat).where(
                bbox_filter_points(Camera, window), *scope.cameras_condition()
            )
        ).all()
        best = None
        for r in rows:
            d = math.hypot((r.lon - lon) / dlon, (r.lat - lat) / dlat)
            if d <= 1.0 and (best is None or d < best[0]):
                best = (d, int(r.id))
        if best is not None:
            out["camera"] = best[1]
    grid = grid_at_point(session, lon, lat)
    out["grid"] = grid if scope.allows_grid(session, grid) else None
    return out
