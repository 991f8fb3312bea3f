"""GridSight's pure spatial engine: numpy/shapely in, numpy/shapely/pandas out.

No database, Dash or file I/O here. Geometries are WGS-84 (EPSG:4326) unless a function
says otherwise; distances and areas are computed in a local metric CRS.

Which function for which question (one module per kind of operation):

- ``crs``: ``to_wgs84`` / ``from_wgs84`` at the import/display boundary (gcj02, bd09, EPSG),
  ``local_metric_crs`` for metres, ``transform_geometries`` for shapely geometries.
- ``assign``: which grid holds each point. Build ``GridIndex(grids)`` once per grid layer and
  call ``.assign(lon, lat)`` (or ``assign_points``); exact, lowest index wins on shared edges.
- ``sectors``: ``camera_sectors`` (cone polygons for the map), ``cameras_seeing`` (one point;
  pass a ``CameraIndex`` when asking repeatedly), ``cameras_seeing_many``.
- ``coverage``: ``coverage(grids, cameras)`` covered fraction per grid (pass the camera table,
  not cone polygons, for the fast exact-arc path); ``blind_spots(grid, cameras)`` for one grid.
- ``density``: Gaussian KDE raster, bandwidth in metres, row 0 = south; ``density_image``
  the same north-up and scaled to 1, for a map overlay.
- ``measure``: metres per degree, degree boxes around a radius, great-circle distances.
- ``hotspots``: Getis-Ord Gi* per grid (PySAL).
- ``rollup``: per-grid counts and ratio KPIs up to community, street, district, city.

Numba kernels compile on first use and are cached next to the modules (``__pycache__``).
"""

from geo.assign import GridIndex, assign_points
from geo.coverage import blind_spots, coverage
from geo.crs import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    local_metric_crs,
    to_wgs84,
    transform_geometries,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from geo.density import density, density_image
from geo.hotspots import hotspots
from geo.rollup import LEVELS, rollup
from geo.sectors import CameraIndex, camera_sectors, cameras_seeing, cameras_seeing_many

__all__ = [
    "CameraIndex",
    "GridIndex",
    "LEVELS",
    "assign_points",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "blind_spots",
    "camera_sectors",
    "cameras_seeing",
    "cameras_seeing_many",
    "coverage",
    "density",
    "density_image",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "hotspots",
    "local_metric_crs",
    "rollup",
    "to_wgs84",
    "transform_geometries",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]
