"""Database-kept layer stamps: every edit that changes what a layer shows changes its version.

The map's caches (GeoJSON ETags, OGC pages, the camera coverage per grid) are keyed on
``layer_versions`` rows that triggers bump, so a camera's status or position and a grid's
shape changed by the service, the ORM or plain SQL are all seen, on SQLite and PostGIS.
"""

from __future__ import annotations

import datetime as dt
import sys

import pytest
import shapely
from sqlalchemy import text

from bench.operator_city import build_city, cell
from layers.db import Database
from layers.models import FEATURE_VERSIONS, Camera, Grid
from layers.services import cameras, mapdata
from layers.services.geojson import MAP_LAYERS, layer_version
from layers.services.scope import Scope
from layers.services.versions import COVERAGE_STAMPS, LAYER_STAMPS, stamps
from tests.dbs import db_url


@pytest.fixture
def city(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "gs.sqlite", db_backend))
    db.migrate()
    ids = build_city(db, incidents=0)
    yield db, ids
    db.dispose()


def _coverage_stamps(db: Database) -> tuple:
    with db.session() as s:
        return stamps(s, COVERAGE_STAMPS)


def _sql(db: Database, statement: str, **params) -> None:
    with db.session() as s:
        s.execute(text(statement), params)


def test_every_map_layer_has_its_stamps_after_migration(city):
    db, _ = city
    assert set(LAYER_STAMPS) == set(MAP_LAYERS)
    with db.session() as s:
        names = {n for n, _serial, _token in stamps(s, FEATURE_VERSIONS)}
    assert names == set(FEATURE_VERSIONS)
    assert len({layer_version(db, layer) for layer in MAP_LAYERS}) == len(MAP_LAYERS)


def test_a_camera_status_change_through_the_service_changes_the_camera_layer(city):
    db, ids = city
    cam = ids["cameras"][0]
    before, cones = layer_version(db, "cameras"), _coverage_stamps(db)
    cameras.set_status(db, cam, "offline")
    after = layer_version(db, "cameras")
    assert after != before
    # a heartbeat repeats the status with a new frame time: nothing shown changed
    cameras.set_status(db, cam, "offline", dt.datetime.now(dt.UTC))
    assert layer_version(db, "cameras") == after
    assert _coverage_stamps(db) == cones  # a status is no reason to recompute coverage


def test_plain_sql_edits_of_cameras_change_the_right_stamps(city):
    db, ids = city
    cam = ids["cameras"][1]
    v0, c0 = layer_version(db, "cameras"), _coverage_stamps(db)
    _sql(db, "UPDATE cameras SET status = 'stalled' WHERE id = :id", id=cam)
    v1, c1 = layer_version(db, "cameras"), _coverage_stamps(db)
    assert v1 != v0 and c1 == c0
    _sql(db, "UPDATE cameras SET lon = lon + 0.001 WHERE id = :id", id=cam)
    v2, c2 = layer_version(db, "cameras"), _coverage_stamps(db)
    assert v2 != v1 and c2 != c1
    for column in ("azimuth", "fov", "range_m"):
        _sql(db, f"UPDATE cameras SET {column} = {column} + 5 WHERE id = :id", id=cam)
        v3, c3 = layer_version(db, "cameras"), _coverage_stamps(db)
        assert v3 != v2 and c3 != c2, column
        v2, c2 = v3, c3
    # what the map does not show bumps nothing: the frame time, the stream address, and an
    # update that writes the values already there
    _sql(db, "UPDATE cameras SET last_seen = :t, stream_url = 'rtsp://h/x'",
         t=dt.datetime.now(dt.UTC).replace(tzinfo=None))  # fmt: skip
    _sql(db, "UPDATE cameras SET status = status, lon = lon")
    assert layer_version(db, "cameras") == v2 and _coverage_stamps(db) == c2
    _sql(db, "DELETE FROM cameras WHERE id = :id", id=cam)
    assert layer_version(db, "cameras") != v2 and _coverage_stamps(db) != c2


def test_moving_a_camera_through_the_orm_changes_both_stamps(city):
    db, ids = city
    v0, c0 = layer_version(db, "cameras"), _coverage_stamps(db)
    with db.session() as s:
        s.get(Camera, ids["cameras"][2]).lat += 0.001
    assert layer_version(db, "cameras") != v0 and _coverage_stamps(db) != c0


def test_a_grid_reshaped_or_renamed_changes_the_grid_layer(city):
    db, ids = city
    gid = ids["grids"][(0, 0)]
    v0, c0 = layer_version(db, "grids"), _coverage_stamps(db)
    with db.session() as s:  # the ORM
        s.get(Grid, gid).geometry = cell(0, 0).buffer(-0.0005)
    v1, c1 = layer_version(db, "grids"), _coverage_stamps(db)
    assert v1 != v0 and c1 != c0
    _sql(db, "UPDATE grids SET geom_wkb = :g WHERE id = :id",
         g=shapely.to_wkb(cell(0, 0)), id=gid)  # fmt: skip
    v2, c2 = layer_version(db, "grids"), _coverage_stamps(db)
    assert v2 != v1 and c2 != c1
    _sql(db, "UPDATE grids SET name = '改名网格' WHERE id = :id", id=gid)
    assert layer_version(db, "grids") != v2  # shown on the map, not in the coverage
    assert _coverage_stamps(db) == c2
    cams = layer_version(db, "cameras")
    _sql(db, "UPDATE grids SET name = '又改名' WHERE id = :id", id=gid)
    assert layer_version(db, "cameras") == cams  # another layer's edit


def test_coverage_is_recomputed_after_a_camera_moves_away(city):
    db, ids = city
    gid = ids["grids"][(0, 0)]
    before = mapdata.grid_coverage(db, Scope.ALL)[gid]
    assert before > 0
    _sql(db, "UPDATE cameras SET lon = lon + 1.0")  # every camera leaves the city
    assert mapdata.grid_coverage(db, Scope.ALL)[gid] == 0


def test_coverage_is_kept_when_only_a_status_changes(city, monkeypatch):
    db, ids = city
    mapdata.grid_coverage(db, Scope.ALL)
    cameras.set_status(db, ids["cameras"][0], "offline")

    def fail(*args, **kwargs):
        raise AssertionError("coverage recomputed for a status change")

    # the module, not the function ``geo.coverage`` the package re-exports under its name
    monkeypatch.setattr(sys.modules["geo.coverage"], "coverage", fail)
    assert mapdata.grid_coverage(db, Scope.ALL)


def test_the_models_name_the_stamps_the_migrations_create():
    import importlib.util
    from pathlib import Path

    from layers.models import VERSIONED_COLUMNS

    folder = Path(__file__).resolve().parents[2] / "layers" / "migrations" / "versions"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    assert load("0006_layer_versions").VERSIONED_COLUMNS == VERSIONED_COLUMNS
    assert load("0009_feature_versions").FEATURE_VERSIONS == FEATURE_VERSIONS
