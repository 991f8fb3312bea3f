"""Migrations up and down on a real SQLite file; the ORM round-trips geometry and UTC times."""

from __future__ import annotations

import datetime as dt

import shapely
from sqlalchemy import inspect

from layers.db import Database
from layers.models import AdminArea, Base, Camera


def test_migrations_up_down_up(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    assert db.current_revision() is None
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    db.downgrade("base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.migrate()
    assert db.current_revision() is not None


def test_migrated_schema_matches_models(tmp_path):
    """Autogenerate finds nothing to do: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_geometry_and_utc_roundtrip(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    db.migrate()
    poly = shapely.box(102.6, 24.9, 102.8, 25.1)
    seen = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with db.session() as s:
        area = AdminArea(level="district", code="530102", name="五华区")
        area.geometry = poly
        s.add(area)
        s.add(
            Camera(
                gb_id="53010200001310000001", name="c", cls=1, lon=102.7, lat=25.0, last_seen=seen
            )
        )
    with db.session() as s:
        got = s.query(AdminArea).one()
        assert got.geometry.equals(poly)
        assert (got.minx, got.maxy) == (102.6, 25.1)
        cam = s.query(Camera).one()
        assert cam.last_seen == seen and cam.last_seen.tzinfo is not None
