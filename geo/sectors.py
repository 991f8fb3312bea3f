"""Camera view cones ("sectors"): polygons, and which cameras see a point.

A camera row has ``lon``, ``lat`` (EPSG:4326 degrees), ``azimuth`` (degrees clockwise from
north), ``fov`` (field-of-view angle in degrees; 360 or more means a full disc) and
``range_m`` (metres). Cones are built in each camera's own azimuthal-equidistant frame, which
is what ``pyproj.Geod.fwd`` computes: the distance and bearing from the camera are exact on the
WGS-84 ellipsoid. Results are returned in EPSG:4326.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import ArrayLike

from geo.measure import degree_box

__all__ = [
    "CAMERA_COLUMNS",
    "CameraIndex",
    "camera_sectors",
    "cameras_seeing",
    "cameras_seeing_many",
]

CAMERA_COLUMNS = ("lon", "lat", "azimuth", "fov", "range_m")
_GEOD = pyproj.Geod(ellps="WGS84")


def _camera_arrays(cameras: pd.DataFrame) -> dict[str, np.ndarray]:
    """Return the camera columns as float arrays; raise ValueError naming missing columns."""
    missing = [c for c in CAMERA_COLUMNS if c not in cameras.columns]
    if missing:
        raise ValueError(f"cameras is missing column(s) {missing}; expected {list(CAMERA_COLUMNS)}")
    return {c: cameras[c].to_numpy(dtype=np.float64) for c in CAMERA_COLUMNS}


def _valid(cam: dict[str, np.ndarray]) -> np.ndarray:
    finite = np.all([np.isfinite(cam[c]) for c in CAMERA_COLUMNS], axis=0)
    return finite & (cam["range_m"] > 0) & (cam["fov"] > 0)


def camera_sectors(cameras: pd.DataFrame, *, arc_step_deg: float = 5.0):
    """Return the view cone of each camera as a GeoSeries of Polygons in EPSG:4326.

    Parameters
    ----------
    cameras : pandas.DataFrame
        Columns ``lon``, ``lat`` (EPSG:4326), ``azimuth`` (degrees clockwise from north),
        ``fov`` (degrees; >= 360 gives a disc) and ``range_m`` (metres).
    arc_step_deg : float, default 5.0
        Maximum angle between arc vertices. The chord polygon lies inside the true cone and
        misses at most ``1 - cos(arc_step_deg / 2)`` of the range (0.1 % at 5 degrees).

    Returns
    -------
    geopandas.GeoSeries
        One Polygon per row (same index, crs EPSG:4326); None where a value is missing, or
        ``range_m``/``fov`` is not positive.
    """
    import geopandas as gpd

    cam = _camera_arrays(cameras)
    n = len(cameras)
    geoms = np.full(n, None, dtype=object)
    ok = np.flatnonzero(_valid(cam))
    if len(ok):
        fov = np.minimum(cam["fov"][ok], 360.0)
        disc = fov >= 360.0
        n_arc = np.maximum(np.ceil(fov / arc_step_deg).astype(np.int64), 2)
        # sectors: apex, n_arc + 1 arc points, apex again; discs: n_arc arc points + closing
        n_vert = np.where(disc, n_arc + 1, n_arc + 3)
        owner = np.repeat(np.arange(len(ok)), n_vert)
        start = np.concatenate([[0], np.cumsum(n_vert)[:-1]])
        k = np.arange(n_vert.sum()) - start[owner]  # vertex number within its ring
        arc_k = np.where(disc[owner], k % n_arc[owner], k - 1)
        frac = arc_k / n_arc[owner]
        bearing = cam["azimuth"][ok][owner] - fov[owner] / 2 + frac * fov[owner]
        lon0 = cam["lon"][ok][owner]
        lat0 = cam["lat"][ok][owner]
        x, y, _ = _GEOD.fwd(lon0, lat0, bearing, cam["range_m"][ok][owner])
        x = np.asarray(x)
        y = np.asarray(y)
        apex = ~disc[owner] & ((k == 0) | (k == n_vert[owner] - 1))
        x[apex] = lon0[apex]
        y[apex] = lat0[apex]
        rings = shapely.linearrings(np.column_stack([x, y]), indices=owner)
        geoms[ok] = shapely.polygons(rings)
    return gpd.GeoSeries(geoms, index=cameras.index, crs="EPSG:4326")


class CameraIndex:
    """A reusable index answering "which cameras see these points" for many queries.

    Parameters
    ----------
    cameras : pandas.DataFrame
        Camera table as for ``camera_sectors`` (EPSG:4326). Rows with missing values or a
        non-positive ``range_m``/``fov`` never see anything.
    """

    def __init__(self, cameras: pd.DataFrame) -> None:
        self.cam = _camera_arrays(cameras)
        self.ok = _valid(self.cam)
        # Conservative degree boxes around each camera (1 % margin over the local scale).
        r_deg_lon, r_deg_lat = degree_box(self.cam["lat"], self.cam["range_m"], margin=1.01)
        self.box = np.column_stack(
            [
                self.cam["lon"] - r_deg_lon,
                self.cam["lat"] - r_deg_lat,
                self.cam["lon"] + r_deg_lon,
                self.cam["lat"] + r_deg_lat,
            ]
        )
        self.box[~self.ok] = np.nan
        self._tree: shapely.STRtree | None = None

    def __len__(self) -> int:
        return len(self.ok)

    def _candidates_one(self, lon: float, lat: float) -> np.ndarray:
        b = self.box
        return np.flatnonzero(
            (b[:, 0] <= lon) & (lon <= b[:, 2]) & (b[:, 1] <= lat) & (lat <= b[:, 3])
        )

    def seeing(self, lon: ArrayLike, lat: ArrayLike) -> list[list[int]]:
        """Return, for each WGS-84 point, the positions of the cameras seeing it, nearest first.

        Candidate pairs come from an STRtree of the cameras' bounding boxes (built on first
        use), so the cost grows with the number of (point, nearby camera) pairs.
        """
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if len(lon_a) == 1:
            c_idx = self._candidates_one(float(lon_a[0]), float(lat_a[0]))
            p_idx = np.zeros(len(c_idx), dtype=np.int64)
        else:
            if self._tree is None:
                boxes = shapely.box(*self.box.T)
                boxes[~self.ok] = None
                self._tree = shapely.STRtree(boxes)
            p_idx, c_idx = self._tree.query(
                shapely.points(np.column_stack([lon_a, lat_a])), predicate="intersects"
            )
        return self._decide(lon_a, lat_a, p_idx, c_idx)

    def _decide(self, lon_a, lat_a, p_idx, c_idx) -> list[list[int]]:
        cam = self.cam
        result: list[list[int]] = [[] for _ in range(len(lon_a))]
        if not len(p_idx):
            return result
        az, _, dist = _GEOD.inv(cam["lon"][c_idx], cam["lat"][c_idx], lon_a[p_idx], lat_a[p_idx])
        dist = np.asarray(dist)
        diff = np.abs((np.asarray(az) - cam["azimuth"][c_idx] + 180.0) % 360.0 - 180.0)
        sees = (dist <= cam["range_m"][c_idx]) & (
            (cam["fov"][c_idx] >= 360.0) | (diff <= cam["fov"][c_idx] / 2) | (dist == 0)
        )
        p_idx, c_idx, dist = p_idx[sees], c_idx[sees], dist[sees]
        order = np.lexsort((c_idx, dist, p_idx))
        for p, c in zip(p_idx[order], c_idx[order], strict=True):
            result[p].append(int(c))
        return result


def cameras_seeing(lon: float, lat: float, cameras: pd.DataFrame | CameraIndex) -> list[int]:
    """Return the row positions of the cameras whose cone holds the point, nearest first.

    Parameters
    ----------
    lon, lat : float
        The point, EPSG:4326 degrees.
    cameras : pandas.DataFrame or CameraIndex
        Camera table as for ``camera_sectors``, or an index built from one.

    Returns
    -------
    list of int
        Positions (0..n-1, not index labels) of cameras with geodesic distance <= ``range_m``
        and bearing within ``fov / 2`` of ``azimuth`` (boundary included), sorted by distance
        then position. The test uses the exact cone, not the chord polygon.
    """
    index = cameras if isinstance(cameras, CameraIndex) else CameraIndex(cameras)
    return index.seeing([lon], [lat])[0]


def cameras_seeing_many(
    lon: ArrayLike, lat: ArrayLike, cameras: pd.DataFrame | CameraIndex
) -> list[list[int]]:
    """Return, for each point, the camera positions whose cone holds it, nearest first.

    Same rule as ``cameras_seeing``. Pass a ``CameraIndex`` to reuse the spatial index across
    calls.
    """
    index = cameras if isinstance(cameras, CameraIndex) else CameraIndex(cameras)
    return index.seeing(lon, lat)
