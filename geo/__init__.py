"""GridSight's pure spatial engine: numpy/shapely in, numpy/shapely/pandas out.

No database, Dash or file I/O here. Geometries are WGS-84 (EPSG:4326) unless a function
says otherwise; distances and areas are computed in a local metric CRS.
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
from geo.density import density
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
