"""Flat ring arrays for numba kernels and a robust point-in-polygon test (private)."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import shapely

# Shewchuk's orient2d fast-filter bound is (3 + 16 eps) * eps ~ 3.3e-16; a larger bound only
# sends more near-degenerate cases to the exact (shapely/GEOS) fallback, never a wrong answer.
_ORIENT_ERRBOUND = 1e-15


@dataclass(frozen=True)
class FlatRings:
    """Polygon rings flattened into CSR arrays (coordinates in the caller's CRS).

    ``poly_ring_start[i]:poly_ring_start[i+1]`` are the rings (exterior and holes, all parts) of
    polygon i; ``ring_coord_start[r]:ring_coord_start[r+1]`` the closed coordinate run of ring r.
    """

    xs: np.ndarray
    ys: np.ndarray
    ring_coord_start: np.ndarray
    ring_poly: np.ndarray
    poly_ring_start: np.ndarray

    @property
    def n_polys(self) -> int:
        return len(self.poly_ring_start) - 1


def flatten_polygons(geoms: np.ndarray) -> FlatRings:
    """Return the rings of an array of (Multi)Polygons as flat CSR arrays.

    None and empty geometries get no rings (so nothing is ever inside them).
    """
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    parts, part_geom = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    ring_poly = part_geom[ring_part].astype(np.int64)
    n_rings = len(rings)
    ring_coord_start = np.zeros(n_rings + 1, dtype=np.int64)
    np.cumsum(np.bincount(coord_ring, minlength=n_rings), out=ring_coord_start[1:])
    poly_ring_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ring_poly, minlength=n), out=poly_ring_start[1:])
    return FlatRings(
        xs=np.ascontiguousarray(coords[:, 0], dtype=np.float64),
        ys=np.ascontiguousarray(coords[:, 1], dtype=np.float64),
        ring_coord_start=ring_coord_start,
        ring_poly=ring_poly,
        poly_ring_start=poly_ring_start,
    )


@numba.njit(cache=True, inline="always")
def _orient_sign(ax, ay, bx, by, px, py):
    """Return +1 if p is left of a->b, -1 if right, 0 if the float sign is not certain."""
    detleft = (ax - px) * (by - py)
    detright = (ay - py) * (bx - px)
    det = detleft - detright
    bound = _ORIENT_ERRBOUND * (abs(detleft) + abs(detright))
    if det > bound:
        return 1
    if -det > bound:
        return -1
    return 0


@numba.njit(cache=True)
def locate_point(px, py, poly, poly_ring_start, ring_coord_start, xs, ys):
    """Return 1 if (px, py) is certainly inside polygon ``poly``, 0 if certainly outside,
    -1 if it may lie on the boundary (caller must decide exactly, e.g. with GEOS).

    Even-odd ray crossing over all rings, with a filtered orientation test so that every
    decision is certain; boundary points always come back as -1.
    """
    crossings = 0
    for r in range(poly_ring_start[poly], poly_ring_start[poly + 1]):
        for k in range(ring_coord_start[r], ring_coord_start[r + 1] - 1):
            x1 = xs[k]
            y1 = ys[k]
            x2 = xs[k + 1]
            y2 = ys[k + 1]
            above1 = y1 > py
            above2 = y2 > py
            if above1 == above2:
                # Only a vertex or a horizontal edge at py can hold p here.
                if y1 == py or y2 == py:
                    if min(x1, x2) <= px <= max(x1, x2):
                        return -1
                continue
            if px < min(x1, x2):
                crossings += 1
                continue
            if px > max(x1, x2):
                continue
            if above2:  # orient the edge upwards so "left of it" means "crossing to the right"
                s = _orient_sign(x1, y1, x2, y2, px, py)
            else:
                s = _orient_sign(x2, y2, x1, y1, px, py)
            if s == 0:
                return -1
            if s > 0:
                crossings += 1
    return crossings & 1
