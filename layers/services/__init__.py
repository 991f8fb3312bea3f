"""Layer services: the only way the rest of GridSight reads and writes the map layers.

One module per layer (``areas``, ``grids``, ``centers``, ``cameras``, ``responders``,
``incidents``, ...). A service takes an open SQLAlchemy ``Session`` first (the caller owns the
transaction); callers holding a ``layers.db.Database`` run it with
``layers.services.transaction.run(db, service, ...)``, the one adapter. Older functions
also accept a ``Database`` directly (``use_session``). Geometries are WGS-84 (EPSG:4326) shapely objects; layers are returned as
GeoDataFrames in EPSG:4326 and can be written as GeoJSON with ``to_geojson``.

This package module holds the small helpers the layer modules share; it imports none of
them, so ``import layers.services.cameras`` stays cheap and free of import cycles.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    import geopandas as gpd

    from layers.db import Database

__all__ = [
    "WGS84",
    "Bbox",
    "NotFoundError",
    "ServiceError",
    "bbox_filter_points",
    "bbox_filter_polygons",
    "check_bbox",
    "empty_gdf",
    "exact_bbox_mask",
    "get_row",
    "make_gdf",
    "to_geojson",
    "use_session",
]

WGS84 = "EPSG:4326"
Bbox = tuple[float, float, float, float]


class ServiceError(ValueError):
    """A service was called with a value it cannot use; the message says which and the fix."""


class NotFoundError(LookupError):
    """The requested feature (camera, grid, ...) does not exist."""


@contextmanager
def use_session(db_or_session: Database | Session) -> Iterator[Session]:
    """Yield a session: the given one (caller commits) or a new one from a Database (committed).

    Parameters
    ----------
    db_or_session : layers.db.Database or sqlalchemy.orm.Session
        Where to read and write.
    """
    if isinstance(db_or_session, Session):
        yield db_or_session
        return
    with db_or_session.session() as session:
        yield session


#: Largest primary key any supported database stores (PostgreSQL INTEGER is 32-bit); a
#: bigger id cannot exist, so lookups answer "not found" instead of a database error.
MAX_ROW_ID = 2**31 - 1

#: Databases whose per-process caches (grid locator, event tail) a process keeps at once. A
#: deployment has one; a test run opens hundreds, whose caches would otherwise all stay.
CACHED_DATABASES = 8


def keep_recent(cache: dict, key: Any, value: Any, limit: int = CACHED_DATABASES) -> Any:
    """Store ``cache[key] = value`` as the newest entry and drop the oldest beyond ``limit``.

    The caller holds the cache's lock. Insertion order is use order when hits re-store.
    """
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > limit:
        cache.pop(next(iter(cache)))
    return value


def get_row(session: Session, model: Any, ident: Any, **kwargs: Any) -> Any:
    """Return ``session.get(model, ident)``, or None when ``ident`` cannot be a stored id.

    Non-integers and integers outside 1..MAX_ROW_ID are "not found" on every database (on
    PostgreSQL they would otherwise fail as out of range for the INTEGER column).
    """
    try:
        n = int(ident)
    except (TypeError, ValueError):
        return None
    if not 1 <= n <= MAX_ROW_ID:
        return None
    return session.get(model, n, **kwargs)


def check_bbox(bbox: Sequence[float] | None) -> Bbox | None:
    """Return ``bbox`` as a float 4-tuple (minx, miny, maxx, maxy) in WGS-84, or None.

    Raises
    ------
    ServiceError
        If it does not have four finite numbers with min <= max.
    """
    if bbox is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise ServiceError(
            f"bbox: {bbox!r} is not four numbers; give (minx, miny, maxx, maxy) in degrees"
        ) from exc
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise ServiceError(f"bbox: {bbox!r} has a non-finite value")
    if minx > maxx or miny > maxy:
        raise ServiceError(
            f"bbox: {bbox!r} has min > max; give (minx, miny, maxx, maxy), west-south first"
        )
    return minx, miny, maxx, maxy


def bbox_filter_polygons(model: Any, bbox: Bbox) -> ColumnElement[bool]:
    """Return a SQL condition selecting rows of a PolygonMixin model that meet ``bbox``.

    SQLite: the indexed ``minx/miny/maxx/maxy`` columns (candidates; follow with an exact
    shapely test). PostGIS: an exact GiST-indexed ``ST_Intersects`` (``layers.spatial_sql``).
    """
    from layers.spatial_sql import window_match

    return window_match(model, bbox)


def bbox_filter_points(model: Any, bbox: Bbox) -> ColumnElement[bool]:
    """Return a SQL condition selecting rows of a lon/lat point model inside ``bbox``.

    SQLite: the indexed lon/lat columns. PostGIS: the GiST-indexed ``geom``.
    """
    from layers.spatial_sql import window_match

    return window_match(model, bbox)


def make_gdf(records: list[dict], geometries: list, columns: Sequence[str]) -> gpd.GeoDataFrame:
    """Return a GeoDataFrame in EPSG:4326 from row dicts and their shapely geometries."""
    import geopandas as gpd

    frame = pd.DataFrame.from_records(records, columns=list(columns))
    return gpd.GeoDataFrame(
        frame, geometry=gpd.GeoSeries(np.asarray(geometries, dtype=object), crs=WGS84), crs=WGS84
    )


def empty_gdf(columns: Sequence[str]) -> gpd.GeoDataFrame:
    """Return an empty GeoDataFrame in EPSG:4326 with the given attribute columns."""
    return make_gdf([], [], columns)


def exact_bbox_mask(geometries: Sequence, bbox: Bbox | None) -> np.ndarray:
    """Return a boolean mask: True where the geometry intersects ``bbox`` (all True if None)."""
    if bbox is None or len(geometries) == 0:
        return np.ones(len(geometries), dtype=bool)
    return shapely.intersects(np.asarray(geometries, dtype=object), shapely.box(*bbox))


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"cannot write {type(value).__name__} to GeoJSON")


def to_geojson(gdf: gpd.GeoDataFrame) -> dict:
    """Return a GeoJSON FeatureCollection dict (WGS-84) for a layer GeoDataFrame.

    The frame is reprojected to EPSG:4326 if it carries another CRS; datetimes become ISO
    8601 strings, NaN becomes null.

    Raises
    ------
    ServiceError
        If the frame has no CRS (a CRS must travel with the data; never guess it).
    """
    if gdf.crs is None:
        raise ServiceError("to_geojson: the GeoDataFrame has no CRS; set it (EPSG:4326)")
    if not gdf.crs.equals(WGS84):
        gdf = gdf.to_crs(WGS84)
    features = []
    attrs = [c for c in gdf.columns if c != gdf.geometry.name]
    for row, geom in zip(
        gdf[attrs].itertuples(index=False, name=None), gdf.geometry.values, strict=True
    ):
        props = {}
        for key, value in zip(attrs, row, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                props[key] = None
            elif value is pd.NaT:
                props[key] = None
            else:
                props[key] = value
        features.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": None if geom is None else shapely.geometry.mapping(geom),
            }
        )
    # a dumps/loads pass turns numpy scalars and datetimes into plain JSON values
    return json.loads(
        json.dumps({"type": "FeatureCollection", "features": features}, default=_json_default)
    )
