"""geo.measure: metres per degree, degree boxes and great-circle distances, checked against
pyproj's geodesics (an independent implementation) at awkward latitudes."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pyproj
import pytest

from geo.measure import (
    EARTH_RADIUS_M,
    M_PER_DEG_LAT_MIN,
    degree_box,
    haversine_m,
    mercator_metres_per_pixel,
    metres_per_degree,
    window_reach_m,
)

GEOD = pyproj.Geod(ellps="WGS84")
LATS = (0.0, 24.96, 45.0, -60.0, 80.0)


@pytest.mark.parametrize("lat", LATS)
def test_metres_per_degree_is_the_geodesic_length_of_a_small_step(lat):
    step = 1e-4
    _, _, east = GEOD.inv(100.0, lat, 100.0 + step, lat)
    _, _, north = GEOD.inv(100.0, lat - step / 2, 100.0, lat + step / 2)
    mx, my = metres_per_degree(lat)
    assert mx == pytest.approx(east / step, rel=1e-6)
    assert my == pytest.approx(north / step, rel=1e-6)


def test_metres_per_degree_takes_arrays_and_names_the_equator_minimum():
    mx, my = metres_per_degree(np.array([0.0, 25.0, 60.0]))
    assert mx.shape == my.shape == (3,)
    assert (np.diff(mx) < 0).all() and (np.diff(my) > 0).all()
    assert M_PER_DEG_LAT_MIN == pytest.approx(110_574.3, abs=0.1) == my[0]


@pytest.mark.parametrize("lat", LATS)
@pytest.mark.parametrize("radius", [5.0, 400.0, 5_000.0])
def test_degree_box_holds_every_point_within_the_radius(lat, radius):
    dlon, dlat = degree_box(lat, radius)
    az = np.linspace(0.0, 360.0, 73)
    lon2, lat2, _ = GEOD.fwd(np.full(73, 100.0), np.full(73, lat), az, np.full(73, radius))
    assert (np.abs(np.asarray(lon2) - 100.0) <= dlon).all()
    assert (np.abs(np.asarray(lat2) - lat) <= dlat).all()
    assert dlat < radius / M_PER_DEG_LAT_MIN * 1.02  # conservative, not wasteful


def test_degree_box_broadcasts_and_passes_nan_through():
    dlon, dlat = degree_box(np.array([25.0, np.nan]), np.array([100.0, 50.0]))
    assert np.isfinite(dlon[0]) and np.isnan(dlon[1]) and dlat[1] > 0


def test_haversine_against_geodesics():
    lon1, lat1 = np.array([102.0, 102.7, 0.0, 120.0]), np.array([25.0, 24.96, 0.0, -33.0])
    lon2, lat2 = np.array([102.0, 102.71, 1.0, 121.5]), np.array([26.0, 24.97, 0.0, -33.2])
    _, _, exact = GEOD.inv(lon1, lat1, lon2, lat2)
    assert haversine_m(lon1, lat1, lon2, lat2) == pytest.approx(exact, rel=5e-3)
    assert float(haversine_m(0, 0, 180, 0)) == pytest.approx(np.pi * EARTH_RADIUS_M)


@pytest.mark.parametrize("lat", (0.0, 25.0, 60.0, -70.0))
@pytest.mark.parametrize("half_deg", (0.02, 0.08, 0.32))
def test_window_reach_is_a_lower_bound_of_the_distance_to_the_window_edge(lat, half_deg):
    t = np.linspace(-half_deg, half_deg, 201)
    edge_lon = np.concatenate([t, t, np.full(201, -half_deg), np.full(201, half_deg)])
    edge_lat = lat + np.concatenate([np.full(201, -half_deg), np.full(201, half_deg), t, t])
    nearest = haversine_m(0.0, lat, edge_lon, edge_lat).min()
    reach = window_reach_m(lat, half_deg)
    assert reach <= nearest and reach > 0.999 * nearest


def test_mercator_pixel_at_zoom_zero_is_the_equator_over_256():
    assert mercator_metres_per_pixel(0.0, 0) == pytest.approx(2 * np.pi * 6378137.0 / 256)
    assert mercator_metres_per_pixel(60.0, 1) == pytest.approx(156_543.034 / 4, rel=1e-6)


# -- one scale for the whole code base --------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SCALE_LITERALS = {111_000.0, 111_320.0, 110_574.0, 110_540.0, 111_195.0, 6_371_000.0,
                  6_371_008.8, 6_378_137.0, 156_543.03}  # fmt: skip


def test_metre_degree_constants_live_only_in_geo_measure():
    """No module outside geo/measure.py (tests aside: they are oracles) carries its own scale."""
    found = []
    for top in ("geo", "layers", "streams", "dashboard", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "geo" / "measure.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                value = getattr(node, "value", None)
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and any(abs(value - c) <= 1.0 for c in SCALE_LITERALS)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {value}")
    assert not found, "use geo.measure:\n" + "\n".join(found)
