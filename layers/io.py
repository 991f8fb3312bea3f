"""Import and export of GIS layers: ``python -m layers import|export LAYER FILE``.

Formats (chosen by the file extension, read and written by geopandas with the pyogrio engine):
GeoJSON (``.geojson``/``.json``), GeoPackage (``.gpkg``), Shapefile (``.shp`` or a zipped
shapefile ``.zip``) and CSV with lon/lat columns (``.csv``; polygons as a WKT column).

Coordinates are stored in WGS-84. On import ``--crs`` (wgs84, gcj02, bd09 or EPSG:<code>)
overrides the file's own CRS; a file without a CRS (every CSV) is taken as WGS-84. GCJ-02
and BD-09 are converted with ``geo.crs``; EPSG systems with pyproj. On export ``--crs``
converts back (for AMap/Baidu base maps).

Every row is checked; bad rows are rejected with a reason and the rest is imported:

- wrong or missing geometry, invalid polygons (repaired with ``shapely.make_valid`` and
  reported; rejected when the repair changes the area by more than 1 % or leaves no polygon);
- points outside the city (the union of the stored districts, when there are any) and
  polygons below district level that do not touch it;
- swapped lon/lat (a latitude beyond ±90°, or only the swapped point lies in China / the city);
- bad codes (``layers.codes``), codes repeated in the file or already stored;
- missing required values.

Nothing stored before is lost: the import only inserts, and it commits in batches, so a
rejection or a crash never rolls back earlier rows. Exit codes: 0 every row imported, 1 some
rows rejected (the report names each one), 2 usage errors (unknown layer, unreadable file,
unknown CRS, a required column missing from the file).

Field names: each canonical field accepts the English and Chinese variants listed in
``FIELD_ALIASES`` (matched case-insensitively, ignoring spaces, ``_`` and ``-``).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy import insert, select
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InternalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session

from geo.crs import in_china, local_metric_crs, transform_geometries
from layers.codes import (
    DATA_DIR,
    admin_code_table,
    mask_name,
    mask_phone,
    validate_admin_code,
    validate_gb28181,
    validate_grid_code,
    validate_stat_code,
    validate_street_code,
)
from layers.db import Database, DatabaseError
from layers.exportsafe import csv_writer, safe_frame
from layers.models import (
    CAMERA_STATUSES,
    CENTER_LEVELS,
    AdminArea,
    Camera,
    Center,
    Grid,
    Incident,
    geometry_columns,
)
from layers.publish import published_after
from layers.services import areas as areas_service
from layers.services import audit, make_gdf
from layers.services import cameras as cameras_service
from layers.services import centers as centers_service
from layers.services import grids as grids_service
from layers.services.scope import Scope

log = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED_CRS_TEXT",
    "FIELD_ALIASES",
    "FORMATS",
    "LAYERS",
    "ImportReport",
    "LayerSpec",
    "RowError",
    "RowIssue",
    "UsageError",
    "add_parser",
    "export_layer",
    "import_layer",
    "parse_crs",
    "read_layer_gdf",
    "register_layer",
]

ACCEPTED_CRS_TEXT = "wgs84, gcj02, bd09, EPSG:<code> (e.g. EPSG:4490, EPSG:32648)"
FORMATS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".zip": "ESRI Shapefile (zipped)",
    ".csv": "CSV",
}
BATCH_SIZE = 500
PROGRESS_MIN_ROWS = 200
# A repair that changes the enclosed area by more than this fraction is rejected.
MAX_REPAIR_AREA_CHANGE = 0.01

# canonical field -> accepted column names (compared after _norm_name)
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("code", "adcode", "ad_code", "编码", "代码", "区划代码", "行政区划代码",
             "统计用区划代码", "统计代码", "grid_code", "gridcode", "网格编码", "网格代码",
             "stat_code", "xzqdm", "bm"),
    "name": ("name", "名称", "名字", "mc", "grid_name", "网格名称", "中心名称", "点位名称",
             "设备名称"),
    "gb_id": ("gb_id", "gbid", "deviceid", "device_id", "channelid", "channel_id", "国标编码",
              "国标编号", "国标id", "设备编码", "通道编码", "设备国标编码"),
    "cls": ("class", "cls", "camera_class", "类别", "点位类别", "建设类别", "分类"),
    "ptz_type": ("ptz_type", "ptztype", "ptz", "云台类型", "摄像机类型", "设备类型"),
    "use_type": ("use_type", "usetype", "用途", "用途类型"),
    "azimuth": ("azimuth", "direction", "heading", "方位角", "朝向", "方向角"),
    "fov": ("fov", "field_of_view", "view_angle", "视场角", "视角"),
    "range_m": ("range_m", "range", "view_range", "可视距离", "视距", "监控距离"),
    "stream_url": ("stream_url", "url", "rtsp", "rtsp_url", "视频流地址", "取流地址"),
    "owner": ("owner", "建设单位", "权属单位", "所属单位", "管理单位"),
    "status": ("status", "状态", "在线状态"),
    "level": ("level", "级别", "层级", "中心级别"),
    "services": ("services", "服务事项", "服务内容", "职能"),
    "hours": ("hours", "办公时间", "开放时间", "服务时间"),
    "phone": ("phone", "tel", "telephone", "电话", "联系电话", "值班电话"),
    "category": ("category", "category_code", "事件类别", "事件类型", "类别代码", "类别"),
    "priority": ("priority", "优先级", "紧急程度"),
    "source": ("source", "来源", "事件来源"),
    "description": ("description", "desc", "描述", "内容", "事件描述", "问题描述"),
    "reporter_name": ("reporter_name", "reporter", "上报人", "报告人"),
    "reporter_phone": ("reporter_phone", "rep_phone", "上报人电话", "报告人电话"),
    "occurred_at": ("occurred_at", "occurred", "created_at", "time", "datetime", "时间", "上报时间",
                    "发生时间"),
    "external_id": ("external_id", "case_id", "事件编号", "案卷号", "工单号"),
}  # fmt: skip
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度")
LAT_NAMES = ("lat", "latitude", "y", "纬度")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape")


class UsageError(ValueError):
    """The command cannot run as given (exit code 2); the message names the option and fix."""


class RowError(ValueError):
    """One input row is rejected; the message says why and how to fix it."""


@dataclass
class RowIssue:
    """A rejected, repaired or otherwise noteworthy input row (``row`` counts from 1)."""

    row: int
    code: str
    name: str
    status: str  # "rejected" | "repaired" | "note"
    reason: str

    def line(self) -> str:
        """Return the issue as one report line."""
        ident = ", ".join(v for v in (self.code, self.name) if v)
        return f"row {self.row}{f' ({ident})' if ident else ''}: {self.status}: {self.reason}"


@dataclass
class ImportReport:
    """Return value of ``import_layer``: counts, per-row issues and general notes."""

    layer: str
    path: str
    source_crs: str
    total: int = 0
    imported: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[RowIssue]:
        """Return the rejected rows."""
        return [i for i in self.issues if i.status == "rejected"]

    @property
    def repaired(self) -> list[RowIssue]:
        """Return the rows stored after a geometry repair."""
        return [i for i in self.issues if i.status == "repaired"]

    @property
    def exit_code(self) -> int:
        """Return 0 if every row was imported, 1 if some were rejected."""
        return 1 if self.rejected else 0

    def format(self, max_rows: int | None = 200) -> str:
        """Return the human-readable report (at most ``max_rows`` row lines; None: all)."""
        lines = [
            f"{self.layer}: imported {self.imported} of {self.total} rows from {self.path} "
            f"(source CRS {self.source_crs}, stored as WGS-84); {len(self.rejected)} rejected, "
            f"{len(self.repaired)} repaired"
        ]
        lines += [f"  note: {n}" for n in self.notes]
        issues = sorted(self.issues, key=lambda i: (i.status != "rejected", i.row))
        shown = issues if max_rows is None else issues[:max_rows]
        lines += [f"  {i.line()}" for i in sorted(shown, key=lambda i: i.row)]
        if len(shown) < len(issues):
            lines.append(
                f"  ... {len(issues) - len(shown)} more row issues (write them all with --report)"
            )
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        """Write the per-row issues as CSV (row, code, name, status, reason), UTF-8 with BOM."""
        with open(path, "w", newline="", encoding="utf-8-sig") as fh:
            writer = csv_writer(fh)  # names and reasons come from the imported file
            writer.writerow(["row", "code", "name", "status", "reason"])
            for i in sorted(self.issues, key=lambda i: i.row):
                writer.writerow([i.row, i.code, i.name, i.status, i.reason])


# --------------------------------------------------------------------------------------
# CRS
# --------------------------------------------------------------------------------------
def parse_crs(value: str | None) -> str | pyproj.CRS | None:
    """Return "wgs84", "gcj02", "bd09" or a pyproj.CRS for a ``--crs`` value (None stays None).

    Raises
    ------
    UsageError
        For anything else; the message names --crs and lists the accepted values.
    """
    if value is None:
        return None
    key = str(value).strip().lower().replace("-", "").replace("_", "")
    aliases = {"wgs84": "wgs84", "epsg:4326": "wgs84", "gcj02": "gcj02", "bd09": "bd09",
               "cgcs2000": pyproj.CRS.from_epsg(4490)}  # fmt: skip
    if key in aliases:
        return aliases[key]
    if key.startswith("epsg:") and key[5:].isdigit():
        if key == "epsg:4326":
            return "wgs84"
        try:
            return pyproj.CRS.from_epsg(int(key[5:]))
        except pyproj.exceptions.CRSError as exc:
            raise UsageError(
                f"--crs {value!r}: pyproj knows no EPSG code {key[5:]}; accepted: "
                f"{ACCEPTED_CRS_TEXT}"
            ) from exc
    raise UsageError(f"--crs {value!r} is not a known CRS; accepted: {ACCEPTED_CRS_TEXT}")


def _crs_label(crs: str | pyproj.CRS) -> str:
    if isinstance(crs, pyproj.CRS):
        epsg = crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else crs.name
    return crs


def _file_crs(crs: Any) -> str | pyproj.CRS | None:
    if crs is None:
        return None
    crs = pyproj.CRS.from_user_input(crs)
    if crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "wgs84"
    return crs


def _is_geographic(crs: str | pyproj.CRS) -> bool:
    return not isinstance(crs, pyproj.CRS) or crs.is_geographic


# --------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------
def _norm_name(name: object) -> str:
    return re.sub(r"[\s_\-.]", "", str(name)).lower()


def _find_column(columns: Iterable[str], names: Iterable[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm_name(c), c)
    for n in names:
        hit = by_norm.get(_norm_name(n))
        if hit is not None:
            return hit
    return None


@dataclass
class SourceTable:
    """A file read into memory: attributes, raw geometries (source CRS), per-row read errors."""

    frame: pd.DataFrame
    geoms: np.ndarray
    crs: str | pyproj.CRS | None
    kind: str
    row_errors: dict[int, str] = field(default_factory=dict)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"FILE {str(path)!r}: unknown format {suffix or '(no extension)'!r}; use one of "
            f"{', '.join(FORMATS)}"
        )
    return suffix


def _read_csv_frame(path: Path) -> pd.DataFrame:
    last: Exception | None = None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
        except UnicodeDecodeError as exc:
            last = exc
    raise UsageError(f"FILE {str(path)!r} is neither UTF-8 nor GB18030 text ({last})")


def _parse_float(value: object) -> float | None:
    if value is None:
        return None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _shapefile_encoding(path: Path) -> str | None:
    """Return "GB18030" for a shapefile without a .cpg whose DBF is not UTF-8, else None.

    Chinese shapefiles are often written in GBK with no .cpg; GDAL would then decode them
    as Latin-1 and garble every name.
    """
    if any(path.with_suffix(s).exists() for s in (".cpg", ".CPG")):
        return None
    dbf = next(
        (p for p in (path.with_suffix(".dbf"), path.with_suffix(".DBF")) if p.exists()), None
    )
    if dbf is None:
        return None
    try:
        dbf.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        log.info("%s has no .cpg and is not UTF-8; reading it as GB18030", path)
        return "GB18030"
    return None


def read_source(path: str | Path, *, source_layer: str | None = None) -> SourceTable:
    """Return the rows of a GIS file (GeoJSON, GPKG, Shapefile, zipped Shapefile or CSV).

    Geometries stay in the file's coordinates; ``crs`` is the file's CRS (None for CSV).

    Raises
    ------
    UsageError
        If the file is missing, of an unknown format or unreadable.
    """
    path = Path(path)
    kind = _format_of(path)
    if not path.exists():
        raise UsageError(f"FILE {str(path)!r} does not exist")
    if kind == ".csv":
        try:
            frame = _read_csv_frame(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
            raise UsageError(f"FILE {str(path)!r}: cannot read the CSV ({exc})") from exc
        return _csv_table(frame, path)
    import pyogrio

    try:
        if source_layer is None and kind == ".gpkg":
            names = [n for n, _ in pyogrio.list_layers(path)]
            if len(names) > 1:
                log.warning(
                    "%s has layers %s; reading %s (choose with --source-layer)",
                    path,
                    names,
                    names[0],
                )
            source_layer = names[0] if names else None
        encoding = _shapefile_encoding(path) if kind == ".shp" else None
        with warnings.catch_warnings():
            # a geometry GEOS cannot build (NaN coordinates, a ring that does not close) is
            # read as None here and rejected with its reason below, not raised for the file
            warnings.simplefilter("ignore", RuntimeWarning)
            gdf = gpd.read_file(path, engine="pyogrio", layer=source_layer, encoding=encoding,
                                on_invalid="ignore")  # fmt: skip
        errors = _unreadable_geometries(path, source_layer, encoding, gdf.geometry.values)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise UsageError(f"FILE {str(path)!r}: cannot read it as {FORMATS[kind]} ({exc})") from exc
    except ValueError as exc:  # e.g. a malformed GeoJSON geometry
        raise UsageError(f"FILE {str(path)!r}: cannot read it as {FORMATS[kind]} ({exc})") from exc
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    return SourceTable(frame.reset_index(drop=True), geoms, _file_crs(gdf.crs), kind, errors)


def _unreadable_geometries(path: Path, layer: str | None, encoding: str | None, geoms) -> dict:
    """Return {row: reason} for the rows whose stored geometry GEOS could not build.

    A row with no geometry at all is not one of them (it is rejected later as missing).
    """
    missing = [i for i, g in enumerate(geoms) if g is None]
    if not missing:
        return {}
    from pyogrio.raw import read as raw_read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wkb = raw_read(path, layer=layer, encoding=encoding, columns=[])[2]
    reason = ("geometry: unreadable (a NaN or infinite coordinate, or a ring that does not "
              "close); fix the coordinates of this feature")  # fmt: skip
    return {i: reason for i in missing if wkb is not None and wkb[i] is not None}


def _csv_table(frame: pd.DataFrame, path: Path) -> SourceTable:
    columns = list(frame.columns)
    lon_col = _find_column(columns, LON_NAMES)
    lat_col = _find_column(columns, LAT_NAMES)
    wkt_col = _find_column(columns, WKT_NAMES)
    if wkt_col is None and (lon_col is None or lat_col is None):
        raise UsageError(
            f"FILE {str(path)!r}: no coordinate columns; a CSV needs lon/lat columns "
            f"(accepted: {', '.join(LON_NAMES)} / {', '.join(LAT_NAMES)}) or a WKT column "
            f"({', '.join(WKT_NAMES)}); found {columns}"
        )
    geoms = np.empty(len(frame), dtype=object)
    errors: dict[int, str] = {}
    for i in range(len(frame)):
        wkt = str(frame.at[i, wkt_col]).strip() if wkt_col else ""
        if wkt:
            try:
                geoms[i] = shapely.from_wkt(wkt)
            except shapely.errors.GEOSException as exc:
                errors[i] = f"{wkt_col}: WKT unreadable ({exc}); write e.g. POLYGON ((x y, ...))"
            continue
        if lon_col is None or lat_col is None:
            errors[i] = f"{wkt_col}: empty and there are no lon/lat columns"
            continue
        x = _parse_float(frame.at[i, lon_col])
        y = _parse_float(frame.at[i, lat_col])
        if x is None or y is None:
            errors[i] = (
                f"{lon_col}/{lat_col}: {frame.at[i, lon_col]!r}, {frame.at[i, lat_col]!r} "
                "are not numbers; write decimal degrees"
            )
            continue
        geoms[i] = shapely.Point(x, y)
    drop = [c for c in (lon_col, lat_col, wkt_col) if c]
    return SourceTable(frame.drop(columns=drop), geoms, None, ".csv", errors)


# --------------------------------------------------------------------------------------
# Row values
# --------------------------------------------------------------------------------------
def _text(value: object) -> str:
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
        return _text(float(value))
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
    f = _parse_float(text)
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


# --------------------------------------------------------------------------------------
# Geometry checks
# --------------------------------------------------------------------------------------
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


def _point_of(geom: shapely.Geometry) -> shapely.Point:
    if isinstance(geom, shapely.MultiPoint) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if not isinstance(geom, shapely.Point):
        raise RowError(f"geometry is a {geom.geom_type}; this layer needs a Point (lon/lat)")
    if geom.is_empty:
        raise RowError("point is empty; give lon/lat")
    return geom


def _swapped(x: float, y: float) -> bool:
    """Return True if (x, y) only make sense as (lat, lon): out of range or only swapped in China."""
    if abs(y) > 90 and abs(x) <= 90 and abs(y) <= 180:
        return True
    return bool(in_china(y, x)) and not bool(in_china(x, y))


# --------------------------------------------------------------------------------------
# Layer registry
# --------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class LayerSpec:
    """How one CLI layer is imported and exported.

    ``validate(ctx, row)`` returns ``(model kwargs, notes)`` or raises RowError; ``key`` names
    the attribute that must be unique (None: no duplicate check); ``read`` returns the layer
    as a GeoDataFrame in EPSG:4326 for export, with ``export_columns`` as attributes.
    """

    name: str
    model: type
    level: str | None
    geometry: str  # "polygon" | "point"
    required: tuple[str, ...]
    optional: tuple[str, ...]
    validate: Callable[[ImportContext, Row], tuple[dict, list[str]]]
    read: Callable[[Database], gpd.GeoDataFrame]
    key: str | None = "code"
    parent_level: str | None = None
    store: Callable[[Session, list[dict], ImportContext], None] | None = None
    finish: Callable[[Database, ImportContext, ImportReport], None] | None = None


LAYERS: dict[str, LayerSpec] = {}


def register_layer(spec: LayerSpec) -> LayerSpec:
    """Return ``spec`` after registering it under ``spec.name`` for import and export."""
    LAYERS[spec.name] = spec
    return spec


def _layer(name: str) -> LayerSpec:
    if name not in LAYERS:
        raise UsageError(f"LAYER {name!r} is unknown; use one of {', '.join(LAYERS)}")
    return LAYERS[name]


def _editions() -> dict[str, dict[str, str]]:
    versions = sorted(p.stem.split("_", 1)[1] for p in DATA_DIR.glob("gbt2260_*.json"))
    return {v: admin_code_table(v) for v in versions}


# --- administrative areas -------------------------------------------------------------
def _validate_district(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
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


def _validate_area(level: str, parent_len: int, validator: Callable[[str], str]):
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


def _store_areas(session: Session, rows: list[dict], ctx: ImportContext) -> None:
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


def _finish_districts(db: Database, ctx: ImportContext, report: ImportReport) -> None:
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


def _read_areas(level: str):
    def read(db: Database) -> gpd.GeoDataFrame:
        gdf = areas_service.read_gdf(db, scope=Scope.ALL, level=level)
        out = gdf[["code", "name", "parent_code", "area_m2", "geometry"]]
        return out.rename(columns={"parent_code": "parent"})

    return read


# --- grids ----------------------------------------------------------------------------
def _validate_grid(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
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


def _read_grids(db: Database) -> gpd.GeoDataFrame:
    gdf = grids_service.read_gdf(db, scope=Scope.ALL)
    return gdf[["code", "name", "community_code", "area_m2", "geometry"]].rename(
        columns={"community_code": "community"}
    )


# --- centers --------------------------------------------------------------------------
def _validate_center(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
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


def _read_centers(db: Database) -> gpd.GeoDataFrame:
    gdf = centers_service.read_gdf(db, scope=Scope.ALL)
    return gdf[["level", "name", "area_code", "services", "hours", "phone", "geometry"]]


# --- cameras --------------------------------------------------------------------------
def _validate_camera(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
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


def _read_cameras(db: Database) -> gpd.GeoDataFrame:
    gdf = cameras_service.read_gdf(db, scope=Scope.ALL)
    gdf = gdf[
        ["gb_id", "name", "cls", "ptz_type", "use_type", "azimuth", "fov", "range_m",
         "stream_url", "owner", "status", "last_seen", "grid_code", "geometry"]
    ].copy()  # fmt: skip
    gdf["last_seen"] = [v.isoformat() if v is not None and v is not pd.NaT else "" for v in
                        gdf["last_seen"]]  # fmt: skip
    return gdf


# --- incidents ------------------------------------------------------------------------
def _validate_incident(ctx: ImportContext, row: Row) -> tuple[dict, list[str]]:
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


def _store_incidents(session: Session, rows: list[dict], ctx: ImportContext) -> None:
    create_incident = ctx.extra["create_incident"]
    for r in rows:
        create_incident(session, r, actor="import", role="system")


def _read_incidents(db: Database) -> gpd.GeoDataFrame:
    # names of at most 10 characters survive a Shapefile (DBF) unchanged
    columns = ("case_id", "category", "priority", "source", "status", "desc", "reporter",
               "rep_phone", "occurred", "grid_code")  # fmt: skip
    with db.session() as s:
        rows = s.execute(
            select(Incident, Grid.code).outerjoin(Grid, Incident.grid_id == Grid.id)
        ).all()
    records = [
        {
            "case_id": inc.external_id or "",
            "category": inc.category_code,
            "priority": inc.priority,
            "source": inc.source,
            "status": inc.status,
            "desc": inc.description,
            # reporters are personal data: exports carry them masked, like every display
            "reporter": mask_name(inc.reporter_name),
            "rep_phone": mask_phone(inc.reporter_phone),
            "occurred": inc.created_at.isoformat() if inc.created_at else "",
            "grid_code": gcode or "",
        }
        for inc, gcode in rows
    ]
    geoms = [shapely.Point(inc.lon, inc.lat) for inc, _ in rows]
    return make_gdf(records, geoms, columns)


register_layer(LayerSpec(
    "districts", AdminArea, "district", "polygon", ("code",), ("name",),
    _validate_district, _read_areas("district"), store=_store_areas, finish=_finish_districts,
))  # fmt: skip
register_layer(LayerSpec(
    "streets", AdminArea, "street", "polygon", ("code", "name"), (),
    _validate_area("street", 6, validate_street_code), _read_areas("street"),
    parent_level="district", store=_store_areas,
))  # fmt: skip
register_layer(LayerSpec(
    "communities", AdminArea, "community", "polygon", ("code", "name"), (),
    _validate_area("community", 9, validate_stat_code), _read_areas("community"),
    parent_level="street", store=_store_areas,
))  # fmt: skip
register_layer(LayerSpec(
    "grids", Grid, None, "polygon", ("code", "name"), (), _validate_grid, _read_grids,
    parent_level="community",
))  # fmt: skip
register_layer(LayerSpec(
    "centers", Center, None, "point", ("name", "level"), ("services", "hours", "phone"),
    _validate_center, _read_centers, key="key",
))  # fmt: skip
register_layer(LayerSpec(
    "cameras", Camera, None, "point", ("gb_id", "name", "cls"),
    ("ptz_type", "use_type", "azimuth", "fov", "range_m", "stream_url", "owner", "status"),
    _validate_camera, _read_cameras, key="gb_id",
))  # fmt: skip
register_layer(LayerSpec(
    "incidents", Incident, None, "point", ("category",),
    ("priority", "source", "description", "reporter_name", "reporter_phone", "occurred_at",
     "external_id"),
    _validate_incident, _read_incidents, key="key", store=_store_incidents,
))  # fmt: skip


# --------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------
def _map_columns(frame: pd.DataFrame, spec: LayerSpec, path: Path) -> dict[str, str]:
    """Return {canonical field: file column}; raise UsageError if a required one is missing."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fieldname in spec.required + spec.optional:
        names = FIELD_ALIASES.get(fieldname, (fieldname,))
        col = _find_column([c for c in frame.columns if c not in used], names)
        if col is not None:
            mapping[fieldname] = col
            used.add(col)
    missing = [f for f in spec.required if f not in mapping]
    if missing and len(frame):  # an empty file imports nothing, whatever its columns
        f = missing[0]
        raise UsageError(
            f"FILE {str(path)!r}: {spec.name} need a {f!r} column (accepted names: "
            f"{', '.join(FIELD_ALIASES.get(f, (f,)))}); the file has {list(frame.columns)}"
        )
    return mapping


def _existing_keys(session: Session, spec: LayerSpec) -> set[str]:
    if spec.key is None:
        return set()
    if spec.model is AdminArea:
        return set(session.scalars(select(AdminArea.code)).all())
    if spec.model is Grid:
        return set(session.scalars(select(Grid.code)).all())
    if spec.model is Camera:
        return set(session.scalars(select(Camera.gb_id)).all())
    if spec.model is Center:
        return {f"{lv}:{n}" for lv, n in session.execute(select(Center.level, Center.name))}
    if spec.model is Incident:
        return {e for e in session.scalars(select(Incident.external_id)) if e}
    return set()


def _prepare_context(session: Session, spec: LayerSpec, metric: pyproj.CRS) -> ImportContext:
    ctx = ImportContext(
        session=session, layer=spec, to_metric=metric_transformer(metric), editions=_editions()
    )
    city = areas_service.city_outline(session)
    if city is not None:
        shapely.prepare(city)
        ctx.city = city
        codes = session.scalars(select(AdminArea.code).where(AdminArea.level == "district")).all()
        prefixes = {c[:4] for c in codes}
        if len(prefixes) == 1:
            ctx.extra["city_prefix"] = prefixes.pop()
    if spec.parent_level:
        rows = session.execute(
            select(AdminArea.id, AdminArea.code, AdminArea.geom_wkb).where(
                AdminArea.level == spec.parent_level
            )
        ).all()
        ctx.parents = {code: id_ for id_, code, _ in rows}
        ctx.parent_geoms = (
            np.array([r[0] for r in rows], dtype=np.int64),
            shapely.from_wkb([r[2] for r in rows]) if rows else np.array([], dtype=object),
        )
    if spec.name == "centers":
        by_level: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows = session.execute(select(AdminArea.id, AdminArea.level, AdminArea.geom_wkb)).all()
        for level in ("city", "district", "street", "community"):
            sel = [r for r in rows if r[1] == level]
            if sel:
                by_level[level] = (
                    np.array([r[0] for r in sel], dtype=np.int64),
                    shapely.from_wkb([r[2] for r in sel]),
                )
        ctx.extra["areas_by_level"] = by_level
    if spec.name == "cameras":
        grids = session.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
        if grids:
            from geo.assign import GridIndex

            ctx.extra["grid_ids"] = np.array([g[0] for g in grids], dtype=np.int64)
            ctx.extra["grid_index"] = GridIndex(shapely.from_wkb([g[1] for g in grids]))
    if spec.name == "incidents":
        try:
            from layers.services.incidents import create_incident
        except ImportError as exc:
            raise UsageError(
                "incidents import needs layers.services.incidents.create_incident, which is not "
                f"available ({exc})"
            ) from exc
        ctx.extra["create_incident"] = create_incident
    return ctx


def _to_wgs84(geoms: np.ndarray, src: str | pyproj.CRS) -> np.ndarray:
    geoms = shapely.force_2d(geoms)
    if src == "wgs84":
        return geoms
    with np.errstate(all="ignore"):
        return transform_geometries(geoms, src, "wgs84")


def _finite(geom: shapely.Geometry) -> bool:
    coords = shapely.get_coordinates(geom)
    return bool(len(coords)) and bool(np.isfinite(coords).all())


def _check_geometry(
    ctx: ImportContext,
    raw: Any,
    geom: Any,
    src: str | pyproj.CRS,
) -> tuple[Any, float | None, str | None]:
    """Return (WGS-84 geometry, area m² or None, repair note) or raise RowError."""
    spec = ctx.layer
    if raw is None or (isinstance(raw, shapely.Geometry) and raw.is_empty):
        raise RowError("geometry missing; give the outline / lon-lat")
    if spec.geometry == "point":
        raw_pt = _point_of(raw)
        if _is_geographic(src) and _swapped(raw_pt.x, raw_pt.y):
            raise RowError(
                f"lon/lat look swapped ({raw_pt.x:g}, {raw_pt.y:g}); put longitude first"
            )
    elif _is_geographic(src):
        if not isinstance(raw, shapely.Polygon | shapely.MultiPolygon):
            raise RowError(
                f"geometry is a {raw.geom_type}; this layer needs Polygon or MultiPolygon"
            )
        c = shapely.get_coordinates(raw)
        if len(c) and np.isfinite(c).all() and np.abs(c[:, 1]).max() > 90:
            if np.abs(c[:, 0]).max() <= 90:
                raise RowError("lon/lat look swapped (latitudes beyond ±90°); put longitude first")
            raise RowError("coordinates out of range for degrees; check --crs")
        minx, miny, maxx, maxy = raw.bounds
        if _swapped((minx + maxx) / 2, (miny + maxy) / 2):
            raise RowError("lon/lat look swapped (the outline lies in China only swapped)")
    if geom is None or not _finite(geom):
        raise RowError(
            f"coordinates cannot be converted from {_crs_label(src)} to WGS-84; check --crs"
        )
    if spec.geometry == "point":
        pt = _point_of(geom)
        if not (-180 <= pt.x <= 180 and -90 <= pt.y <= 90):
            raise RowError(f"({pt.x:g}, {pt.y:g}) is no WGS-84 position; check --crs")
        if ctx.city is not None and not shapely.covers(ctx.city, pt):
            swapped = _to_wgs84(np.array([shapely.Point(raw_pt.y, raw_pt.x)]), src)[0]
            if _finite(swapped) and shapely.covers(ctx.city, swapped):
                raise RowError(
                    f"lon/lat look swapped ({raw_pt.x:g}, {raw_pt.y:g}); put longitude first"
                )
            raise RowError(
                f"point ({pt.x:.6f}, {pt.y:.6f}) WGS-84 lies outside the city (the stored "
                "districts); check the coordinates and --crs"
            )
        return pt, None, None
    poly, area, note = check_polygon(geom, ctx.to_metric)
    if spec.name in ("streets", "communities", "grids"):
        if ctx.city is not None and not shapely.intersects(ctx.city, poly):
            raise RowError("outline lies outside the city (the stored districts); check --crs")
    return poly, area, note


def _point_xy(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return x and y arrays of the point geometries (NaN for any other row)."""
    xs = np.full(len(geoms), np.nan)
    ys = np.full(len(geoms), np.nan)
    for i, g in enumerate(geoms):
        if isinstance(g, shapely.Point) and not g.is_empty:
            xs[i], ys[i] = g.x, g.y
        elif isinstance(g, shapely.MultiPoint) and len(g.geoms) == 1:
            xs[i], ys[i] = g.geoms[0].x, g.geoms[0].y
    return xs, ys


def _central_xy(geoms: np.ndarray) -> tuple[list[float], list[float]]:
    """Return the lon/lat range of the plausible WGS-84 geometries (for a metric CRS centre)."""
    ok = [
        g for g in geoms
        if g is not None and _finite(g)
        and -180 <= g.bounds[0] <= g.bounds[2] <= 180 and -90 <= g.bounds[1] <= g.bounds[3] <= 90
    ]  # fmt: skip
    if not ok:
        return [0.0], [0.0]
    b = shapely.total_bounds(np.asarray(ok, dtype=object))
    return [b[0], b[2]], [b[1], b[3]]


def import_layer(
    db: Database,
    layer: str,
    path: str | Path,
    *,
    crs: str | None = None,
    source_layer: str | None = None,
    progress: bool = True,
) -> ImportReport:
    """Return the report of importing one GIS file into a layer (see the module docstring).

    Parameters
    ----------
    db : Database
        Migrated database to insert into.
    layer : str
        districts, streets, communities, grids, centers, cameras or incidents.
    path : str or Path
        GeoJSON, GeoPackage, Shapefile (or zipped), or CSV file.
    crs : str, optional
        Source CRS overriding the file's: wgs84, gcj02, bd09 or EPSG:<code>.
    source_layer : str, optional
        Layer name inside a multi-layer GeoPackage.
    progress : bool
        Show a tqdm progress bar for long imports (on a terminal).

    Raises
    ------
    UsageError
        Unknown layer, unreadable file, unknown CRS or a required column missing.
    """
    from tqdm import tqdm

    spec = _layer(layer)
    override = parse_crs(crs)
    path = Path(path)
    table = read_source(path, source_layer=source_layer)
    if override is not None:
        src = override
    elif table.crs is not None:
        src = table.crs
    else:
        src = "wgs84"
        if table.kind != ".csv":
            log.warning("%s has no CRS; taking WGS-84 (give --crs to override)", path)
    mapping = _map_columns(table.frame, spec, path)
    report = ImportReport(layer=spec.name, path=str(path), source_crs=_crs_label(src))
    report.total = len(table.frame)
    if table.crs is not None and override is not None and table.crs != override:
        report.notes.append(
            f"--crs {_crs_label(override)} overrides the file's CRS {_crs_label(table.crs)}"
        )
    wgs = _to_wgs84(table.geoms, src) if len(table.geoms) else table.geoms
    metric = local_metric_crs(*_central_xy(wgs))

    accepted: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    bar = tqdm(
        total=report.total * 2,
        desc=f"import {spec.name}",
        unit="row",
        disable=(not progress) or report.total < PROGRESS_MIN_ROWS or None,
        file=sys.stderr,
    )
    with db.session() as session:
        ctx = _prepare_context(session, spec, metric)
        ctx.row_xy = _point_xy(wgs)
        existing = _existing_keys(session, spec)
        canon_names = list(mapping)
        cells = table.frame[[mapping[c] for c in canon_names]].itertuples(index=False, name=None)
        for i, cell_row in enumerate(cells):
            bar.update(1)
            values = {c: _text(v) for c, v in zip(canon_names, cell_row, strict=True)}
            row = Row(i + 1, values)
            ident_code = values.get("code") or values.get("gb_id") or values.get("external_id", "")
            ident_name = values.get("name", "")
            try:
                if i in table.row_errors:
                    raise RowError(table.row_errors[i])
                geom, area, repair = _check_geometry(ctx, table.geoms[i], wgs[i], src)
                row.geometry = geom
                kwargs, notes = spec.validate(ctx, row)
                key = kwargs.get(spec.key) if spec.key else None
                if key:
                    if key in seen:
                        raise RowError(f"duplicate {spec.key} {key} (also on row {seen[key]})")
                    if key in existing:
                        raise RowError(
                            f"{spec.key} {key} is already stored; nothing was changed for it"
                        )
                    seen[key] = row.number
            except (ValueError, shapely.errors.GEOSException) as exc:  # RowError, CodeError
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "rejected",
                                              str(exc)))  # fmt: skip
                continue
            if repair:
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "repaired",
                                              repair))  # fmt: skip
            for note in notes:
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "note", note))
            if spec.geometry == "polygon":
                kwargs.update(geometry_columns(geom))
                kwargs["area_m2"] = area
            if spec.name in ("centers", "incidents"):
                kwargs.pop("key", None)
            accepted.append((row.number, kwargs))
    _store(db, spec, ctx, accepted, report, bar)
    bar.close()
    if spec.finish is not None:
        spec.finish(db, ctx, report)
    log.info("imported %s of %s %s rows from %s", report.imported, report.total, spec.name, path)
    return report


def _store(
    db: Database,
    spec: LayerSpec,
    ctx: ImportContext,
    accepted: list[tuple[int, dict]],
    report: ImportReport,
    bar: Any,
) -> None:
    """Insert accepted rows in committed batches; a failing batch is retried row by row."""
    # what a database says when it refuses a row's data: constraints (IntegrityError), bad or
    # over-long values (DataError, PostgreSQL checks VARCHAR lengths), a trigger's RAISE
    # (IntegrityError on SQLite, InternalError/ProgrammingError on PostgreSQL). A lost
    # connection (OperationalError) is not the row's fault and ends the import instead.
    refusals = (IntegrityError, DataError, InternalError, ProgrammingError)
    store = spec.store or (lambda s, rows, _ctx: s.execute(insert(spec.model), rows))
    for start in range(0, len(accepted), BATCH_SIZE):
        batch = accepted[start : start + BATCH_SIZE]
        try:
            with db.session() as session:
                ctx.session = session
                store(session, [kw for _, kw in batch], ctx)
            report.imported += len(batch)
        except (*refusals, ValueError) as exc:
            log.info("batch of %s rows failed (%s); retrying row by row", len(batch), exc)
            ctx.extra.pop("cities", None)
            for number, kwargs in batch:
                try:
                    with db.session() as session:
                        ctx.session = session
                        store(session, [kwargs], ctx)
                    report.imported += 1
                except (*refusals, ValueError) as row_exc:
                    ctx.extra.pop("cities", None)
                    ident = kwargs.get("code") or kwargs.get("gb_id") or kwargs.get("external_id")
                    if isinstance(row_exc, refusals):
                        reason = f"database refused it: {str(row_exc.orig).splitlines()[0]}"
                    else:
                        reason = str(row_exc)
                    report.issues.append(
                        RowIssue(number, str(ident or ""), str(kwargs.get("name", "")),
                                 "rejected", reason)
                    )  # fmt: skip
        bar.update(len(batch))


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------
def read_layer_gdf(db: Database, layer: str) -> gpd.GeoDataFrame:
    """Return a layer as the GeoDataFrame (EPSG:4326) that ``export`` writes."""
    return _layer(layer).read(db)


def export_layer(
    db: Database,
    layer: str,
    path: str | Path,
    *,
    crs: str | None = None,
    actor: str | None = None,
    role: str = "cli",
) -> int:
    """Return the number of features written after exporting a layer to a GIS file.

    Every export is written to the audit log (``layer.export``: who, layer, file, count)
    before the file appears (``layers.publish``): no record, no file. ``actor`` defaults to
    ``cli:<os user>``. Text cells of CSV files cannot run as formulas
    (``layers.exportsafe``).

    The format follows the extension (see FORMATS). ``crs`` (default WGS-84) converts the
    coordinates for the receiver: gcj02/bd09 files carry no CRS tag (they have no EPSG code).
    CSV: points as lon/lat columns; polygons as a WKT column plus lon/lat of a point inside.

    Raises
    ------
    UsageError
        Unknown layer, unknown format or CRS, or the file cannot be written.
    AuditError
        The export cannot be audited (e.g. a sealed log and no key); no file is written.
    """
    spec = _layer(layer)
    path = Path(path)
    kind = _format_of(path)
    dst = parse_crs(crs) or "wgs84"
    gdf = spec.read(db)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if dst != "wgs84" and len(geoms):
        geoms = transform_geometries(geoms, "wgs84", dst)
    out_crs = dst if isinstance(dst, pyproj.CRS) else ("EPSG:4326" if dst == "wgs84" else None)
    attrs = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).reset_index(drop=True)
    out = gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(geoms, crs=out_crs), crs=out_crs)
    try:
        # written to a staging file, audited, and only then renamed into place: an export
        # whose audit record did not commit leaves no file
        with published_after(path, keep_existing=kind == ".gpkg") as staged:
            if kind == ".csv":
                _write_csv(out, staged, spec)
            elif kind == ".zip":
                with tempfile.TemporaryDirectory() as tmp:
                    shp = Path(tmp) / f"{spec.name}.shp"
                    _write_vector(out, shp, ".shp", spec)
                    with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
                        for member in sorted(Path(tmp).iterdir()):
                            zf.write(member, member.name)
            else:
                _write_vector(out, staged, kind, spec)
            with db.session() as s:
                audit.record(s, actor=actor or _cli_actor(), role=role, action="layer.export",
                             target=spec.name, detail={"file": str(path), "features": len(out),
                                                       "crs": _crs_label(dst)})  # fmt: skip
    except OSError as exc:
        raise UsageError(f"FILE {str(path)!r}: cannot write it ({exc})") from exc
    log.info("exported %s %s features to %s (%s)", len(out), spec.name, path, _crs_label(dst))
    return len(out)


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


def _write_vector(gdf: gpd.GeoDataFrame, path: Path, kind: str, spec: LayerSpec) -> None:
    import pyogrio

    driver = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG",
              ".shp": "ESRI Shapefile"}[kind]  # fmt: skip
    kwargs: dict[str, Any] = {"driver": driver, "engine": "pyogrio"}
    if kind == ".gpkg":
        kwargs["layer"] = spec.name
    if kind == ".shp":
        kwargs["encoding"] = "UTF-8"
    if spec.geometry == "polygon" and kind in (".gpkg", ".shp"):
        kwargs["promote_to_multi"] = True
    if path.exists() and kind != ".gpkg":
        path.unlink()
    try:
        with warnings.catch_warnings():
            # GCJ-02/BD-09 have no EPSG code: writing them untagged is intended
            warnings.filterwarnings("ignore", message="'crs' was not provided")
            gdf.to_file(path, **kwargs)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.FieldError) as exc:
        raise UsageError(f"FILE {str(path)!r}: cannot write {driver} ({exc})") from exc


def _write_csv(gdf: gpd.GeoDataFrame, path: Path, spec: LayerSpec) -> None:
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if spec.geometry == "point":
        frame.insert(0, "lat", shapely.get_y(geoms) if len(geoms) else [])
        frame.insert(0, "lon", shapely.get_x(geoms) if len(geoms) else [])
    else:
        inside = shapely.point_on_surface(geoms) if len(geoms) else np.array([])
        frame.insert(0, "lat", shapely.get_y(inside) if len(geoms) else [])
        frame.insert(0, "lon", shapely.get_x(inside) if len(geoms) else [])
        frame["wkt"] = shapely.to_wkt(geoms, rounding_precision=-1) if len(geoms) else []
    safe_frame(frame).to_csv(path, index=False, encoding="utf-8-sig", float_format="%.10g")


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``import`` and ``export`` subcommands."""
    layers_text = ", ".join(LAYERS)
    formats_text = ", ".join(FORMATS)
    p = sub.add_parser(
        "import",
        help="import a GIS file into a layer",
        description=f"Import a GIS file ({formats_text}) into a layer; bad rows are reported "
        "and skipped. Exit 0 all imported, 1 some rejected, 2 usage error.",
    )
    p.add_argument("layer", metavar="LAYER", help=f"one of {layers_text}")
    p.add_argument("file", metavar="FILE", help=f"input file ({formats_text})")
    p.add_argument(
        "--crs", default=None, help=f"source CRS overriding the file's: {ACCEPTED_CRS_TEXT}"
    )
    p.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    p.add_argument(
        "--report", default=None, metavar="FILE", help="also write the row report as CSV"
    )
    p.add_argument("--source-layer", default=None, help="layer inside a multi-layer GeoPackage")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_import)

    e = sub.add_parser(
        "export",
        help="export a layer to a GIS file",
        description=f"Export a layer to a GIS file ({formats_text}), WGS-84 unless --crs.",
    )
    e.add_argument("layer", metavar="LAYER", help=f"one of {layers_text}")
    e.add_argument("file", metavar="FILE", help=f"output file ({formats_text})")
    e.add_argument("--crs", default=None, help=f"output CRS (default wgs84): {ACCEPTED_CRS_TEXT}")
    e.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    e.add_argument("--key", default=None, help="audit key file (default: the app's)")
    e.set_defaults(func=run_export)


def _open_db(url: str | None, key: str | None = None) -> Database:
    from layers.__main__ import cli_audit_key
    from layers.settings import load_settings

    db = Database(url or load_settings().db.url, audit_key=cli_audit_key(key))
    db.migrate()
    return db


def run_import(args: argparse.Namespace) -> int:
    """Return the exit code of ``python -m layers import``."""
    try:
        _layer(args.layer)
        parse_crs(args.crs)
        db = _open_db(args.db)
        report = import_layer(
            db,
            args.layer,
            args.file,
            crs=args.crs,
            source_layer=args.source_layer,
            progress=not args.no_progress,
        )
    except (UsageError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: database failure during import ({exc}); rows committed before it are "
              "kept", file=sys.stderr)  # fmt: skip
        return 2
    print(report.format())
    if args.report:
        report.write_csv(args.report)
        print(f"report written to {args.report}")
    return report.exit_code


def run_export(args: argparse.Namespace) -> int:
    """Return the exit code of ``python -m layers export``."""
    try:
        _layer(args.layer)
        parse_crs(args.crs)
        db = _open_db(args.db, args.key)
        n = export_layer(db, args.layer, args.file, crs=args.crs)
    except (UsageError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except audit.AuditError as exc:
        print(f"error: the export was not audited, so no file was written: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"{args.layer}: exported {n} features to {args.file}")
    return 0
