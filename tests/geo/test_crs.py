"""Tests for geo.crs: offset-CRS conversions, EPSG handling, metric CRS, geometry transform."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import crs as gcrs
from tests.geo.awkward import AWKWARD_SETS

# Published reference vectors from eviltransform's test suites (wgs lon, lat, gcj lon, lat).
GCJ_VECTORS = [
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),  # Shanghai
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),  # Shenzhen
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),  # Beijing
]
# wandergis/coordtransform README fixture at (116.404, 39.915): forward formulas are exact;
# its inverses are one-step approximations, so ours (iterated) must agree within a metre.
CT_POINT = (116.404, 39.915)
CT_WGS_TO_GCJ = (116.41024449916938, 39.91640428150164)
CT_GCJ_TO_BD = (116.41036949371029, 39.92133699351021)
CT_BD_TO_GCJ = (116.39762729119315, 39.90865673957631)
OUTSIDE_CHINA = [(-104.9903, 39.7392), (153.0251, -27.4698), (-43.1729, -22.9068), (2.35, 48.85)]


def metres(lon1, lat1, lon2, lat2):
    """Return geodesic distances in metres on WGS-84."""
    _, _, d = pyproj.Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    return np.asarray(d)


@pytest.mark.parametrize(("wlon", "wlat", "glon", "glat"), GCJ_VECTORS)
def test_wgs84_to_gcj02_matches_published_vectors(wlon, wlat, glon, glat):
    lon, lat = gcrs.wgs84_to_gcj02(wlon, wlat)
    assert lon == pytest.approx(glon, abs=1e-9)
    assert lat == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize(("wlon", "wlat", "glon", "glat"), GCJ_VECTORS)
def test_gcj02_to_wgs84_inverts_published_vectors(wlon, wlat, glon, glat):
    lon, lat = gcrs.gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, wlon, wlat) < 0.01


def test_coordtransform_fixture():
    assert gcrs.wgs84_to_gcj02(*CT_POINT) == pytest.approx(CT_WGS_TO_GCJ, abs=1e-9)
    assert gcrs.gcj02_to_bd09(*CT_POINT) == pytest.approx(CT_GCJ_TO_BD, abs=1e-9)
    assert gcrs.wgs84_to_bd09(*CT_POINT) == pytest.approx(
        gcrs.gcj02_to_bd09(*CT_WGS_TO_GCJ), abs=1e-12
    )
    lon, lat = gcrs.bd09_to_gcj02(*CT_POINT)
    assert metres(lon, lat, *CT_BD_TO_GCJ) < 1.0


@pytest.mark.parametrize(("lon", "lat"), OUTSIDE_CHINA)
def test_gcj02_is_wgs84_outside_china(lon, lat):
    assert gcrs.wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcrs.gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_offset_inside_china_is_hundreds_of_metres():
    lon, lat = gcrs.wgs84_to_gcj02(116.391226, 39.907333)  # Tiananmen
    assert 100 < metres(lon, lat, 116.391226, 39.907333) < 1000


china = st.tuples(st.floats(73.5, 135.0, allow_nan=False), st.floats(18.0, 53.5, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(china)
def test_round_trips_inside_china_under_a_metre(point):
    lon, lat = point
    for fwd, inv in [
        (gcrs.wgs84_to_gcj02, gcrs.gcj02_to_wgs84),
        (gcrs.wgs84_to_bd09, gcrs.bd09_to_wgs84),
    ]:
        back = inv(*fwd(lon, lat))
        assert metres(back[0], back[1], lon, lat) < 1.0
        # and the other way round (a point read off an offset map)
        back2 = fwd(*inv(lon, lat))
        assert metres(back2[0], back2[1], lon, lat) < 1.0


def test_vectorised_with_nan_and_shapes():
    lon = np.array([[116.4, np.nan], [121.5, -0.1]])
    lat = np.array([[39.9, 31.2], [np.nan, 51.5]])
    for func in (gcrs.wgs84_to_gcj02, gcrs.gcj02_to_wgs84, gcrs.wgs84_to_bd09, gcrs.bd09_to_wgs84):
        x, y = func(lon, lat)
        assert x.shape == y.shape == (2, 2)
        assert np.isnan(x[0, 1]) and np.isnan(y[1, 0])
        assert np.isfinite(x[0, 0]) and np.isfinite(y[1, 1])
    # scalar broadcast against an array
    x, _ = gcrs.wgs84_to_gcj02(116.4, np.array([39.9, 40.0]))
    assert x.shape == (2,)


@pytest.mark.parametrize("crs", ["wgs84", "gcj02", "bd09", "GCJ02", "EPSG:4326", "EPSG:3857"])
def test_to_from_wgs84_round_trip(crs):
    lon = np.array([116.397, 121.47, 113.26])
    lat = np.array([39.909, 31.23, 23.13])
    x, y = gcrs.from_wgs84(lon, lat, crs)
    back_lon, back_lat = gcrs.to_wgs84(x, y, crs)
    assert np.all(metres(back_lon, back_lat, lon, lat) < 1.0)


def test_epsg_uses_easting_first():
    x, y = gcrs.from_wgs84(116.397, 39.909, "EPSG:3857")
    radius = 6378137.0  # spherical web-mercator formulas
    assert x == pytest.approx(radius * np.radians(116.397), abs=0.01)
    assert y == pytest.approx(radius * np.log(np.tan(np.pi / 4 + np.radians(39.909) / 2)), abs=0.01)


@pytest.mark.parametrize("bad", ["wgs", "EPSG:99999999", "EPSG:abc", "", 4326])
def test_unknown_crs_raises_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="Unknown crs") as info:
        gcrs.to_wgs84(116.0, 39.0, bad)
    assert repr(bad) in str(info.value)
    if bad != "EPSG:99999999":
        assert "gcj02" in str(info.value)


def test_local_metric_crs_is_metric_and_centred():
    lon = np.array([116.3, 116.5])
    lat = np.array([39.8, 40.0])
    crs = gcrs.local_metric_crs(lon, lat)
    assert crs.axis_info[0].unit_name == "metre"
    x, y = gcrs.from_wgs84(116.4, 39.9, crs)
    assert abs(x) < 1e-6 and abs(y) < 1e-6
    x1, y1 = gcrs.from_wgs84(116.41, 39.9, crs)
    d = metres(116.4, 39.9, 116.41, 39.9)
    assert np.hypot(x1, y1) == pytest.approx(d, rel=1e-6)
    with pytest.raises(ValueError):
        gcrs.local_metric_crs([np.nan], [np.nan])


def test_transform_geometries_round_trip_and_geoseries():
    poly = shapely.Polygon([(116.39, 39.90), (116.40, 39.90), (116.40, 39.91), (116.39, 39.90)])
    geoms = np.array([poly, None, shapely.Point(121.5, 31.2), shapely.Polygon()], dtype=object)
    gcj = gcrs.transform_geometries(geoms, "wgs84", "gcj02")
    assert gcj[1] is None and gcj[3].is_empty
    back = gcrs.transform_geometries(gcj, "gcj02", "wgs84")
    assert shapely.hausdorff_distance(back[0], poly) < 1e-8
    single = gcrs.transform_geometries(poly, "wgs84", "bd09")
    assert isinstance(single, shapely.Polygon)

    series = gpd.GeoSeries([poly], index=[7], crs="EPSG:4326")
    metric = gcrs.transform_geometries(series, "wgs84", "EPSG:3857")
    assert metric.crs == pyproj.CRS.from_epsg(3857) and list(metric.index) == [7]
    as_gcj = gcrs.transform_geometries(series, "EPSG:4326", "gcj02")
    assert as_gcj.crs is None
    with pytest.raises(ValueError, match="crs"):
        gcrs.transform_geometries(metric, "wgs84", "gcj02")


@pytest.mark.parametrize("name", sorted(AWKWARD_SETS))
@pytest.mark.parametrize("crs", ["gcj02", "bd09", "EPSG:3857"])
def test_awkward_geometries_round_trip(name, crs):
    geoms = np.asarray(AWKWARD_SETS[name], dtype=object)
    there = gcrs.transform_geometries(geoms, "wgs84", crs)
    back = gcrs.transform_geometries(there, crs, "wgs84")
    for original, result in zip(geoms, back, strict=True):
        if original is None:
            assert result is None
        elif original.is_empty:
            assert result.is_empty
        else:
            assert result.geom_type == original.geom_type
            assert shapely.hausdorff_distance(result, original) < 1e-8  # ~1 mm
