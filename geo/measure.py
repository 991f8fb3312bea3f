"""Ground distances and the metre/degree scale of WGS-84 (EPSG:4326) coordinates.

Every conversion between metres and degrees in GridSight goes through here, so the whole
code base agrees on one scale:

- ``metres_per_degree``: the exact local scale of the WGS-84 ellipsoid at a latitude (for
  rasters, search windows and small offsets);
- ``degree_box``: half-sizes in degrees of a box that certainly holds a radius in metres;
- ``haversine_m``: great-circle distances on the mean-radius sphere (for nearest-neighbour
  questions, accurate to ~0.3 %), and ``window_reach_m``, the matching lower bound of the
  distance to the edge of a degree window;
- ``mercator_metres_per_pixel``: the ground size of a Web-Mercator (EPSG:3857) screen pixel.

Areas and lengths of geometries are measured in a projected CRS instead
(``geo.crs.local_metric_crs``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EARTH_RADIUS_M",
    "M_PER_DEG_LAT_MIN",
    "degree_box",
    "haversine_m",
    "mercator_metres_per_pixel",
    "metres_per_degree",
    "window_reach_m",
]

WGS84_A = 6378137.0  # semi-major axis (m)
WGS84_E2 = 6.69437999014e-3  # first eccentricity squared
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius (m), the sphere of ``haversine_m``
_WEB_MERCATOR_M_PER_PX_Z0 = 2 * math.pi * WGS84_A / 256  # 156,543.03 m at the equator, zoom 0


def metres_per_degree(lat: ArrayLike) -> tuple:
    """Return (metres per degree of longitude, metres per degree of latitude) at ``lat``.

    Parameters
    ----------
    lat : float or array-like of float
        Latitude in EPSG:4326 degrees.

    Returns
    -------
    (float, float), or two float arrays shaped like ``lat``
        From the WGS-84 radii of curvature, so exact for small steps at that latitude
        (111,320 m and 110,574 m per degree at the equator; 100,950 m and 110,770 m at 25 N).
    """
    scalar = np.ndim(lat) == 0
    phi = np.radians(np.asarray(lat, dtype=float))
    q = 1.0 - WGS84_E2 * np.sin(phi) ** 2
    n = WGS84_A / np.sqrt(q)  # prime-vertical radius
    m = WGS84_A * (1.0 - WGS84_E2) / q**1.5  # meridional radius
    mx, my = math.radians(1.0) * n * np.cos(phi), math.radians(1.0) * m
    if scalar:
        return float(mx), float(my)
    return mx, my


#: metres per degree of latitude at the equator: the smallest anywhere, so a step in degrees
#: derived from it is never longer on the ground than asked
M_PER_DEG_LAT_MIN = metres_per_degree(0.0)[1]


def degree_box(lat: ArrayLike, radius_m: ArrayLike, margin: float = 1.01) -> tuple:
    """Return (half-width, half-height) in degrees of a box holding ``radius_m`` around ``lat``.

    Conservative: the longitude scale is taken at the latitude of the box's edge farthest
    from the equator (capped at 89.9 degrees), and both sides are widened by ``margin``, so
    every point within ``radius_m`` metres of a point at ``lat`` (EPSG:4326) lies inside.
    Scalars give floats; arrays give arrays.
    """
    lat_a = np.asarray(lat, dtype=float)
    r = np.asarray(radius_m, dtype=float)
    dlat = r / M_PER_DEG_LAT_MIN * margin
    far = np.clip(np.abs(lat_a) + dlat, 0.0, 89.9)
    dlon = r / metres_per_degree(far)[0] * margin
    if np.ndim(dlon) == 0:
        return float(dlon), float(dlat)
    return dlon, dlat


def haversine_m(lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike) -> NDArray:
    """Return great-circle distances in metres between WGS-84 points (vectorised, broadcast).

    On the sphere of ``EARTH_RADIUS_M``: within ~0.3 % of the ellipsoidal distance, enough to
    rank and threshold nearby points; measure exact lengths in a projected CRS.
    """
    lon1, lat1, lon2, lat2 = (
        np.radians(np.asarray(v, dtype=float)) for v in (lon1, lat1, lon2, lat2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def window_reach_m(lat: float, half_deg: float) -> float:
    """Return a lower bound of the ``haversine_m`` distance from (lon, lat) to outside its window.

    The window is lon ± ``half_deg``, lat ± ``half_deg`` (EPSG:4326); any point outside it is
    at least this many metres away on the sphere of ``haversine_m``: the nearer of the
    north/south edges and the meridians bounding the east/west edges.
    """
    half = math.radians(float(half_deg))
    north_south = EARTH_RADIUS_M * half
    sin_east_west = math.cos(math.radians(float(lat))) * math.sin(min(half, math.pi / 2))
    east_west = EARTH_RADIUS_M * math.asin(min(1.0, sin_east_west))
    return min(north_south, east_west)


def mercator_metres_per_pixel(lat: float, zoom: float) -> float:
    """Return the ground metres of one 256-px-tile Web-Mercator pixel at ``lat`` and ``zoom``."""
    return _WEB_MERCATOR_M_PER_PX_Z0 * math.cos(math.radians(float(lat))) / (2.0 ** float(zoom))
