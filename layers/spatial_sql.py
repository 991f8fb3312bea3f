"""Spatial SQL that each database answers its own best way: bbox columns or PostGIS + GiST.

The services write one condition (``window_match``, ``grid_containing``) and SQLAlchemy
compiles it per dialect:

- SQLite (and any database without PostGIS): range tests on the B-tree-indexed ``minx``,
  ``miny``, ``maxx``, ``maxy`` (polygons) or ``lon``/``lat`` (points) columns; polygon
  candidates are then tested exactly in shapely by the caller.
- PostgreSQL: the generated, GiST-indexed ``geom`` column of migration 0005:
  ``ST_Intersects(geom, ST_MakeEnvelope(...))``, exact in the database, edges included (the
  index's float4 boxes pick candidates; PostGIS rechecks them in double precision).

``bench/bench_postgis.py`` measures both plans on the same PostgreSQL database; the results
are in ``bench/RESULTS.md`` (PostGIS section).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

#: SRID of every stored coordinate (WGS-84).
SRID = 4326


def geom_of(model: Any) -> Any:
    """Return the PostGIS ``geom`` column of a spatial model's table (PostgreSQL only)."""
    return model.__table__.c.geom


def bbox_columns_condition(model: Any, bbox) -> Any:
    """Return the portable window condition on the bbox (polygons) or lon/lat (points) columns.

    Polygons: rows whose bbox meets ``bbox`` (candidates: follow with an exact test).
    Points: rows inside ``bbox``, edges included.
    """
    minx, miny, maxx, maxy = bbox
    if hasattr(model, "minx"):
        return and_(model.maxx >= minx, model.minx <= maxx, model.maxy >= miny, model.miny <= maxy)
    return and_(model.lon >= minx, model.lon <= maxx, model.lat >= miny, model.lat <= maxy)


class window_match(FunctionElement):  # noqa: N801 - SQL function style, as in SQLAlchemy's docs
    """SQL condition: the row's geometry meets the WGS-84 window (minx, miny, maxx, maxy).

    Compiles to bbox-column range tests by default and to a GiST-indexed PostGIS test on
    PostgreSQL (see the module docstring).
    """

    type = NullType()  # not Boolean: SQLite would append "= 1" and lose the range indexes
    inherit_cache = True
    name = "window_match"

    def __init__(self, model: Any, bbox) -> None:
        self.model = model
        polygon = hasattr(model, "minx")
        cols = (
            (model.minx, model.miny, model.maxx, model.maxy) if polygon else (model.lon, model.lat)
        )
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        super().__init__(
            geom_of(model),
            *cols,
            literal(minx),
            literal(miny),
            literal(maxx),
            literal(maxy),
        )


@compiles(window_match)
def _window_default(element: window_match, compiler, **kw) -> str:
    args = list(element.clauses)
    x0, y0, x1, y1 = args[-4:]
    if len(args) == 9:  # geom, minx, miny, maxx, maxy, window
        _g, minx, miny, maxx, maxy = args[:5]
        cond = and_(maxx >= x0, minx <= x1, maxy >= y0, miny <= y1)
    else:  # geom, lon, lat, window
        _g, lon, lat = args[:3]
        cond = and_(lon >= x0, lon <= x1, lat >= y0, lat <= y1)
    return f"({compiler.process(cond, **kw)})"


@compiles(window_match, "postgresql")
def _window_postgis(element: window_match, compiler, **kw) -> str:
    args = list(element.clauses)
    geom = compiler.process(args[0], **kw)
    x0, y0, x1, y1 = (compiler.process(a, **kw) for a in args[-4:])
    # ST_Intersects, not a bare &&: the && box test runs on float4 boxes rounded outwards, so
    # it also returns points up to ~1 m outside the window (measured: bench_postgis.py)
    return f"ST_Intersects({geom}, ST_MakeEnvelope({x0}, {y0}, {x1}, {y1}, {SRID}))"


def point_covered_by(model: Any, lon: float, lat: float) -> Any:
    """Return the PostGIS condition "``model.geom`` covers the point (lon, lat)" (WGS-84).

    Covers (not Contains) so a point on a grid's edge is inside it, as in ``geo.GridIndex``;
    PostgreSQL only.
    """
    from geoalchemy2 import functions as gf

    point = gf.ST_SetSRID(gf.ST_MakePoint(float(lon), float(lat)), SRID)
    return gf.ST_Covers(geom_of(model), point)
