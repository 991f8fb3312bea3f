"""Tests for geo.sectors: cone polygons and which cameras see a point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import camera_sectors, cameras_seeing, local_metric_crs, transform_geometries
from geo.sectors import CameraIndex, cameras_seeing_many

GEOD = pyproj.Geod(ellps="WGS84")


def cams(**cols):
    base = {"lon": [118.78], "lat": [32.06], "azimuth": [90.0], "fov": [60.0], "range_m": [100.0]}
    base.update(cols)
    return pd.DataFrame(base)


def metric_area(geom, lon, lat):
    return transform_geometries(geom, "wgs84", local_metric_crs(lon, lat)).area


@pytest.mark.parametrize("fov", [10.0, 60.0, 90.0, 179.0, 270.0, 360.0, 400.0])
def test_sector_area_matches_analytic(fov):
    df = cams(fov=[fov])
    (poly,) = camera_sectors(df)
    assert poly.is_valid
    expected = min(fov, 360.0) / 360.0 * np.pi * 100.0**2
    area = metric_area(poly, 118.78, 32.06)
    assert area == pytest.approx(expected, rel=0.005)
    assert area <= expected * 1.0001  # chords lie inside the true arc


def test_sector_points_the_right_way():
    (poly,) = camera_sectors(cams(azimuth=[0.0], fov=[30.0]))
    north = GEOD.fwd(118.78, 32.06, 0.0, 50.0)[:2]
    south = GEOD.fwd(118.78, 32.06, 180.0, 50.0)[:2]
    assert poly.contains(shapely.Point(north))
    assert not poly.intersects(shapely.Point(south))
    assert poly.covers(shapely.Point(118.78, 32.06))  # apex


def test_invalid_rows_give_none_and_index_is_kept():
    df = pd.DataFrame(
        {
            "lon": [118.78, np.nan, 118.78, 118.78],
            "lat": [32.06, 32.06, 32.06, 32.06],
            "azimuth": [0.0, 0.0, 0.0, 0.0],
            "fov": [90.0, 90.0, 0.0, 90.0],
            "range_m": [50.0, 50.0, 50.0, -1.0],
        },
        index=[5, 6, 7, 8],
    )
    out = camera_sectors(df)
    assert list(out.index) == [5, 6, 7, 8]
    assert out.crs == "EPSG:4326"
    assert out.iloc[0] is not None and out.iloc[1:].isna().all()
    assert cameras_seeing(118.78, 32.0604, df) == [0]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="range_m"):
        camera_sectors(pd.DataFrame({"lon": [1.0], "lat": [1.0], "azimuth": [0], "fov": [90]}))


def test_empty_camera_table():
    empty = cams().iloc[:0]
    assert len(camera_sectors(empty)) == 0
    assert cameras_seeing(118.78, 32.06, empty) == []


def test_nearest_first():
    df = pd.DataFrame(
        {
            "lon": [118.78, 118.7801, 118.7805],
            "lat": [32.06, 32.06, 32.06],
            "azimuth": [90.0, 90.0, 270.0],
            "fov": [40.0, 360.0, 40.0],
            "range_m": [200.0, 200.0, 200.0],
        }
    )
    target = (118.7803, 32.06)  # east of cameras 0 and 1, west of camera 2
    assert cameras_seeing(*target, df) == [1, 2, 0]
    assert cameras_seeing(118.77, 32.06, df) == []


@settings(max_examples=150, deadline=None)
@given(
    azimuth=st.floats(0, 360),
    fov=st.floats(5, 360),
    range_m=st.floats(10, 500),
    bearing=st.floats(0, 360),
    dist_frac=st.floats(0, 2),
)
def test_seeing_agrees_with_cone_polygon_away_from_the_arc(
    azimuth, fov, range_m, bearing, dist_frac
):
    df = cams(azimuth=[azimuth], fov=[fov], range_m=[range_m])
    (poly,) = camera_sectors(df, arc_step_deg=1.0)
    lon, lat, _ = GEOD.fwd(118.78, 32.06, bearing, dist_frac * range_m)
    off_axis = abs((bearing - azimuth + 180) % 360 - 180)
    # Skip points within rounding distance of the cone's straight sides or its arc.
    if fov < 360 and abs(off_axis - fov / 2) < 0.5:
        return
    if abs(dist_frac - 1) < 0.01 or dist_frac < 1e-6:
        return
    seen = cameras_seeing(lon, lat, df) == [0]
    assert seen == bool(poly.covers(shapely.Point(lon, lat)))


def test_many_points_matches_single_calls():
    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame(
        {
            "lon": 118.78 + rng.uniform(-0.003, 0.003, n),
            "lat": 32.06 + rng.uniform(-0.003, 0.003, n),
            "azimuth": rng.uniform(0, 360, n),
            "fov": rng.choice([45.0, 90.0, 360.0], n),
            "range_m": rng.uniform(30, 200, n),
        }
    )
    lon = 118.78 + rng.uniform(-0.004, 0.004, 50)
    lat = 32.06 + rng.uniform(-0.004, 0.004, 50)
    many = cameras_seeing_many(lon, lat, df)
    assert many == [cameras_seeing(x, y, df) for x, y in zip(lon, lat, strict=True)]
    index = CameraIndex(df)
    assert cameras_seeing_many(lon, lat, index) == many
    assert [cameras_seeing(x, y, index) for x, y in zip(lon, lat, strict=True)] == many
    assert sum(map(len, many)) > 0
    # brute-force check of one point against every camera
    az, _, dist = GEOD.inv(
        df.lon.to_numpy(), df.lat.to_numpy(), np.full(n, lon[0]), np.full(n, lat[0])
    )
    off = np.abs((az - df.azimuth.to_numpy() + 180) % 360 - 180)
    ok = (dist <= df.range_m.to_numpy()) & (
        (df.fov.to_numpy() >= 360) | (off <= df.fov.to_numpy() / 2)
    )
    expected = sorted(np.flatnonzero(ok), key=lambda i: dist[i])
    assert many[0] == expected
