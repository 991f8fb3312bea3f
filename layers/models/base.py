"""Declarative base and column helpers shared by every GridSight model.

Geometry is stored portably: WKB in a ``LargeBinary`` column plus four indexed bbox columns
(``minx``, ``miny``, ``maxx``, ``maxy``) so window queries use a B-tree index on SQLite. On
PostgreSQL/PostGIS every spatial table also has a native ``geom`` column (GeoAlchemy2
``Geometry``, SRID 4326, GiST-indexed) that the database *generates* from ``geom_wkb`` or
``lon``/``lat`` (migration 0005): writers never set it, so every insert path (ORM, Core bulk
inserts, imports, the seed) keeps it right, and it cannot drift from the portable columns.
The column is part of the Table but not of the mapped class (``unmapped_column``), so ORM
statements never name it; on SQLite it does not exist, and only PostGIS code paths
(``layers.spatial_sql``) use it. Coordinates are always WGS-84.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely
from geoalchemy2 import Geometry
from sqlalchemy import Computed, DateTime, Float, Index, LargeBinary, MetaData
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Unmapped,
    declared_attr,
    mapped_column,
    unmapped_column,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """A DateTime that always comes back timezone-aware in UTC (SQLite drops tzinfo)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach tzinfo=UTC")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: ``info`` marker of schema objects that exist on PostgreSQL/PostGIS only (migration 0005);
#: ``postgis_only_filter`` hides them from schema comparisons on other databases.
POSTGIS_ONLY = {"postgis_only": True}


def postgis_geom_column(geometry_type: str, expression: str) -> Any:
    """Return a database-generated PostGIS geometry column (EPSG:4326), not mapped by the ORM.

    ``expression`` is the PostgreSQL generation expression, e.g.
    ``ST_GeomFromWKB(geom_wkb, 4326)``. The column belongs to the Table (DDL, Alembic
    comparisons, Core queries through ``layers.spatial_sql.geom_of``) but not to the mapped
    class, so no ORM statement (inserts, ``select(Model)``, ``Query.count``) ever names it:
    SQLite, which has no such column, never sees it.
    """
    return unmapped_column(
        Geometry(geometry_type, srid=4326, spatial_index=False),
        Computed(expression, persisted=True),
        info=POSTGIS_ONLY,
    )


def gist_index(table: str) -> Index:
    """Return the GiST index on ``table.geom`` (PostGIS only)."""
    return Index(f"ix_{table}_geom", "geom", postgresql_using="gist", info=POSTGIS_ONLY)


def postgis_only_filter(dialect_name: str):
    """Return an Alembic ``include_object`` hook for schema comparisons on ``dialect_name``.

    It hides PostGIS-only objects on other databases and PostGIS's ``spatial_ref_sys`` table
    on PostgreSQL.
    """

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        if dialect_name == "postgresql":
            # PostGIS's own table is the extension's, not ours
            return not (type_ == "table" and reflected and name == "spatial_ref_sys")
        info = getattr(obj, "info", None) or {}
        return not info.get("postgis_only")

    return include_object


class PointGeomMixin:
    """A generated PostGIS point ``geom`` from the ``lon``/``lat`` columns (PostGIS only)."""

    geom: Unmapped[Any] = postgis_geom_column("POINT", "ST_SetSRID(ST_MakePoint(lon, lat), 4326)")


class PolygonMixin:
    """Columns for a (multi)polygon layer: WKB geometry in WGS-84 plus an indexed bbox.

    On PostGIS, ``geom`` is generated from ``geom_wkb`` (see the module docstring).
    """

    geom: Unmapped[Any] = postgis_geom_column("GEOMETRY", "ST_GeomFromWKB(geom_wkb, 4326)")

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (gist_index(cls.__tablename__),)

    geom_wkb: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    minx: Mapped[float] = mapped_column(Float, index=True)
    miny: Mapped[float] = mapped_column(Float, index=True)
    maxx: Mapped[float] = mapped_column(Float, index=True)
    maxy: Mapped[float] = mapped_column(Float, index=True)

    @property
    def geometry(self) -> shapely.Geometry:
        """Return the shapely geometry (EPSG:4326)."""
        return shapely.from_wkb(self.geom_wkb)

    @geometry.setter
    def geometry(self, geom: shapely.Geometry) -> None:
        self.geom_wkb = shapely.to_wkb(geom)
        self.minx, self.miny, self.maxx, self.maxy = (float(v) for v in geom.bounds)


def geometry_columns(geom: shapely.Geometry) -> dict:
    """Return the column values (WKB + bbox) for a geometry in WGS-84, for bulk inserts."""
    minx, miny, maxx, maxy = geom.bounds
    return {
        "geom_wkb": shapely.to_wkb(geom),
        "minx": float(minx),
        "miny": float(miny),
        "maxx": float(maxx),
        "maxy": float(maxy),
    }
