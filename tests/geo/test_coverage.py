"""Tests for geo.coverage: covered fraction vs exact shapely, and blind spots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import blind_spots, camera_sectors, coverage, local_metric_crs, transform_geometries
from tests.geo.awkward import HOLED, MULTI, SLIVER, SQUARE

LON0, LAT0 = 118.78, 32.06
M = 1 / 111_320.0  # ~degrees per metre (latitude)


def exact_fraction(grids, cones):
    """Return shapely's covered fraction per grid, measured in a local metric CRS."""
    crs = local_metric_crs(LON0, LAT0)
    g = transform_geometries(np.asarray(grids, dtype=object), "wgs84", crs)
    c = transform_geometries(np.asarray(cones, dtype=object), "wgs84", crs)
    union = shapely.union_all(c)
    return shapely.area(shapely.intersection(g, union)) / shapely.area(g)


def random_cameras(rng, n, spread_deg=0.004):
    return pd.DataFrame(
        {
            "lon": LON0 + rng.uniform(-spread_deg, spread_deg, n),
            "lat": LAT0 + rng.uniform(-spread_deg, spread_deg, n),
            "azimuth": rng.uniform(0, 360, n),
            "fov": rng.choice([30.0, 60.0, 120.0, 200.0, 360.0], n),
            "range_m": rng.uniform(20, 150, n),
        }
    )


def voronoi_grids(rng, n, spread_deg=0.004):
    seeds = shapely.multipoints(
        np.column_stack(
            [
                LON0 + rng.uniform(-spread_deg, spread_deg, n),
                LAT0 + rng.uniform(-spread_deg, spread_deg, n),
            ]
        )
    )
    env = shapely.box(LON0 - spread_deg, LAT0 - spread_deg, LON0 + spread_deg, LAT0 + spread_deg)
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=env))
    return shapely.intersection(cells, env)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_grids=st.integers(1, 30), n_cams=st.integers(0, 40))
def test_coverage_within_two_percent_of_exact_for_grids_over_one_hectare(seed, n_grids, n_cams):
    rng = np.random.default_rng(seed)
    grids = voronoi_grids(rng, n_grids)
    cams = random_cameras(rng, n_cams)
    got = coverage(grids, cams)
    cones = camera_sectors(cams).values
    expected = exact_fraction(grids, cones) if n_cams else np.zeros(len(grids))
    assert np.all((got >= 0) & (got <= 1))
    big = shapely.area(transform_geometries(grids, "wgs84", local_metric_crs(LON0, LAT0))) >= 1e4
    np.testing.assert_array_less(np.abs(got - expected)[big], 0.02)


@pytest.mark.parametrize(
    "grid", [SQUARE, HOLED, MULTI, SLIVER], ids=["square", "holed", "multi", "sliver"]
)
def test_awkward_grids(grid):
    cams = pd.DataFrame(
        {
            "lon": [116.0, 116.01, 116.035],
            "lat": [39.0, 39.01, 39.005],
            "azimuth": [45.0, 225.0, 0.0],
            "fov": [90.0, 90.0, 360.0],
            "range_m": [600.0, 500.0, 300.0],
        }
    )
    got = coverage([grid], cams)
    cones = camera_sectors(cams).values
    crs = local_metric_crs(116.03, 39.01)
    exact = shapely.area(
        shapely.intersection(
            transform_geometries(grid, "wgs84", crs),
            shapely.union_all(transform_geometries(cones, "wgs84", crs)),
        )
    ) / shapely.area(transform_geometries(grid, "wgs84", crs))
    assert got[0] == pytest.approx(exact, abs=0.02)
    blind = blind_spots(grid, cams)
    # lon/lat vs metric area ratios differ by ~1e-6 over a 1 km grid
    assert blind.area / grid.area == pytest.approx(1 - exact, abs=1e-4)
    assert shapely.area(shapely.intersection(blind, shapely.union_all(cones))) < 1e-12


def test_full_none_and_empty():
    cams = pd.DataFrame(
        {"lon": [LON0], "lat": [LAT0], "azimuth": [0.0], "fov": [360.0], "range_m": [500.0]}
    )
    inside = shapely.box(LON0 - 50 * M, LAT0 - 50 * M, LON0 + 50 * M, LAT0 + 50 * M)
    far = shapely.box(LON0 + 0.1, LAT0, LON0 + 0.11, LAT0 + 0.01)
    got = coverage([inside, far, None, shapely.Polygon()], cams)
    assert got[0] == pytest.approx(1.0)
    assert got[1] == 0.0
    assert np.isnan(got[2]) and np.isnan(got[3])
    assert blind_spots(inside, cams).is_empty
    assert blind_spots(far, cams).equals(far)
    assert coverage([inside], cams.iloc[:0])[0] == 0.0


def test_accepts_prebuilt_cones_and_counts_overlaps_once():
    cams = pd.DataFrame(
        {
            "lon": [LON0, LON0],
            "lat": [LAT0, LAT0],
            "azimuth": [0.0, 0.0],
            "fov": [360.0, 360.0],
            "range_m": [100.0, 100.0],
        }
    )
    grid = shapely.box(LON0, LAT0 - 200 * M, LON0 + 400 * M, LAT0 + 200 * M)
    a = coverage([grid], cams)
    b = coverage([grid], camera_sectors(cams))
    c = coverage([grid], cams.iloc[:1])
    # a camera table gives true arcs, prebuilt cones their 5-degree chords (0.2 % smaller)
    assert a[0] == pytest.approx(b[0], abs=0.005) and a[0] == pytest.approx(c[0], abs=1e-9)


@pytest.mark.parametrize("azimuth", [0.0, 37.0, 90.0, 180.0, 270.0, 333.0])
@pytest.mark.parametrize("fov", [30.0, 90.0, 180.0, 200.0, 300.0, 360.0])
def test_single_cone_matches_the_analytic_area(azimuth, fov):
    cams = pd.DataFrame(
        {"lon": [LON0], "lat": [LAT0], "azimuth": [azimuth], "fov": [fov], "range_m": [150.0]}
    )
    crs = local_metric_crs(LON0, LAT0)
    square_m = shapely.box(-200, -200, 200, 200)
    grid = transform_geometries(square_m, crs, "wgs84")
    got = coverage([grid], cams)[0]
    assert got == pytest.approx(fov / 360 * np.pi * 150**2 / 400**2, abs=0.003)
