"""Declarative base and column helpers shared by every GridSight model.

Geometry is stored portably: WKB in a ``LargeBinary`` column plus four indexed bbox columns
(``minx``, ``miny``, ``maxx``, ``maxy``) so window queries use a B-tree index on SQLite; on
PostGIS the same models can add a native geometry column (a later migration). Coordinates are
always WGS-84 (EPSG:4326).
"""

from __future__ import annotations

import datetime as dt

import shapely
from sqlalchemy import DateTime, Float, LargeBinary, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class PolygonMixin:
    """Columns for a (multi)polygon layer: WKB geometry in WGS-84 plus an indexed bbox."""

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
