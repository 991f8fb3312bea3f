"""Reading GIS source files for import: formats, CRS options and column names.

GeoJSON, GeoPackage, Shapefile (plain or zipped) and CSV (lon/lat or WKT columns) are read
with geopandas/pyogrio into a ``SourceTable``; ``--crs`` values are parsed by ``parse_crs``.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from layers.io.report import UsageError

log = logging.getLogger(__name__)


ACCEPTED_CRS_TEXT = "wgs84, gcj02, bd09, EPSG:<code> (e.g. EPSG:4490, EPSG:32648)"


FORMATS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".zip": "ESRI Shapefile (zipped)",
    ".csv": "CSV",
}


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


def crs_label(crs: str | pyproj.CRS) -> str:
    """Return a short name of a CRS for reports ("EPSG:4490", "gcj02", ...)."""
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


def is_geographic(crs: str | pyproj.CRS) -> bool:
    """Return True for a CRS in degrees (the named offset systems are)."""
    return not isinstance(crs, pyproj.CRS) or crs.is_geographic


def _norm_name(name: object) -> str:
    return re.sub(r"[\s_\-.]", "", str(name)).lower()


def find_column(columns: Iterable[str], names: Iterable[str]) -> str | None:
    """Return the first of ``columns`` matching one of ``names`` (case, spaces, _ - . ignored)."""
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


def format_of(path: Path) -> str:
    """Return the file's format suffix (a key of ``FORMATS``); UsageError for any other."""
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


def parse_float(value: object) -> float | None:
    """Return a cell as a finite float, or None if it is empty or not a number."""
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
    kind = format_of(path)
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
    lon_col = find_column(columns, LON_NAMES)
    lat_col = find_column(columns, LAT_NAMES)
    wkt_col = find_column(columns, WKT_NAMES)
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
        x = parse_float(frame.at[i, lon_col])
        y = parse_float(frame.at[i, lat_col])
        if x is None or y is None:
            errors[i] = (
                f"{lon_col}/{lat_col}: {frame.at[i, lon_col]!r}, {frame.at[i, lat_col]!r} "
                "are not numbers; write decimal degrees"
            )
            continue
        geoms[i] = shapely.Point(x, y)
    drop = [c for c in (lon_col, lat_col, wkt_col) if c]
    return SourceTable(frame.drop(columns=drop), geoms, None, ".csv", errors)
