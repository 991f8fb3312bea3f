"""Shared awkward geometries and shapely oracles for the geo tests (EPSG:4326-like degrees)."""

from __future__ import annotations

import numpy as np
import shapely

SQUARE = shapely.box(116.0, 39.0, 116.01, 39.01)
HOLED = shapely.Polygon(
    [(116.0, 39.0), (116.02, 39.0), (116.02, 39.02), (116.0, 39.02)],
    holes=[[(116.005, 39.005), (116.015, 39.005), (116.015, 39.015), (116.005, 39.015)]],
)
MULTI = shapely.MultiPolygon(
    [shapely.box(116.03, 39.0, 116.04, 39.01), shapely.box(116.05, 39.0, 116.06, 39.01)]
)
SLIVER = shapely.Polygon([(116.0, 39.03), (116.05, 39.03), (116.05, 39.0300001)])
TRIANGLE = shapely.Polygon([(116.0, 39.04), (116.013, 39.052), (116.007, 39.061)])
# Two grids sharing an edge and a third sharing only a vertex: exercises the tie rule.
LEFT = shapely.box(116.1, 39.1, 116.11, 39.11)
RIGHT = shapely.box(116.11, 39.1, 116.12, 39.11)
CORNER = shapely.box(116.12, 39.11, 116.13, 39.12)
# Hole filled by another grid (an enclave), and an overlapping pair.
ENCLAVE = shapely.box(116.005, 39.005, 116.015, 39.015)
OVERLAP_A = shapely.box(116.2, 39.2, 116.21, 39.21)
OVERLAP_B = shapely.box(116.205, 39.205, 116.215, 39.215)
EMPTY = shapely.Polygon()

AWKWARD_SETS = {
    "square": [SQUARE],
    "holed_with_enclave": [HOLED, ENCLAVE],
    "enclave_first": [ENCLAVE, HOLED],
    "multipolygon": [MULTI, SQUARE],
    "sliver": [SLIVER, TRIANGLE],
    "shared_edges": [LEFT, RIGHT, CORNER],
    "shared_edges_reversed": [CORNER, RIGHT, LEFT],
    "overlap": [OVERLAP_B, OVERLAP_A],
    "with_empty_and_none": [EMPTY, SQUARE, None, RIGHT],
}


def probe_points(geoms, n_random: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return lon, lat arrays: every vertex, edge midpoints, random points in the bbox, NaNs."""
    geoms = np.asarray(geoms, dtype=object)
    real = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    coords = shapely.get_coordinates(shapely.boundary(real)) if len(real) else np.zeros((0, 2))
    mids = (coords[:-1] + coords[1:]) / 2 if len(coords) > 1 else np.zeros((0, 2))
    rng = np.random.default_rng(seed)
    if len(real):
        b = shapely.total_bounds(real)
        pad = 0.1 * max(b[2] - b[0], b[3] - b[1], 1e-6)
        rand = rng.uniform(b[:2] - pad, b[2:] + pad, (n_random, 2))
        # points on the grid lines of the bbox (shared x/y with vertices)
        xs = rng.choice(coords[:, 0], 50)
        ys = rng.uniform(b[1], b[3], 50)
        on_lines = np.column_stack([xs, ys])
    else:
        rand = rng.uniform(0, 1, (n_random, 2))
        on_lines = np.zeros((0, 2))
    nan = np.array([[np.nan, 39.0], [116.0, np.nan], [np.nan, np.nan]])
    pts = np.vstack([coords, mids, rand, on_lines, nan])
    return pts[:, 0].copy(), pts[:, 1].copy()


def covers_oracle(geoms, lon, lat) -> np.ndarray:
    """Return the lowest index i with shapely.covers(geoms[i], point), else -1 (NaN -> -1)."""
    geoms = np.asarray(geoms, dtype=object)
    pts = shapely.points(np.column_stack([lon, lat]))
    out = np.full(len(lon), -1, dtype=np.int64)
    for i in range(len(geoms) - 1, -1, -1):
        if geoms[i] is None or geoms[i].is_empty:
            continue
        hit = shapely.covers(geoms[i], pts)
        hit &= np.isfinite(lon) & np.isfinite(lat)
        out[hit] = i
    return out
