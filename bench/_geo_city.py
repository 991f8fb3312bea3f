"""Synthetic city for the geo benchmarks: Voronoi grids, clustered points, cameras.

Built from numpy/shapely and geo/ only (no dependency on layers/). Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from geo.measure import metres_per_degree

CENTRE = (118.78, 32.06)  # lon, lat (a Nanjing-like latitude)
HALF_KM = 15.0  # the city is a 30 x 30 km square


def _deg_per_km() -> tuple[float, float]:
    m_lon, m_lat = metres_per_degree(CENTRE[1])
    return 1000.0 / m_lon, 1000.0 / m_lat


def city_bounds() -> tuple[float, float, float, float]:
    """Return (minx, miny, maxx, maxy) of the synthetic city in EPSG:4326."""
    dlon, dlat = _deg_per_km()
    return (
        CENTRE[0] - HALF_KM * dlon,
        CENTRE[1] - HALF_KM * dlat,
        CENTRE[0] + HALF_KM * dlon,
        CENTRE[1] + HALF_KM * dlat,
    )


def _clustered_lonlat(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return n points: 50 % around downtown (sigma 3 km), 30 % in 40 hot spots, 20 % uniform."""
    dlon, dlat = _deg_per_km()
    n_down = n // 2
    n_hot = (3 * n) // 10
    n_uni = n - n_down - n_hot
    xs = [rng.normal(0, 3.0, n_down)]
    ys = [rng.normal(0, 3.0, n_down)]
    hot = rng.uniform(-12, 12, (40, 2))
    which = rng.integers(0, 40, n_hot)
    xs.append(hot[which, 0] + rng.normal(0, 0.4, n_hot))
    ys.append(hot[which, 1] + rng.normal(0, 0.4, n_hot))
    xs.append(rng.uniform(-HALF_KM, HALF_KM, n_uni))
    ys.append(rng.uniform(-HALF_KM, HALF_KM, n_uni))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    # Redraw points that fall outside the city uniformly inside it (clipping would put them
    # exactly on the outer boundary, where "within" and "covers" legitimately differ).
    out = (np.abs(x) >= HALF_KM) | (np.abs(y) >= HALF_KM)
    x[out] = rng.uniform(-HALF_KM, HALF_KM, out.sum()) * 0.999
    y[out] = rng.uniform(-HALF_KM, HALF_KM, out.sum()) * 0.999
    perm = rng.permutation(n)
    return CENTRE[0] + x[perm] * dlon, CENTRE[1] + y[perm] * dlat


def voronoi_city(n_grids: int = 10_000, seed: int = 42) -> np.ndarray:
    """Return ~n_grids Voronoi grid polygons (EPSG:4326) tiling the city, denser downtown."""
    rng = np.random.default_rng(seed)
    lon, lat = _clustered_lonlat(rng, n_grids)
    env = shapely.box(*city_bounds())
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(np.column_stack([lon, lat])), extend_to=env)
    )
    cells = shapely.intersection(cells, env)
    cells = cells[~shapely.is_empty(cells) & (shapely.get_type_id(cells) == 3)]
    return cells


def clustered_points(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return n clustered incident points (lon, lat arrays, EPSG:4326) inside the city."""
    return _clustered_lonlat(np.random.default_rng(seed), n)


def cameras(n: int = 12_000, seed: int = 7) -> pd.DataFrame:
    """Return a camera table (lon, lat, azimuth, fov, range_m), clustered like incidents.

    One camera in ten is a 360-degree dome.
    """
    rng = np.random.default_rng(seed)
    lon, lat = _clustered_lonlat(rng, n)
    fov = rng.choice([45.0, 60.0, 90.0, 120.0], n)
    fov[rng.random(n) < 0.1] = 360.0
    return pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "azimuth": rng.uniform(0, 360, n),
            "fov": fov,
            "range_m": rng.uniform(30, 150, n),
        }
    )
