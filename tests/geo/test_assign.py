"""Tests for geo.assign: exact agreement with a shapely covers oracle (lowest index wins)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import GridIndex, assign_points
from tests.geo.awkward import AWKWARD_SETS, LEFT, RIGHT, covers_oracle, probe_points


@pytest.mark.parametrize("name", sorted(AWKWARD_SETS))
@pytest.mark.parametrize("max_cells", [64, 10_000, 1_000_000])
def test_awkward_sets_match_oracle(name, max_cells):
    geoms = AWKWARD_SETS[name]
    lon, lat = probe_points(geoms)
    index = GridIndex(geoms, max_cells=max_cells)
    np.testing.assert_array_equal(index.assign(lon, lat), covers_oracle(geoms, lon, lat))


def test_shared_edge_goes_to_lowest_index():
    x_edge = LEFT.bounds[2]
    assert assign_points([x_edge], [39.105], [LEFT, RIGHT]).tolist() == [0]
    assert assign_points([x_edge], [39.105], [RIGHT, LEFT]).tolist() == [0]
    assert assign_points([x_edge], [39.105], [None, RIGHT, LEFT]).tolist() == [1]


def test_nan_and_outside_give_minus_one_and_shape_is_kept():
    lon = np.array([[np.nan, 0.0], [116.105, 116.105]])
    lat = np.array([[39.105, 0.0], [np.nan, 39.105]])
    out = assign_points(lon, lat, [LEFT])
    assert out.shape == (2, 2)
    assert out.tolist() == [[-1, -1], [-1, 0]]


def test_accepts_geoseries_and_rejects_other_crs():
    series = gpd.GeoSeries([LEFT, RIGHT], index=[10, 20], crs="EPSG:4326")
    assert assign_points([116.115], [39.105], series).tolist() == [1]  # positions, not labels
    with pytest.raises(ValueError, match="EPSG:4326"):
        GridIndex(series.to_crs(3857))
    with pytest.raises(ValueError, match="Polygon"):
        GridIndex([shapely.Point(0, 0)])
    with pytest.raises(ValueError, match="shapes"):
        assign_points([1.0, 2.0], [1.0], [LEFT])


def test_no_grids_at_all():
    assert assign_points([116.0, np.nan], [39.0, 1.0], []).tolist() == [-1, -1]
    assert assign_points([116.0], [39.0], [None, shapely.Polygon()]).tolist() == [-1]


# Coordinates on a coarse dyadic lattice make exact collinearity, shared vertices and points
# exactly on edges common, which is where a fast test can disagree with GEOS.
LATTICE = 1.0 / 64.0
lattice_xy = st.tuples(st.integers(0, 64), st.integers(0, 64)).map(
    lambda t: (116.0 + t[0] * LATTICE, 39.0 + t[1] * LATTICE)
)


@st.composite
def voronoi_tilings(draw):
    seeds = draw(st.lists(lattice_xy, min_size=2, max_size=25, unique=True))
    env = shapely.box(116.0, 39.0, 117.0, 40.0)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env))
    cells = shapely.intersection(cells, env)
    return [c for c in cells if c.geom_type == "Polygon" and not c.is_empty]


@st.composite
def star_polygons(draw):
    """Random simple star-shaped polygons, some with a hole, possibly overlapping."""
    polys = []
    for _ in range(draw(st.integers(1, 6))):
        cx, cy = draw(lattice_xy)
        n = draw(st.integers(3, 12))
        radii = draw(st.lists(st.floats(0.02, 0.3), min_size=n, max_size=n))
        ang = np.sort(draw(st.lists(st.floats(0, 2 * np.pi), min_size=n, max_size=n, unique=True)))
        ring = np.column_stack([cx + np.cos(ang) * radii, cy + np.sin(ang) * radii])
        shell = shapely.Polygon(ring)
        if not shell.is_valid or shell.area == 0:
            continue
        if draw(st.booleans()):
            hole = shapely.Point(cx, cy).buffer(min(radii) * 0.5, quad_segs=4)
            holed = shapely.Polygon(shell.exterior, [hole.exterior])
            if holed.is_valid:  # grids are valid polygons; a hole poking out is not
                shell = holed
        polys.append(shell)
    return polys


def _check(geoms, data, max_cells):
    lon, lat = probe_points(geoms, n_random=200, seed=data.draw(st.integers(0, 10_000)))
    extra = data.draw(st.lists(lattice_xy, max_size=40))
    if extra:
        e = np.array(extra)
        lon = np.concatenate([lon, e[:, 0]])
        lat = np.concatenate([lat, e[:, 1]])
    got = GridIndex(geoms, max_cells=max_cells).assign(lon, lat)
    np.testing.assert_array_equal(got, covers_oracle(geoms, lon, lat))


@settings(max_examples=60, deadline=None)
@given(voronoi_tilings(), st.data(), st.sampled_from([16, 500, 20_000]))
def test_voronoi_tilings_match_oracle(geoms, data, max_cells):
    _check(geoms, data, max_cells)


@settings(max_examples=60, deadline=None)
@given(star_polygons(), st.data(), st.sampled_from([16, 500, 20_000]))
def test_star_polygons_match_oracle(geoms, data, max_cells):
    _check(geoms, data, max_cells)


def test_index_reports_memory():
    index = GridIndex([LEFT, RIGHT])
    assert index.n_grids == 2
    assert index.nbytes >= index.raster.nbytes > 0


@pytest.mark.parametrize("name", ["holed_with_enclave", "shared_edges", "sliver", "multipolygon"])
def test_points_on_raster_cell_boundaries_match_oracle(name):
    # Points exactly on (and one ulp either side of) the index's own cell lines: a rounding
    # slip into the neighbouring cell must never change the answer.
    geoms = AWKWARD_SETS[name]
    index = GridIndex(geoms, max_cells=2_000)
    dx, dy = 1 / index.inv_dx, 1 / index.inv_dy
    xs = index.x0 + np.arange(index.ncols + 1) * dx
    ys = index.y0 + np.arange(index.nrows + 1) * dy
    gx, gy = np.meshgrid(xs, ys)
    lon = np.concatenate(
        [gx.ravel(), np.nextafter(gx.ravel(), np.inf), np.nextafter(gx.ravel(), -np.inf)]
    )
    lat = np.concatenate(
        [gy.ravel(), np.nextafter(gy.ravel(), -np.inf), np.nextafter(gy.ravel(), np.inf)]
    )
    np.testing.assert_array_equal(index.assign(lon, lat), covers_oracle(geoms, lon, lat))
