"""GridLocator: point → grid → area chain → center, and cache invalidation on change."""

from __future__ import annotations

import shapely
from sqlalchemy import delete

from layers.db import Database
from layers.models import AdminArea, Center, Grid
from layers.services.spatial import locator
from tests.dbs import db_url


def _city(db: Database, x0: float = 102.70) -> None:
    with db.session() as s:
        city = AdminArea(level="city", code="530100", name="昆明市")
        city.geometry = shapely.box(x0, 25.0, x0 + 0.02, 25.01)
        s.add(city)
        s.flush()
        district = AdminArea(level="district", code="530102", name="五华区", parent_id=city.id)
        district.geometry = city.geometry
        s.add(district)
        s.flush()
        street = AdminArea(level="street", code="530102001", name="街道", parent_id=district.id)
        street.geometry = city.geometry
        s.add(street)
        s.flush()
        comm = AdminArea(level="community", code="530102001001", name="社区", parent_id=street.id)
        comm.geometry = city.geometry
        s.add(comm)
        s.flush()
        for i in range(2):
            g = Grid(code=f"5301020010010{i + 1}", name=f"g{i}", community_id=comm.id)
            g.geometry = shapely.box(x0 + 0.01 * i, 25.0, x0 + 0.01 * (i + 1), 25.01)
            s.add(g)
        s.add(Center(level="village", name="社区中心", area_id=comm.id, lon=x0 + 0.005, lat=25.005))
        s.add(Center(level="township", name="街道中心", area_id=street.id, lon=x0 + 0.005,
                     lat=25.005))  # fmt: skip
        s.add(Center(level="city", name="市中心", area_id=city.id, lon=x0 + 0.005, lat=25.005))


def test_point_to_grid_and_centers(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "l.sqlite", db_backend))
    db.migrate()
    _city(db)
    loc = locator(db)
    ids = loc.grid_at([102.705, 102.715, 103.0, float("nan")], [25.005, 25.005, 25.0, 25.0])
    assert ids[0] != ids[1] and ids[0] > 0 and ids[1] > 0
    assert list(ids[2:]) == [-1, -1]
    chain = loc.area_chain(int(ids[0]))
    assert set(chain) == {"community", "street", "district", "city"}
    with db.session() as s:
        names = {c.id: c.name for c in s.query(Center)}
    assert names[loc.center_for(int(ids[0]), "grid")] == "社区中心"
    assert names[loc.center_for(int(ids[0]), "street")] == "街道中心"
    # no district-level center: escalation goes on up to the city's
    assert names[loc.center_for(int(ids[0]), "district")] == "市中心"
    assert names[loc.center_for(None, "grid")] == "市中心"


def test_locator_rebuilds_after_reseed_with_same_ids(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "l.sqlite", db_backend))
    db.migrate()
    _city(db, x0=102.70)
    assert locator(db).grid_at([102.705], [25.005])[0] > 0
    with db.session() as s:
        for model in (Center, Grid, AdminArea):
            s.execute(delete(model))
    _city(db, x0=102.80)  # same counts and (re-used) ids, different place
    loc = locator(db)
    assert loc.grid_at([102.705], [25.005])[0] == -1
    assert loc.grid_at([102.805], [25.005])[0] > 0
