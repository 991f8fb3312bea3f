"""PostGIS: generated geometry columns with GiST indexes (PostgreSQL only; no-op elsewhere)

Every spatial table gets ``geom geometry(<type>, 4326) GENERATED ALWAYS AS (...) STORED``:
polygons from ``geom_wkb``, points from ``lon``/``lat``. The database keeps them equal to the
portable columns on every insert and update, so no writer has to know PostGIS exists. On
SQLite (the embedded default) this revision changes nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 07:00:00
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

POLYGON_TABLES = ("admin_areas", "grids")
POINT_TABLES = ("centers", "cameras", "responders", "incidents")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgres():
        return
    bind = op.get_bind()
    if not bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).scalar():
        available = bind.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
        ).scalar()
        if not available:
            raise RuntimeError(
                "PostGIS is not installed on this PostgreSQL server; install it (Debian: "
                "apt-get install postgresql-15-postgis-3) and migrate again"
            )
        try:
            with bind.begin_nested():
                op.execute("CREATE EXTENSION postgis")
        except sa.exc.DBAPIError as exc:
            raise RuntimeError(
                f"cannot enable PostGIS in database {bind.engine.url.database!r} ({exc.orig}); "
                "ask a superuser to run: CREATE EXTENSION postgis; then migrate again"
            ) from exc
    for table in POLYGON_TABLES + POINT_TABLES:
        polygon = table in POLYGON_TABLES
        op.add_column(
            table,
            sa.Column(
                "geom",
                Geometry("GEOMETRY" if polygon else "POINT", srid=4326, spatial_index=False),
                sa.Computed(
                    "ST_GeomFromWKB(geom_wkb, 4326)"
                    if polygon
                    else "ST_SetSRID(ST_MakePoint(lon, lat), 4326)",
                    persisted=True,
                ),
            ),
        )
        op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if not _postgres():
        return
    for table in POLYGON_TABLES + POINT_TABLES:
        op.drop_index(f"ix_{table}_geom", table_name=table)
        op.drop_column(table, "geom")
