"""A small fixture city for the incident tests and benchmarks (besides ``layers.seed.seed_city``).

Layout (WGS-84): 16 grids of 0.01° x 0.02° boxes tiling lon 102.70-102.78, lat 25.00-25.04;
column ``i`` (0-7) is community ``i``; communities 2s, 2s+1 form street ``s``; streets 0-1 form
district 0 and streets 2-3 district 1. One center per area (city, county, township, village),
one grid worker per grid (at the grid's centre), one staff member per center, a few cameras.
"""

from __future__ import annotations

import shapely

from layers.db import Database
from layers.models import AdminArea, Camera, Center, Grid, Responder

LON0, LAT0, DX, DY = 102.70, 25.00, 0.01, 0.02


def grid_center(i: int, j: int) -> tuple[float, float]:
    """Return the (lon, lat) of the centre of grid (column i, row j)."""
    return LON0 + (i + 0.5) * DX, LAT0 + (j + 0.5) * DY


def build_city(db: Database) -> dict:
    """Return ids of the fixture city after writing it into ``db`` (already migrated)."""
    ids: dict = {"grids": {}, "communities": {}, "streets": {}, "districts": {}, "centers": {},
                 "workers": {}, "staff": {}}  # fmt: skip
    with db.session() as s:
        city = AdminArea(level="city", code="530100", name="测试市")
        city.geometry = shapely.box(LON0, LAT0, LON0 + 8 * DX, LAT0 + 2 * DY)
        s.add(city)
        s.flush()
        ids["city"] = city.id
        cc = Center(level="city", name="市综治中心", area_id=city.id, lon=102.74, lat=25.02)
        s.add(cc)
        s.flush()
        ids["centers"]["city"] = cc.id
        for d in range(2):
            dist = AdminArea(
                level="district", code=f"53010{2 + d}", name=f"区{d}", parent_id=city.id
            )
            dist.geometry = shapely.box(
                LON0 + 4 * d * DX, LAT0, LON0 + 4 * (d + 1) * DX, LAT0 + 2 * DY
            )
            s.add(dist)
            s.flush()
            ids["districts"][d] = dist.id
            c = Center(level="county", name=f"区{d}中心", area_id=dist.id,
                       lon=LON0 + (4 * d + 2) * DX, lat=LAT0 + DY)  # fmt: skip
            s.add(c)
            s.flush()
            ids["centers"][("district", d)] = c.id
            for st in range(2 * d, 2 * d + 2):
                street = AdminArea(level="street", code=f"53010{2 + d}{st + 1:03d}",
                                   name=f"街道{st}", parent_id=dist.id)  # fmt: skip
                street.geometry = shapely.box(LON0 + 2 * st * DX, LAT0, LON0 + 2 * (st + 1) * DX,
                                              LAT0 + 2 * DY)  # fmt: skip
                s.add(street)
                s.flush()
                ids["streets"][st] = street.id
                c = Center(level="township", name=f"街道{st}中心", area_id=street.id,
                           lon=LON0 + (2 * st + 1) * DX, lat=LAT0 + DY)  # fmt: skip
                s.add(c)
                s.flush()
                ids["centers"][("street", st)] = c.id
                for i in range(2 * st, 2 * st + 2):
                    com = AdminArea(level="community", code=f"{street.code}{i + 1:03d}",
                                    name=f"社区{i}", parent_id=street.id)  # fmt: skip
                    com.geometry = shapely.box(LON0 + i * DX, LAT0, LON0 + (i + 1) * DX,
                                               LAT0 + 2 * DY)  # fmt: skip
                    s.add(com)
                    s.flush()
                    ids["communities"][i] = com.id
                    c = Center(level="village", name=f"社区{i}中心", area_id=com.id,
                               lon=LON0 + (i + 0.5) * DX, lat=LAT0 + DY)  # fmt: skip
                    s.add(c)
                    s.flush()
                    ids["centers"][("community", i)] = c.id
                    for j in range(2):
                        g = Grid(code=f"{com.code}{j + 1:02d}", name=f"网格{i}-{j}",
                                 community_id=com.id)  # fmt: skip
                        g.geometry = shapely.box(LON0 + i * DX, LAT0 + j * DY,
                                                 LON0 + (i + 1) * DX, LAT0 + (j + 1) * DY)  # fmt: skip
                        s.add(g)
                        s.flush()
                        ids["grids"][(i, j)] = g.id
                        lon, lat = grid_center(i, j)
                        w = Responder(name=f"网格员{i}{j}", kind="grid_worker", grid_id=g.id,
                                      phone="13800138000", available=True, lon=lon, lat=lat)  # fmt: skip
                        s.add(w)
                        s.flush()
                        ids["workers"][(i, j)] = w.id
        for key, cid in list(ids["centers"].items()):
            center = s.get(Center, cid)
            r = Responder(name=f"坐席{center.name}", kind="center_staff", center_id=cid,
                          phone="13900139000", available=True)  # fmt: skip
            s.add(r)
            s.flush()
            ids["staff"][key] = r.id
        lon, lat = grid_center(0, 0)
        cams = [
            # looks east at the centre of grid (0,0) from 30 m west
            Camera(gb_id="53010200001310000001", name="东向", cls=1, lon=lon - 0.0003, lat=lat,
                   azimuth=90.0, fov=60.0, range_m=80.0, status="online"),
            # same spot, but looking west (away): cannot see it
            Camera(gb_id="53010200001310000002", name="西向", cls=1, lon=lon - 0.0003, lat=lat,
                   azimuth=270.0, fov=60.0, range_m=80.0, status="online"),
        ]  # fmt: skip
        s.add_all(cams)
        s.flush()
        ids["cameras"] = [c.id for c in cams]
    return ids


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    db_path, data_dir, port: int, *, log_path=None, extra_env=None, new_session=False,
    timeout_s: float = 60.0,
):  # fmt: skip
    """Return a ``python -m dashboard`` process serving ``db_path`` on 127.0.0.1:``port``.

    ``db_path`` is a SQLite file path or a database URL (``tests.dbs.db_url``).
    ``new_session`` starts it in a process group of its own (stop gunicorn and its workers
    with ``os.killpg``).

    Seeding and the simulator are off; the call returns once /healthz answers (or raises).
    """
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    url = str(db_path) if "://" in str(db_path) else f"sqlite:///{db_path}"
    env = {**os.environ, "GRIDSIGHT_DB_URL": url,
           "GRIDSIGHT_DATA_DIR": str(data_dir), "GRIDSIGHT_PORT": str(port),
           "GRIDSIGHT_HOST": "127.0.0.1", "GRIDSIGHT_SEED_ON_START": "false",
           "GRIDSIGHT_SIMULATOR": "false", **(extra_env or {})}  # fmt: skip
    out = open(log_path or Path(data_dir) / f"server-{port}.log", "ab")  # noqa: SIM115
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=repo, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=new_session)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {out.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not answer /healthz within {timeout_s:.0f} s; see {out.name}")
