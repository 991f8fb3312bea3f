"""The map's feature layers: administrative areas, grids, centers, cameras, responders."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from layers.models.base import Base, PointGeomMixin, PolygonMixin, UTCDateTime, gist_index

ADMIN_LEVELS = ("city", "district", "street", "community")
CENTER_LEVELS = ("city", "county", "township", "village")
CAMERA_STATUSES = ("online", "offline", "stale", "stalled", "unknown")


class AdminArea(PolygonMixin, Base):
    """City, district/county, street/township or community/village, with its official code.

    ``code`` is the GB/T 2260 6-digit code for city and district, 9 digits (county + township)
    for streets and the 12-digit statistical code for communities.
    """

    __tablename__ = "admin_areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("admin_areas.id"), index=True)
    area_m2: Mapped[float | None] = mapped_column(Float)

    parent: Mapped[AdminArea | None] = relationship(remote_side=[id])


class LayerVersion(Base):
    """A version stamp of one layer, or one aspect of it, that process caches are keyed on.

    Database triggers bump ``serial`` and draw a new random ``token`` in the same transaction
    as every insert, delete, or update of the columns the stamp follows, whoever writes: the
    ORM, a bulk import, the seed, another process, plain SQL. Rows named after a table
    (``VERSIONED_COLUMNS``, migration 0006) follow what the grid locator reads; the others
    (``FEATURE_VERSIONS``, migration 0009) follow what a published layer shows, and
    ``camera_views`` the camera positions and cones. A cache checks this small table instead
    of aggregating the layers; the token tells apart a database recreated at the same URL
    whose serials happen to match.
    """

    __tablename__ = "layer_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    serial: Mapped[int] = mapped_column(Integer, default=0)
    token: Mapped[str] = mapped_column(String(32))


#: The locator's stamps: table -> the columns whose updates bump it (migration 0006).
VERSIONED_COLUMNS = {
    "admin_areas": ("id", "parent_id", "level"),
    "grids": ("id", "community_id", "geom_wkb"),
    "centers": ("id", "area_id", "level"),
}

#: The published layers' stamps: name -> (table, the columns whose changes bump it), kept in
#: step with migration 0009. A camera's heartbeat (``last_seen``) and its stream address
_CAMERA_SHOWN = ("id", "gb_id", "name", "cls", "ptz_type", "use_type", "lon", "lat", "azimuth",
                 "fov", "range_m", "owner", "status", "grid_id")  # fmt: skip

#: bump nothing: neither is shown on the map.
FEATURE_VERSIONS = {
    "area_features": ("admin_areas", ("id", "code", "name", "level", "parent_id", "geom_wkb")),
    "grid_features": ("grids", ("id", "code", "name", "community_id", "geom_wkb")),
    "center_features": (
        "centers",
        ("id", "name", "level", "area_id", "lon", "lat", "phone", "hours", "services"),
    ),
    "camera_features": ("cameras", _CAMERA_SHOWN),
    "camera_views": ("cameras", ("id", "lon", "lat", "azimuth", "fov", "range_m")),
}


class Grid(PolygonMixin, Base):
    """A responsibility grid (网格): 14-digit unit-grid code, polygon, parent community."""

    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(15), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    community_id: Mapped[int] = mapped_column(ForeignKey("admin_areas.id"), index=True)
    area_m2: Mapped[float | None] = mapped_column(Float)

    community: Mapped[AdminArea] = relationship()


class Center(PointGeomMixin, Base):
    """A comprehensive governance center (综治中心) at one of four levels."""

    __tablename__ = "centers"
    __table_args__ = (gist_index("centers"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(128))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("admin_areas.id"), index=True)
    lon: Mapped[float] = mapped_column(Float, index=True)
    lat: Mapped[float] = mapped_column(Float, index=True)
    services: Mapped[str] = mapped_column(Text, default="")
    hours: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")

    area: Mapped[AdminArea | None] = relationship()


class Camera(PointGeomMixin, Base):
    """A public-video camera (雪亮工程 channel) identified by its 20-digit GB/T 28181 ID.

    ``stream_url`` may hold credentials: never display or log it raw; use
    ``streams.sources.redact_url``.
    """

    __tablename__ = "cameras"
    __table_args__ = (gist_index("cameras"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gb_id: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    cls: Mapped[int] = mapped_column(Integer, index=True)  # 1 一类, 2 二类, 3 三类
    ptz_type: Mapped[int] = mapped_column(Integer, default=3)
    use_type: Mapped[int] = mapped_column(Integer, default=1)
    lon: Mapped[float] = mapped_column(Float, index=True)
    lat: Mapped[float] = mapped_column(Float, index=True)
    azimuth: Mapped[float] = mapped_column(Float, default=0.0)
    fov: Mapped[float] = mapped_column(Float, default=60.0)
    range_m: Mapped[float] = mapped_column(Float, default=50.0)
    stream_url: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="unknown", index=True)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)


class Responder(PointGeomMixin, Base):
    """A grid worker (网格员) or center staff member who can be dispatched."""

    __tablename__ = "responders"
    __table_args__ = (gist_index("responders"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # grid_worker | center_staff
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    center_id: Mapped[int | None] = mapped_column(ForeignKey("centers.id"), index=True)
    phone: Mapped[str] = mapped_column(String(32), default="")
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
