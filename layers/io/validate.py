"""Checking import rows: values, codes and geometries, per layer.

A ``Row`` is one input feature; each layer's ``validate_*_row`` turns it into model values
or raises ``RowError`` with the reason. Polygons are checked and repaired by
``check_polygon`` (``shapely.make_valid``, refused when the area changes by more than 1 %).
Geometries are WGS-84 (EPSG:4326); areas are measured in a local metric CRS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from geo.crs import in_china, local_metric_crs
from layers.codes import validate_admin_code, validate_gb28181, validate_grid_code
from layers.db import Database
from layers.io.read import parse_float
from layers.io.report import ImportReport, RowError
from layers.models import CAMERA_STATUSES, CENTER_LEVELS, AdminArea, geometry_columns
from layers.services import centers as centers_service

if TYPE_CHECKING:
    from layers.io.registry import LayerSpec


# A repair that changes the enclosed area by more than this fraction is rejected.
MAX_REPAIR_AREA_CHANGE = 0.01


def clean_text(value: object) -> str:
    """Return a cell as clean text: '' for None/NaN, integral floats without '.0'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, np.floating):
        return clean_text(float(value))
    if value is pd.NaT:
        return ""
    return str(value).strip()


@dataclass
class Row:
    """One input row: 1-based number, canonical attribute texts and WGS-84 geometry."""

    number: int
    values: dict[str, str]
    geometry: Any = None

    def get(self, key: str, default: str = "") -> str:
        """Return the canonical field's text ('' if absent)."""
        return self.values.get(key, default)

    def require(self, key: str) -> str:
        """Return the canonical field's text; raise RowError if empty."""
        v = self.values.get(key, "")
        if not v:
            raise RowError(f"{key}: missing value; fill it in")
        return v


def _number(row: Row, key: str, default: float, lo: float, hi: float) -> float:
    text = row.get(key)
    if not text:
        return default
    f = parse_float(text)
    if f is None or not (lo <= f <= hi):
        raise RowError(f"{key}: {text!r} is not a number in {lo:g}..{hi:g}")
    return f


def _choice(row: Row, key: str, mapping: dict[str, int], default: int | None) -> int:
    text = row.get(key)
    if not text:
        if default is None:
            raise RowError(f"{key}: missing value; use one of {sorted(set(mapping))}")
        return default
    key_norm = text.strip().lower()
    if key_norm in mapping:
        return mapping[key_norm]
    raise RowError(f"{key}: {text!r} is unknown; use one of {sorted(set(mapping))}")


CLASS_VALUES = {"1": 1, "2": 2, "3": 3, "一类": 1, "二类": 2, "三类": 3, "一": 1, "二": 2,
                "三": 3, "i": 1, "ii": 2, "iii": 3, "class1": 1, "class2": 2, "class3": 3}  # fmt: skip


PTZ_VALUES = {"1": 1, "2": 2, "3": 3, "4": 4, "球机": 1, "半球": 2, "固定枪机": 3, "枪机": 3,
              "遥控枪机": 4, "dome": 1, "halfdome": 2, "bullet": 3, "fixed": 3}  # fmt: skip


USE_VALUES = {"1": 1, "2": 2, "3": 3, "治安": 1, "交通": 2, "重点": 3, "security": 1,
              "traffic": 2, "key": 3}  # fmt: skip


CENTER_LEVEL_VALUES = {
    **{lv: lv for lv in CENTER_LEVELS},
    "市": "city", "市级": "city", "县": "county", "区": "county", "县级": "county",
    "区县": "county", "district": "county", "乡": "township", "镇": "township",
    "街道": "township", "乡镇": "township", "乡镇级": "township", "street": "township",
    "村": "village", "社区": "village", "村级": "village", "村社区": "village",
    "community": "village",
}  # fmt: skip


def _enclosed_area(ring_coords: np.ndarray) -> float:
    """Return the area enclosed by a possibly self-intersecting ring (lobes counted once)."""
    if len(ring_coords) < 4:
        return 0.0
    lines = shapely.union_all(shapely.LineString(ring_coords))
    faces = shapely.get_parts(shapely.polygonize([lines]))
    return float(shapely.union_all(faces).area) if len(faces) else 0.0


def _intended_area(geom: shapely.Geometry) -> float:
    """Return the area an invalid polygon was meant to have: shells minus holes, lobe-wise."""
    total = 0.0
    for part in shapely.get_parts(geom):
        if not isinstance(part, shapely.Polygon):
            continue
        total += _enclosed_area(np.asarray(part.exterior.coords))
        total -= sum(_enclosed_area(np.asarray(r.coords)) for r in part.interiors)
    return total


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry | None:
    parts = [
        p for p in shapely.get_parts(geom)
        if isinstance(p, shapely.Polygon | shapely.MultiPolygon) and not p.is_empty
    ]  # fmt: skip
    polys = [q for p in parts for q in shapely.get_parts(p)]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def metric_transformer(metric: pyproj.CRS) -> pyproj.Transformer:
    """Return a transformer from WGS-84 (lon, lat) to the metric CRS ``metric``."""
    return pyproj.Transformer.from_crs(4326, metric, always_xy=True)


def _project(geom: shapely.Geometry, transformer: pyproj.Transformer) -> shapely.Geometry:
    def func(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, func)


def check_polygon(
    geom: shapely.Geometry, to_metric: pyproj.Transformer
) -> tuple[shapely.Geometry, float, str | None]:
    """Return (valid WGS-84 polygon, area in m², repair note or None) for an input polygon.

    Invalid polygons are repaired with ``shapely.make_valid``; the repair is accepted when
    the area changes by at most 1 % relative to the area the rings enclose (a bowtie keeps
    both lobes) and at least one polygon remains.

    Raises
    ------
    RowError
        For a non-polygon, an empty polygon or an unacceptable repair.
    """
    if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        raise RowError(f"geometry is a {geom.geom_type}; this layer needs Polygon or MultiPolygon")
    if geom.is_empty:
        raise RowError("geometry is empty; draw the outline")
    if isinstance(geom, shapely.MultiPolygon) and len(geom.geoms) == 1:
        geom = geom.geoms[0]  # GPKG/Shapefile writers promote to multi; store the plain part
    metric_geom = _project(geom, to_metric)
    if geom.is_valid:
        area = float(metric_geom.area)
        if area <= 0:
            raise RowError("polygon has zero area")
        return geom, area, None
    reason = shapely.is_valid_reason(geom)
    repaired = _polygonal(shapely.make_valid(geom))
    if repaired is None:
        raise RowError(f"invalid polygon ({reason}) and make_valid leaves no polygon; redraw it")
    intended = _intended_area(metric_geom)
    new_area = float(_project(repaired, to_metric).area)
    change = abs(new_area - intended) / intended if intended > 0 else math.inf
    if change > MAX_REPAIR_AREA_CHANGE:
        raise RowError(
            f"invalid polygon ({reason}); make_valid would change its area by "
            f"{'∞' if math.isinf(change) else f'{change:.1%}'} (> 1 %), so it is not "
            "repaired automatically; fix the rings (holes inside the shell, no crossings)"
        )
    return repaired, new_area, f"invalid polygon ({reason}) repaired with make_valid"


def point_of(geom: shapely.Geometry) -> shapely.Point:
    """Return the row's geometry as a Point (a one-point MultiPoint too); RowError otherwise."""
    if isinstance(geom, shapely.MultiPoint) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if not isinstance(geom, shapely.Point):
        raise RowError(f"geometry is a {geom.geom_type}; this layer needs a Point (lon/lat)")
    if geom.is_empty:
        raise RowError("point is empty; give lon/lat")
    return geom


def looks_swapped(x: float, y: float) -> bool:
    """Return True if (x, y) only make sense as (lat, lon): out of range or only swapped in China."""
    if abs(y) > 90 and abs(x) <= 90 and abs(y) <= 180:
        return True
    return bool(in_china(y, x)) and not bool(in_china(x, y))


@dataclass
class ImportContext:
    """What row validators may consult: the session, the city outline, parents, duplicates."""

    session: Session
    layer: LayerSpec
    to_metric: pyproj.Transformer
    city: Any = None  # prepared union of districts (WGS-84) or None
    parents: dict[str, int] = field(default_factory=dict)  # code -> id of the parent level
    parent_geoms: tuple[np.ndarray, np.ndarray] | None = None  # (ids, geometries)
    editions: dict[str, dict[str, str]] = field(default_factory=dict)
    edition_hits: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    row_xy: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def locate_rows(self, key: str, ids: np.ndarray, polygons: Any) -> np.ndarray:
        """Return, per input row, the id of the polygon covering its WGS-84 point (-1: none).

        Computed once per ``key`` for all rows (one vectorised ``geo.assign_points`` call);
        ``polygons`` is a ``geo.GridIndex`` or an array of polygons matching ``ids``.
        """
        cache = self.extra.setdefault("located", {})
        if key not in cache:
            from geo.assign import assign_points

            xs, ys = self.row_xy
            out = np.full(len(xs), -1, dtype=np.int64)
            ok = np.isfinite(xs) & np.isfinite(ys)
            if ok.any() and len(ids):
                pos = assign_points(xs[ok], ys[ok], polygons)
                out[ok] = np.where(pos >= 0, np.asarray(ids)[np.maximum(pos, 0)], -1)
            cache[key] = out
        return cache[key]

    def parent_at(self, point: shapely.Point) -> int | None:
        """Return the id of the parent-level polygon covering a WGS-84 point, or None."""
        if self.parent_geoms is None or len(self.parent_geoms[0]) == 0:
            return None
        from geo.assign import assign_points

        idx = int(assign_points([point.x], [point.y], self.parent_geoms[1])[0])
        return int(self.parent_geoms[0][idx]) if idx >= 0 else None


def validate_district_row(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
    """Return (district model values, notes) of a row, or raise RowError."""
    notes: list[str] = []
    code = validate_admin_code(row.require("code"))
    if code.endswith("00"):
        raise RowError(f"code: {code!r} ends in 00, a city/prefecture code; districts do not")
    matched = [v for v, table in ctx.editions.items() if code in table]
    if not matched:
        raise RowError(
            f"code: {code!r} is in no GB/T 2260 edition shipped in layers/data "
            f"({', '.join(ctx.editions)}); check the code or add that edition's table"
        )
    for v in matched:
        ctx.edition_hits[v] = ctx.edition_hits.get(v, 0) + 1
    newest = list(ctx.editions)[-1]
    if newest not in matched:
        notes.append(
            f"code {code} matched GB/T 2260 edition {', '.join(matched)} only "
            f"({ctx.editions[matched[-1]][code]}); edition {newest} no longer lists it"
        )
    name = row.get("name") or ctx.editions[matched[-1]][code]
    return {"level": "district", "code": code, "name": name, "city_code": code[:4] + "00"}, notes


def validate_area_row(level: str, parent_len: int, validator: Callable[[str], str]):
    """Return a row validator for streets or communities (``level``) under their parent code."""

    def validate(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
        code = validator(row.require("code"))
        name = row.require("name")
        parent_code = code[:parent_len]
        notes: list[str] = []
        parent_id = ctx.parents.get(parent_code)
        if parent_id is None:
            parent_id = ctx.parent_at(shapely.point_on_surface(row.geometry))
            if parent_id is None:
                raise RowError(
                    f"code: no {ctx.layer.parent_level} {parent_code} is stored and the outline "
                    f"lies in no stored {ctx.layer.parent_level}; import that layer first"
                )
            notes.append(
                f"parent {ctx.layer.parent_level} {parent_code} not stored; linked by location "
                f"to id {parent_id}"
            )
        return {"level": level, "code": code, "name": name, "parent_id": parent_id}, notes

    return validate


def store_areas(session: Session, rows: list[dict], ctx: ImportContext) -> None:
    """Add validated area rows, creating the city above districts where it is missing."""
    for r in rows:
        kwargs = {k: v for k, v in r.items() if k != "city_code"}
        if "city_code" in r:
            kwargs["parent_id"] = _ensure_city(session, r["city_code"], r, ctx)
        session.add(AdminArea(**kwargs))


def _ensure_city(session: Session, city_code: str, first: dict, ctx: ImportContext) -> int:
    cities: dict[str, int] = ctx.extra.setdefault("cities", {})
    if city_code in cities:
        return cities[city_code]
    city = session.scalar(select(AdminArea).where(AdminArea.code == city_code))
    if city is None:
        name = next(
            (t[city_code] for t in reversed(ctx.editions.values()) if city_code in t), city_code
        )
        geom = shapely.from_wkb(first["geom_wkb"])
        city = AdminArea(level="city", code=city_code, name=name, **geometry_columns(geom))
        session.add(city)
        session.flush()
        ctx.extra.setdefault("created_cities", []).append(f"{city_code} {name}")
    cities[city_code] = city.id
    return city.id


def finish_districts(db: Database, ctx: ImportContext, report: ImportReport) -> None:
    """Reset each touched city's outline to the union of its districts."""
    for code in ctx.extra.get("cities", {}):
        with db.session() as s:
            city = s.scalar(select(AdminArea).where(AdminArea.code == code))
            wkbs = s.scalars(
                select(AdminArea.geom_wkb).where(
                    AdminArea.parent_id == city.id, AdminArea.level == "district"
                )
            ).all()
            if not wkbs:
                continue
            union = shapely.union_all(shapely.from_wkb(list(wkbs)))
            city.geometry = union
            to_metric = metric_transformer(local_metric_crs(*_bounds_xy(union)))
            city.area_m2 = float(_project(union, to_metric).area)
    for c in ctx.extra.get("created_cities", []):
        report.notes.append(f"created the city {c} from the district code prefix")
    if ctx.edition_hits:
        hits = ", ".join(f"{v}: {n}" for v, n in ctx.edition_hits.items())
        report.notes.append(f"district codes matched GB/T 2260 editions ({hits} rows)")


def _bounds_xy(geom: shapely.Geometry) -> tuple[list[float], list[float]]:
    minx, miny, maxx, maxy = geom.bounds
    return [minx, maxx], [miny, maxy]


def validate_grid_row(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
    """Return (grid model values, notes) of a row, linked to its community; or raise RowError."""
    parts = validate_grid_code(row.require("code"))
    code = parts.county + parts.street + parts.community + parts.serial
    name = row.require("name")
    notes: list[str] = []
    community_id = ctx.parents.get(parts.community_code)
    if community_id is None:
        community_id = ctx.parent_at(shapely.point_on_surface(row.geometry))
        if community_id is None:
            raise RowError(
                f"code: no community {parts.community_code} is stored and the grid lies in no "
                "stored community; import communities first"
            )
        notes.append(
            f"community {parts.community_code} not stored; linked by location to id {community_id}"
        )
    return {"code": code, "name": name, "community_id": community_id}, notes


def validate_center_row(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
    """Return (center model values, notes) of a row, linked to the area covering it."""
    name = row.require("name")
    level_text = row.require("level")
    level = CENTER_LEVEL_VALUES.get(level_text.strip().lower())
    if level is None:
        raise RowError(f"level: {level_text!r} is unknown; use one of {', '.join(CENTER_LEVELS)}")
    notes: list[str] = []
    area_level = centers_service.AREA_LEVEL_OF_CENTER[level]
    ids, geoms = ctx.extra["areas_by_level"].get(area_level, (np.array([]), np.array([])))
    found = int(ctx.locate_rows(area_level, ids, geoms)[row.number - 1])
    area_id = found if found >= 0 else None
    if area_id is None:
        notes.append(f"no stored {area_level} covers the center; its area is left empty")
    return {
        "level": level,
        "name": name,
        "area_id": area_id,
        "lon": row.geometry.x,
        "lat": row.geometry.y,
        "services": row.get("services"),
        "hours": row.get("hours"),
        "phone": row.get("phone"),
        "key": f"{level}:{name}",
    }, notes


def validate_camera_row(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
    """Return (camera model values, notes) of a row, linked to the grid covering it."""
    city_prefix = ctx.extra.get("city_prefix")
    gb_id = row.require("gb_id")
    parsed = validate_gb28181(gb_id, region_prefix=city_prefix)
    name = row.require("name")
    status = row.get("status") or "unknown"
    status = {"on": "online", "off": "offline", "在线": "online", "离线": "offline"}.get(
        status.lower(), status.lower()
    )
    if status not in CAMERA_STATUSES:
        raise RowError(f"status: {row.get('status')!r} is unknown; use one of {CAMERA_STATUSES}")
    azimuth = _number(row, "azimuth", 0.0, 0.0, 360.0) % 360.0
    fov = _number(row, "fov", 60.0, 0.1, 360.0)
    range_m = _number(row, "range_m", 50.0, 0.1, 5000.0)
    notes: list[str] = []
    grid_id = None
    if "grid_index" in ctx.extra:
        found = int(
            ctx.locate_rows("grid", ctx.extra["grid_ids"], ctx.extra["grid_index"])[row.number - 1]
        )
        grid_id = found if found >= 0 else None
        if grid_id is None:
            notes.append("no stored grid covers the camera; its grid is left empty")
    return {
        "gb_id": parsed.centre
        + parsed.industry
        + parsed.type_code
        + parsed.network
        + parsed.serial,
        "name": name,
        "cls": _choice(row, "cls", CLASS_VALUES, None),
        "ptz_type": _choice(row, "ptz_type", PTZ_VALUES, 3),
        "use_type": _choice(row, "use_type", USE_VALUES, 1),
        "lon": row.geometry.x,
        "lat": row.geometry.y,
        "azimuth": azimuth,
        "fov": fov,
        "range_m": range_m,
        "stream_url": row.get("stream_url"),
        "owner": row.get("owner"),
        "status": status,
        "grid_id": grid_id,
    }, notes


def validate_incident_row(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
    """Return (create_incident input, notes) of a row; masked reporter data is not stored."""
    data: dict[str, Any] = {"lon": row.geometry.x, "lat": row.geometry.y}
    notes: list[str] = []
    data["category"] = row.require("category")
    for key in ("priority", "source", "description", "occurred_at", "external_id"):
        if row.get(key):
            data[key] = row.get(key)
    for key in ("reporter_name", "reporter_phone"):
        value = row.get(key)
        if value and "*" in value:
            notes.append(f"{key} is masked in the file; not stored")
        elif value:
            data[key] = value
    data["key"] = data.get("external_id") or None
    return data, notes


def store_incidents(session: Session, rows: list[dict], ctx: ImportContext) -> None:
    """Create the incidents through ``create_incident`` (validation, routing, audit)."""
    create_incident = ctx.extra["create_incident"]
    for r in rows:
        create_incident(session, r, actor="import", role="system")
