"""Migrations up and down on a real SQLite file; the ORM round-trips geometry and UTC times."""

from __future__ import annotations

import datetime as dt

import shapely
from sqlalchemy import inspect

from layers.db import Database
from layers.models import AdminArea, Base, Camera
from layers.spatial_sql import geom_of
from tests.dbs import db_url


def test_migrations_up_down_up(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "m.sqlite", db_backend))
    assert db.current_revision() is None
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    db.downgrade("base")
    # PostGIS's own spatial_ref_sys stays: the extension is not ours to drop
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version", "spatial_ref_sys"}
    db.migrate()
    assert db.current_revision() is not None


def test_migrated_schema_matches_models(db_backend, tmp_path):
    """Autogenerate finds nothing to do: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(db_url(tmp_path / "m.sqlite", db_backend))
    db.migrate()
    from layers.models.base import postgis_only_filter

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": postgis_only_filter(conn.dialect.name)}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_geometry_and_utc_roundtrip(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "m.sqlite", db_backend))
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


def test_postgis_geometry_is_generated_and_indexed():
    """On PostGIS every spatial table has a GiST-indexed geom the database keeps in step."""
    from sqlalchemy import func, select, text, update

    from tests.dbs import new_pg_database

    db = Database(new_pg_database())
    db.migrate()
    poly = shapely.box(102.6, 24.9, 102.8, 25.1)
    with db.session() as s:
        area = AdminArea(level="district", code="530102", name="五华区")
        area.geometry = poly
        s.add(area)
        s.add(Camera(gb_id="53010200001310000001", name="c", cls=1, lon=102.7, lat=25.0))
    with db.session() as s:
        assert s.scalar(select(func.ST_AsText(geom_of(Camera)))) == "POINT(102.7 25)"
        assert s.scalar(select(func.ST_SRID(geom_of(AdminArea)))) == 4326
        assert s.scalar(
            select(func.ST_Equals(geom_of(AdminArea), func.ST_GeomFromText(poly.wkt, 4326)))
        )
        s.execute(update(Camera).values(lon=102.71))  # the generated column follows
        assert s.scalar(select(func.ST_X(geom_of(Camera)))) == 102.71
        gist = s.execute(
            text("SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING gist (geom)%'")
        ).scalars()
        assert set(gist) >= {"admin_areas", "grids", "centers", "cameras", "responders",
                             "incidents"}  # fmt: skip
    db.dispose()


def test_the_database_url_alone_selects_postgis():
    """``postgresql://`` (no driver named) works: the engine uses psycopg 3."""
    from sqlalchemy.engine import make_url

    from tests.dbs import new_pg_database

    url = make_url(new_pg_database()).set(drivername="postgresql")
    db = Database(url.render_as_string(hide_password=False))
    assert db.dialect == "postgresql" and db.engine.url.get_driver_name() == "psycopg"
    db.migrate()
    assert db.current_revision() is not None and db.ping()
    db.dispose()


def test_a_pooled_connection_the_server_dropped_is_replaced(monkeypatch):
    """PostgreSQL restarted or a firewall cut an idle connection: the next session works."""
    from sqlalchemy import text

    import layers.db
    from tests.dbs import _admin, new_pg_database

    db = Database(new_pg_database())
    with db.session() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
    name = db.engine.url.database
    with _admin().connect() as conn:  # the server ends every connection to that database
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": name},
        )
    monkeypatch.setattr(layers.db, "PING_IF_IDLE_S", 0.0)  # "idle long enough" to be pinged
    with db.session() as s:
        assert s.execute(text("SELECT 2")).scalar() == 2
    db.dispose()
