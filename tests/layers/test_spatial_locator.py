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


def _versions(db: Database) -> dict[str, tuple[int, str]]:
    """Return the locator's stamps (the rows named after the tables it reads)."""
    from layers.models import VERSIONED_COLUMNS, LayerVersion

    with db.session() as s:
        rows = s.query(LayerVersion).filter(LayerVersion.name.in_(VERSIONED_COLUMNS))
        return {r.name: (r.serial, r.token) for r in rows}


def test_every_write_to_a_layer_bumps_its_version_whoever_writes(db_backend, tmp_path):
    """Triggers (migration 0006) stamp ORM writes, plain SQL and bulk deletes alike."""
    from sqlalchemy import text

    db = Database(db_url(tmp_path / "l.sqlite", db_backend))
    db.migrate()
    v0 = _versions(db)
    assert set(v0) == {"admin_areas", "grids", "centers"}
    _city(db, x0=102.70)
    v1 = _versions(db)
    assert all(v1[k][0] > v0[k][0] and v1[k][1] != v0[k][1] for k in v0)  # ORM inserts
    loc = locator(db)
    assert locator(db) is loc  # nothing changed: the cached one
    with db.session() as s:  # not a column the locator reads: same version, same locator
        s.execute(text("UPDATE grids SET name = 'renamed'"))
        s.execute(text("UPDATE centers SET name = 'renamed', lon = lon + 0.0001"))
    assert _versions(db) == v1 and locator(db) is loc
    moved = shapely.box(102.90, 25.0, 102.91, 25.01)
    with db.session() as s:  # plain SQL moving a grid's geometry
        s.execute(
            text("UPDATE grids SET geom_wkb = :g WHERE id = (SELECT MIN(id) FROM grids)"),
            {"g": shapely.to_wkb(moved)},
        )
    v2 = _versions(db)
    assert v2["grids"] != v1["grids"] and v2["centers"] == v1["centers"]
    loc2 = locator(db)
    assert loc2 is not loc and loc2.grid_at([102.905], [25.005])[0] > 0
    with db.session() as s:
        s.execute(text("DELETE FROM centers WHERE level = 'village'"))
    assert _versions(db)["centers"] != v2["centers"]
    loc3 = locator(db)
    assert loc3 is not loc2
    gid = int(loc3.grid_at([102.905], [25.005])[0])
    with db.session() as s:
        names = {c.id: c.name for c in s.query(Center)}
    assert names[loc3.center_for(gid, "grid")] != "社区中心"  # the deleted one is gone


def test_a_database_recreated_at_the_same_path_is_not_mistaken_for_the_cached_one(tmp_path):
    """Same file, same writes in the same order (equal serials): a new token, a new locator."""
    path = tmp_path / "again.sqlite"
    db = Database(db_url(path, "sqlite"))
    db.migrate()
    _city(db, x0=102.70)
    first = _versions(db)
    assert locator(db).grid_at([102.705], [25.005])[0] > 0
    db.dispose()
    path.unlink()
    db = Database(db_url(path, "sqlite"))
    db.migrate()
    _city(db, x0=102.80)
    again = _versions(db)
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in first.items()}
    loc = locator(db)
    assert loc.grid_at([102.705], [25.005])[0] == -1
    assert loc.grid_at([102.805], [25.005])[0] > 0


def test_keep_recent_drops_the_least_recently_used():
    from layers.services import keep_recent

    cache: dict = {}
    for k in "abc":
        keep_recent(cache, k, k.upper(), limit=3)
    keep_recent(cache, "a", "A", limit=3)  # a hit re-stores: now the newest
    keep_recent(cache, "d", "D", limit=3)
    assert list(cache) == ["c", "a", "d"]


def test_a_process_keeps_locators_of_a_few_databases_only(tmp_path):
    from layers.services import CACHED_DATABASES, spatial

    first = None
    for i in range(CACHED_DATABASES + 2):
        db = Database(db_url(tmp_path / f"d{i}.sqlite", "sqlite"))
        db.migrate()
        _city(db)
        locator(db)
        first = first or str(db.engine.url)
        db.dispose()
    assert len(spatial._cache) <= CACHED_DATABASES
    assert first not in spatial._cache
