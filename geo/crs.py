"""Coordinate conversions between WGS-84, GCJ-02, BD-09 and EPSG systems.

GridSight stores WGS-84 (EPSG:4326). Chinese web base maps use offset systems: AMap and
Tencent tiles are GCJ-02 ("Mars coordinates"), Baidu tiles are BD-09. These functions convert
at the display and import boundary only.

All functions take scalars or array-likes of longitude and latitude in degrees and return a
pair of float64 numpy arrays of the broadcast shape. NaN stays NaN.

The GCJ-02 forward formula is the public one used by eviltransform and most open
implementations (Krasovsky-ellipsoid constants, rectangular "in China" test). There is no
closed-form inverse, so ``gcj02_to_wgs84`` iterates the forward formula to a fixed point
(error well below a millimetre inside China).
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ACCEPTED_CRS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "in_china",
    "from_wgs84",
    "local_metric_crs",
    "to_wgs84",
    "transform_geometries",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

ACCEPTED_CRS = ("wgs84", "gcj02", "bd09", "EPSG:<code>")

_A = 6378245.0  # semi-major axis of the Krasovsky ellipsoid used by the GCJ-02 formula
_EE = 0.00669342162296594323  # its squared eccentricity
_X_PI = np.pi * 3000.0 / 180.0

FloatArray = NDArray[np.float64]


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    if lon_a.shape != lat_a.shape:
        # broadcast views are read-only and slow pyproj down; materialise them
        lon_b, lat_b = np.broadcast_arrays(lon_a, lat_a)
        return np.array(lon_b), np.array(lat_b)
    return lon_a, lat_a


def in_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Return True where (lon, lat) falls in the rectangle where GCJ-02 applies an offset.

    The rectangle (72.004..137.8347 E, 0.8293..55.8271 N) is the one used by the public
    reference implementations; it is coarse (it includes some neighbouring countries), but
    matching it is what keeps conversions consistent with the map providers' own SDKs.
    Inputs are degrees in WGS-84 or GCJ-02 (the offset is too small to matter for this test).
    """
    lon_a, lat_a = _as_arrays(lon, lat)
    return (lon_a >= 72.004) & (lon_a <= 137.8347) & (lat_a >= 0.8293) & (lat_a <= 55.8271)


def _gcj_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the GCJ-02 (dlon, dlat) offset in degrees at WGS-84 (lon, lat), ignoring the box."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    dlat = dlat + common
    dlat = dlat + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat = dlat + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    dlon = dlon + common
    dlon = dlon + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon = dlon + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 (lon, lat) arrays for WGS-84 (lon, lat) degrees.

    Points outside China (see ``in_china``) are returned unchanged.
    """
    lon_a, lat_a = _as_arrays(lon, lat)
    dlon, dlat = _gcj_offset(lon_a, lat_a)
    inside = in_china(lon_a, lat_a)
    return np.where(inside, lon_a + dlon, lon_a), np.where(inside, lat_a + dlat, lat_a)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, tol_deg: float = 1e-10, max_iter: int = 30
) -> tuple[FloatArray, FloatArray]:
    """Return WGS-84 (lon, lat) arrays for GCJ-02 (lon, lat) degrees.

    Solves ``wgs84_to_gcj02(w) == g`` by fixed-point iteration starting from ``w = g``; the
    offset varies slowly, so each step gains about three decimal digits and a few steps reach
    ``tol_deg`` (1e-10 degrees is about 0.01 mm). Points outside China are returned unchanged.
    """
    g_lon, g_lat = _as_arrays(lon, lat)
    w_lon, w_lat = g_lon.copy(), g_lat.copy()
    for _ in range(max_iter):
        f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
        e_lon, e_lat = f_lon - g_lon, f_lat - g_lat
        w_lon = w_lon - e_lon
        w_lat = w_lat - e_lat
        err = np.maximum(np.abs(e_lon), np.abs(e_lat))
        if not np.any(err > tol_deg):  # NaN compares False, so NaN inputs do not block exit
            break
    inside = in_china(g_lon, g_lat)
    return np.where(inside, w_lon, g_lon), np.where(inside, w_lat, g_lat)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return BD-09 (lon, lat) arrays for GCJ-02 (lon, lat) degrees (Baidu's published formula)."""
    x, y = _as_arrays(lon, lat)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(
    lon: ArrayLike, lat: ArrayLike, *, tol_deg: float = 1e-11, max_iter: int = 10
) -> tuple[FloatArray, FloatArray]:
    """Return GCJ-02 (lon, lat) arrays for BD-09 (lon, lat) degrees.

    Starts from the usual closed-form approximation and refines it by fixed-point iteration
    on ``gcj02_to_bd09`` so that the round trip is exact to ``tol_deg``.
    """
    b_lon, b_lat = _as_arrays(lon, lat)
    x, y = b_lon - 0.0065, b_lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    g_lon, g_lat = z * np.cos(theta), z * np.sin(theta)
    for _ in range(max_iter):
        f_lon, f_lat = gcj02_to_bd09(g_lon, g_lat)
        e_lon, e_lat = f_lon - b_lon, f_lat - b_lat
        g_lon = g_lon - e_lon
        g_lat = g_lat - e_lat
        if not np.any(np.maximum(np.abs(e_lon), np.abs(e_lat)) > tol_deg):
            break
    return g_lon, g_lat


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return BD-09 (lon, lat) arrays for WGS-84 (lon, lat) degrees (via GCJ-02).

    Outside China the GCJ-02 step is the identity but Baidu's BD-09 step still applies, as
    in Baidu's own SDK.
    """
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return WGS-84 (lon, lat) arrays for BD-09 (lon, lat) degrees (via GCJ-02)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


_OFFSET_CRS = {"wgs84": "wgs84", "gcj02": "gcj02", "bd09": "bd09"}
_ALIASES = {
    "wgs84": "wgs84",
    "wgs-84": "wgs84",
    "epsg:4326": "wgs84",
    "gcj02": "gcj02",
    "gcj-02": "gcj02",
    "bd09": "bd09",
    "bd-09": "bd09",
}


def _resolve_crs(crs: str | pyproj.CRS) -> str | pyproj.CRS:
    """Return "wgs84", "gcj02", "bd09" or a pyproj.CRS for a CRS name; raise ValueError."""
    if isinstance(crs, pyproj.CRS):
        return "wgs84" if crs.equals(_WGS84) else crs
    if not isinstance(crs, str):
        raise ValueError(
            f"Unknown crs {crs!r}: expected one of {', '.join(ACCEPTED_CRS)} or a pyproj.CRS"
        )
    key = crs.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if key.startswith("epsg:") and key[5:].isdigit():
        try:
            return pyproj.CRS.from_epsg(int(key[5:]))
        except pyproj.exceptions.CRSError as exc:
            raise ValueError(f"Unknown crs {crs!r}: pyproj does not know this EPSG code") from exc
    raise ValueError(f"Unknown crs {crs!r}: expected one of {', '.join(ACCEPTED_CRS)}")


def _is(resolved: str | pyproj.CRS, name: str) -> bool:
    # Never compare a pyproj.CRS with a str: pyproj parses the str (~0.1 s) to compare.
    return isinstance(resolved, str) and resolved == name


@lru_cache(maxsize=64)
def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


_WGS84 = pyproj.CRS.from_epsg(4326)


def to_wgs84(
    lon: ArrayLike, lat: ArrayLike, crs: str | pyproj.CRS
) -> tuple[FloatArray, FloatArray]:
    """Return WGS-84 (lon, lat) arrays for coordinates given in ``crs``.

    Parameters
    ----------
    lon, lat : array-like
        x and y in ``crs`` (degrees for wgs84/gcj02/bd09, the CRS's own units for EPSG codes;
        x is always easting/longitude whatever the EPSG axis order).
    crs : str or pyproj.CRS
        "wgs84", "gcj02", "bd09" or "EPSG:<code>" (case-insensitive).

    Raises
    ------
    ValueError
        If ``crs`` is not one of the accepted values.
    """
    src = _resolve_crs(crs)
    if _is(src, "wgs84"):
        return _as_arrays(lon, lat)
    if _is(src, "gcj02"):
        return gcj02_to_wgs84(lon, lat)
    if _is(src, "bd09"):
        return bd09_to_wgs84(lon, lat)
    x, y = _as_arrays(lon, lat)
    out_x, out_y = _transformer(src, _WGS84).transform(x, y)
    return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)


def from_wgs84(
    lon: ArrayLike, lat: ArrayLike, crs: str | pyproj.CRS
) -> tuple[FloatArray, FloatArray]:
    """Return (x, y) arrays in ``crs`` for WGS-84 (lon, lat) degrees.

    ``crs`` accepts the same values as ``to_wgs84``; raises ValueError otherwise.
    """
    dst = _resolve_crs(crs)
    if _is(dst, "wgs84"):
        return _as_arrays(lon, lat)
    if _is(dst, "gcj02"):
        return wgs84_to_gcj02(lon, lat)
    if _is(dst, "bd09"):
        return wgs84_to_bd09(lon, lat)
    x, y = _as_arrays(lon, lat)
    out_x, out_y = _transformer(_WGS84, dst).transform(x, y)
    return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)


def local_metric_crs(lon: ArrayLike, lat: ArrayLike) -> pyproj.CRS:
    """Return a transverse-Mercator pyproj CRS in metres centred on the given WGS-84 points.

    The centre is the middle of the bounding box of the finite inputs (one point or many).
    Within 50 km of the centre the scale error is below 3e-5 (distances) and 6e-5 (areas),
    which is what distance and area computations in ``geo`` need. Transverse Mercator rather
    than azimuthal equidistant because pyproj projects to it about six times faster.

    Raises
    ------
    ValueError
        If no finite coordinate is given.
    """
    lon_a, lat_a = _as_arrays(lon, lat)
    ok = np.isfinite(lon_a) & np.isfinite(lat_a)
    if not ok.any():
        raise ValueError("local_metric_crs needs at least one finite (lon, lat) point")
    lon0 = 0.5 * (lon_a[ok].min() + lon_a[ok].max())
    lat0 = 0.5 * (lat_a[ok].min() + lat_a[ok].max())
    return _tmerc(round(float(lon0), 9), round(float(lat0), 9))


@lru_cache(maxsize=256)
def _tmerc(lon0: float, lat0: float) -> pyproj.CRS:
    return pyproj.CRS.from_proj4(
        f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    )


def _convert_xy(xy: FloatArray, src: str | pyproj.CRS, dst: str | pyproj.CRS) -> FloatArray:
    if isinstance(src, pyproj.CRS) and isinstance(dst, pyproj.CRS):
        x, y = _transformer(src, dst).transform(xy[:, 0], xy[:, 1])
    else:
        lon, lat = to_wgs84(xy[:, 0], xy[:, 1], src)
        x, y = from_wgs84(lon, lat, dst)
    return np.column_stack([x, y])


def transform_geometries(geoms, src_crs: str | pyproj.CRS, dst_crs: str | pyproj.CRS):
    """Return the geometries with every coordinate converted from ``src_crs`` to ``dst_crs``.

    Parameters
    ----------
    geoms : shapely geometry, array-like of geometries, or GeoSeries
        Input geometries in ``src_crs``. None and empty geometries pass through.
    src_crs, dst_crs : str or pyproj.CRS
        "wgs84", "gcj02", "bd09", "EPSG:<code>" or a pyproj.CRS (for example from
        ``local_metric_crs``).

    Returns
    -------
    Same kind as ``geoms`` (a single geometry, a numpy object array, or a GeoSeries with the
    same index; its ``crs`` is set to ``dst_crs`` when that is an EPSG/pyproj CRS and cleared
    for the offset systems, which have no EPSG code).

    Raises
    ------
    ValueError
        For an unknown CRS, or a GeoSeries whose own ``crs`` disagrees with ``src_crs``.
    """
    src = _resolve_crs(src_crs)
    dst = _resolve_crs(dst_crs)

    def func(xy: FloatArray) -> FloatArray:
        return _convert_xy(xy, src, dst)

    # A GeoSeries can only exist once geopandas is imported, so look it up rather than import
    # it: geo/ stays free of the geopandas import for callers that pass plain shapely arrays.
    gpd = sys.modules.get("geopandas")
    if gpd is not None and isinstance(geoms, gpd.GeoSeries):
        if geoms.crs is not None:
            own = _resolve_crs(geoms.crs)
            if not _same(own, src):
                raise ValueError(f"GeoSeries has crs {geoms.crs} but src_crs={src_crs!r} was given")
        values = np.asarray(geoms.values)
        out = values if _same(src, dst) else shapely.transform(values, func)
        dst_pyproj = _WGS84 if _is(dst, "wgs84") else dst
        crs = dst_pyproj if isinstance(dst_pyproj, pyproj.CRS) else None
        return gpd.GeoSeries(np.asarray(out), index=geoms.index, crs=crs)
    if _same(src, dst):
        return geoms
    return shapely.transform(geoms, func)


def _same(a: str | pyproj.CRS, b: str | pyproj.CRS) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a is b or a.equals(b)
