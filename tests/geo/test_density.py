"""Tests for geo.density against an exact Gaussian kernel sum."""

from __future__ import annotations

import numpy as np
import pytest

from geo import density, from_wgs84, local_metric_crs

BOUNDS = (118.70, 32.00, 118.86, 32.12)


def exact_kde(lon, lat, bounds, shape, h, weights=None):
    """Return the exact kernel sum at pixel centres, distances in a local metric CRS."""
    crs = local_metric_crs([bounds[0], bounds[2]], [bounds[1], bounds[3]])
    px, py = from_wgs84(lon, lat, crs)
    w = np.ones(len(px)) if weights is None else np.asarray(weights)
    ny, nx = shape
    xs = bounds[0] + (np.arange(nx) + 0.5) * (bounds[2] - bounds[0]) / nx
    ys = bounds[1] + (np.arange(ny) + 0.5) * (bounds[3] - bounds[1]) / ny
    gx, gy = np.meshgrid(xs, ys)
    cx, cy = from_wgs84(gx.ravel(), gy.ravel(), crs)
    d2 = (cx[:, None] - px[None, :]) ** 2 + (cy[:, None] - py[None, :]) ** 2
    return ((np.exp(-0.5 * d2 / h**2) * w).sum(1) / (2 * np.pi * h**2)).reshape(shape)


def clustered(n, seed=0):
    rng = np.random.default_rng(seed)
    lon = np.concatenate(
        [rng.normal(118.78, 0.01, n // 2), rng.uniform(118.72, 118.84, n - n // 2)]
    )
    lat = np.concatenate([rng.normal(32.06, 0.01, n // 2), rng.uniform(32.02, 32.10, n - n // 2)])
    return lon, lat


@pytest.mark.parametrize(
    ("shape", "h"),
    [((48, 64), 400.0), ((48, 64), 150.0), ((96, 128), 300.0), ((40, 40), 60.0)],
    ids=["coarse-wide", "px-larger-than-h", "fine", "tiny-bandwidth"],
)
def test_max_error_under_one_percent_of_peak(shape, h):
    lon, lat = clustered(400)
    got = density(lon, lat, BOUNDS, shape, h)
    exact = exact_kde(lon, lat, BOUNDS, shape, h)
    assert got.shape == shape
    assert np.abs(got - exact).max() <= 0.01 * exact.max()


def test_weights_and_nan_are_handled():
    lon, lat = clustered(200, seed=1)
    w = np.random.default_rng(2).uniform(0, 3, 200)
    lon[:5] = np.nan
    w[5:8] = np.nan
    ok = np.isfinite(lon) & np.isfinite(w)
    got = density(lon, lat, BOUNDS, (48, 64), 400.0, weights=w)
    exact = exact_kde(lon[ok], lat[ok], BOUNDS, (48, 64), 400.0, weights=w[ok])
    assert np.abs(got - exact).max() <= 0.01 * exact.max()


def test_mass_is_conserved_and_row_zero_is_south():
    lon = np.array([118.78])
    lat = np.array([32.01])  # near the southern edge
    got = density(lon, lat, BOUNDS, (60, 80), 300.0)
    assert np.unravel_index(got.argmax(), got.shape)[0] < 10
    lon, lat = clustered(100, seed=4)
    got = density(lon, lat, BOUNDS, (120, 160), 300.0)
    px_area = (0.16 / 160 * 111_320 * np.cos(np.radians(32.06))) * (0.12 / 120 * 110_900)
    assert got.sum() * px_area == pytest.approx(100, rel=0.01)


def test_no_points_and_bad_arguments():
    assert not density([], [], BOUNDS, (10, 10), 100.0).any()
    with pytest.raises(ValueError, match="bandwidth"):
        density([118.78], [32.06], BOUNDS, (10, 10), 0)
    with pytest.raises(ValueError, match="shape"):
        density([118.78], [32.06], BOUNDS, (0, 10), 100.0)
    with pytest.raises(ValueError, match="bounds"):
        density([118.78], [32.06], (1, 1, 0, 2), (10, 10), 100.0)
    with pytest.raises(ValueError, match="same length"):
        density([118.78], [32.06, 32.0], BOUNDS, (10, 10), 100.0)


def test_points_at_and_beyond_the_edges_match_exact():
    # just inside each edge, exactly on a corner, and just outside the bounds
    lon = np.array([118.7001, 118.8599, 118.78, 118.78, 118.70, 118.695, 118.865])
    lat = np.array([32.06, 32.06, 32.0001, 32.1199, 32.00, 32.06, 32.05])
    got = density(lon, lat, BOUNDS, (48, 64), 400.0)
    exact = exact_kde(lon, lat, BOUNDS, (48, 64), 400.0)
    assert np.abs(got - exact).max() <= 0.01 * exact.max()
