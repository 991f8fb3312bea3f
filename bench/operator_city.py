"""A small, exactly known city for the operator-map tests (real rows through the models).

8 x 4 rectangular grids (each 500 m x 500 m) in Kunming; 2 districts -> 4 streets ->
8 communities (2 x 2 grids each); 15 centers (1 city, 2 county, 4 township, 8 village);
40 cameras (classes 1-3, online / offline / stale); one grid worker per grid; incidents added
through ``layers.services.incidents.create_incident`` like any other intake.
"""

from __future__ import annotations

import datetime as dt

import shapely

from geo.measure import metres_per_degree
from layers.db import Database
from layers.models import AdminArea, Camera, Center, Grid, Incident, Responder
from layers.models.base import geometry_columns
from layers.services.incidents import create_incident, ensure_categories

LON0, LAT0 = 102.70, 25.03
DLON, DLAT = (500 / m for m in metres_per_degree(LAT0))  # 500 m x 500 m cells
COLS, ROWS = 8, 4
NOW = dt.datetime.now(dt.UTC)


def cell(col: int, row: int) -> shapely.Polygon:
    """Return the polygon of grid (col, row), WGS-84."""
    return shapely.box(LON0 + col * DLON, LAT0 + row * DLAT, LON0 + (col + 1) * DLON,
                       LAT0 + (row + 1) * DLAT)  # fmt: skip


def cell_center(col: int, row: int) -> tuple[float, float]:
    """Return (lon, lat) of the middle of grid (col, row)."""
    return LON0 + (col + 0.5) * DLON, LAT0 + (row + 0.5) * DLAT


def _area(s, level, code, name, parent, geom) -> AdminArea:
    a = AdminArea(level=level, code=code, name=name, parent_id=parent, **geometry_columns(geom))
    s.add(a)
    s.flush()
    return a


def build_city(db: Database, *, incidents: int = 60) -> dict:
    """Fill ``db`` with the test city; return ids for assertions.

    Returns
    -------
    dict with ``city``, ``districts``, ``streets``, ``communities`` (area ids),
    ``grids`` ({(col, row): grid id}), ``cameras`` (ids) and ``incidents`` (ids).
    """
    out: dict = {"districts": [], "streets": [], "communities": [], "grids": {}, "cameras": []}
    with db.session() as s:
        ensure_categories(s)
        city = _area(s, "city", "530100", "测试市", None, shapely.box(
            LON0, LAT0, LON0 + COLS * DLON, LAT0 + ROWS * DLAT))  # fmt: skip
        out["city"] = city.id
        s.add(Center(level="city", name="市综治中心", area_id=city.id,
                     lon=LON0 + 4 * DLON, lat=LAT0 + 2 * DLAT, phone="0871-1234567"))  # fmt: skip
        for d in range(2):  # districts: left / right half (4 columns each)
            dist = _area(s, "district", f"53010{2 + d}", f"第{d + 1}区", city.id,
                         shapely.box(LON0 + 4 * d * DLON, LAT0, LON0 + 4 * (d + 1) * DLON,
                                     LAT0 + ROWS * DLAT))  # fmt: skip
            out["districts"].append(dist.id)
            s.add(Center(level="county", name=f"第{d + 1}区综治中心", area_id=dist.id,
                         lon=LON0 + (4 * d + 2) * DLON, lat=LAT0 + 3.5 * DLAT))  # fmt: skip
            for st in range(2):  # streets: lower / upper half of the district
                street = _area(s, "street", f"53010{2 + d}00{st + 1}", f"第{d + 1}区{st + 1}街道",
                               dist.id, shapely.box(LON0 + 4 * d * DLON, LAT0 + 2 * st * DLAT,
                                                    LON0 + 4 * (d + 1) * DLON,
                                                    LAT0 + 2 * (st + 1) * DLAT))  # fmt: skip
                out["streets"].append(street.id)
                s.add(Center(level="township", name=f"{street.name}综治中心", area_id=street.id,
                             lon=LON0 + (4 * d + 1) * DLON, lat=LAT0 + (2 * st + 1) * DLAT))  # fmt: skip
                for c in range(2):  # communities: 2 x 2 grids
                    c0, r0 = 4 * d + 2 * c, 2 * st
                    com = _area(s, "community", f"53010{2 + d}00{st + 1}00{c + 1}",
                                f"{street.name}{c + 1}社区", street.id,
                                shapely.box(LON0 + c0 * DLON, LAT0 + r0 * DLAT,
                                            LON0 + (c0 + 2) * DLON, LAT0 + (r0 + 2) * DLAT))  # fmt: skip
                    out["communities"].append(com.id)
                    s.add(Center(level="village", name=f"{com.name}综治中心", area_id=com.id,
                                 lon=LON0 + (c0 + 1) * DLON, lat=LAT0 + (r0 + 1) * DLAT))  # fmt: skip
                    serial = 1
                    for dc in range(2):
                        for dr in range(2):
                            col, row = c0 + dc, r0 + dr
                            g = Grid(code=f"{com.code}{serial:02d}", name=f"{com.name}{serial}网格",
                                     community_id=com.id, area_m2=250_000.0,
                                     **geometry_columns(cell(col, row)))  # fmt: skip
                            s.add(g)
                            s.flush()
                            serial += 1
                            out["grids"][(col, row)] = g.id
                            lon, lat = cell_center(col, row)
                            s.add(Responder(name=f"网格员{g.id}", kind="grid_worker", grid_id=g.id,
                                            phone=f"13800{g.id:06d}", lon=lon, lat=lat))  # fmt: skip
        statuses = ["online"] * 7 + ["offline", "stale", "online"]
        for i in range(40):
            col, row = i % COLS, (i // COLS) % ROWS
            lon, lat = cell_center(col, row)
            cam = Camera(gb_id=f"53010200001325{i:06d}",
                         name=f"摄像机{i + 1}", cls=1 + i % 3, ptz_type=1 + i % 4,
                         lon=lon + (i % 3 - 1) * DLON / 5, lat=lat + (i % 2) * DLAT / 5,
                         azimuth=(i * 47) % 360, fov=60 + (i % 3) * 30, range_m=80.0,
                         status=statuses[i % len(statuses)], owner="公安局",
                         last_seen=NOW, grid_id=out["grids"][(col, row)])  # fmt: skip
            s.add(cam)
            s.flush()
            out["cameras"].append(cam.id)
    out["incidents"] = add_incidents(db, incidents)
    return out


CATS = ["ENV", "SECURITY", "DISPUTE.NEIGHBOR", "CITY.STREET_ORDER", "SAFETY.FIRE", "SERVICE"]


def add_incidents(db: Database, n: int, *, start: int = 0) -> list[int]:
    """Return the ids of ``n`` incidents added over the last 6 days; every 3rd one closed."""
    ids = []
    with db.session() as s:
        for k in range(start, start + n):
            col, row = (k * 3) % COLS, (k * 5) % ROWS
            lon, lat = cell_center(col, row)
            created = NOW - dt.timedelta(hours=(k * 7) % 140 + 0.5)
            inc = create_incident(
                s, {"lon": lon + (k % 5 - 2) * DLON / 12, "lat": lat, "category": CATS[k % 6],
                    "description": f"测试事件{k}", "reporter_phone": "13912345678",
                    "occurred_at": created.isoformat()}, now=created)  # fmt: skip
            if k % 3 == 0:
                inc.status = "closed"
                inc.closed_at = created + dt.timedelta(hours=(k % 4) * 30 + 1)
                if inc.closed_at > NOW:
                    inc.closed_at = NOW
            ids.append(inc.id)
    return ids


def open_grid_counts(db: Database, since: dt.datetime) -> dict[int, int]:
    """Return {grid id: open incidents created since ``since``}, computed in plain Python."""
    out: dict[int, int] = {}
    with db.session() as s:
        for inc in s.query(Incident).all():
            if inc.created_at >= since and inc.status != "closed" and inc.grid_id is not None:
                out[inc.grid_id] = out.get(inc.grid_id, 0) + 1
    return out


def refresh_body(outputs: list[str], cursor, n: int, window: str = "24h") -> dict:
    """Return the JSON body of one operator-map live refresh, as the browser sends it.

    ``outputs`` are the refresh callback's outputs ("id.property"), in its order.
    """
    return {
        "output": ".." + "...".join(outputs) + "..",
        "outputs": [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in outputs],
        "inputs": [
            {"id": "operator-tick", "property": "n_intervals", "value": n},
            {"id": "operator-filter", "property": "data", "value": {"window": window}},
            {"id": "app-lang", "property": "data", "value": "zh"},
        ],
        "state": [{"id": "operator-cursor", "property": "data", "value": cursor}],
        "changedPropIds": ["operator-tick.n_intervals"],
    }
