"""Nested Voronoi tilings of a city, denser where the density model says people live.

Geometry here is in a local *equirectangular* plane in metres (``Plane``): an affine image of
WGS-84 longitude/latitude. Because the map is affine, straight edges stay straight and a vertex
lying on a neighbour's edge stays on it when converted back to degrees, so a tiling that is
exact in the plane is exact in WGS-84 too (a projective CRS such as azimuthal-equidistant would
bend edges and open centimetre gaps at T-junctions). The plane's scale error, under 1 % across
a city, only shapes the cells; stored areas are measured in a proper metric CRS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely

from geo.measure import metres_per_degree


@dataclass(frozen=True)
class Plane:
    """A local equirectangular plane in metres centred on (lon0, lat0) in WGS-84 degrees."""

    lon0: float
    lat0: float

    @property
    def kx(self) -> float:
        """Return metres per degree of longitude at ``lat0``."""
        return metres_per_degree(self.lat0)[0]

    @property
    def ky(self) -> float:
        """Return metres per degree of latitude at ``lat0``."""
        return metres_per_degree(self.lat0)[1]

    def to_lonlat(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Return WGS-84 (lon, lat) arrays for plane (x, y) metres."""
        return self.lon0 + np.asarray(x, float) / self.kx, self.lat0 + np.asarray(
            y, float
        ) / self.ky

    def from_lonlat(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Return plane (x, y) metre arrays for WGS-84 (lon, lat) degrees."""
        return (np.asarray(lon, float) - self.lon0) * self.kx, (
            np.asarray(lat, float) - self.lat0
        ) * self.ky

    def geoms_to_lonlat(self, geoms):
        """Return the geometries converted from plane metres to WGS-84 degrees."""
        scale = np.array([1.0 / self.kx, 1.0 / self.ky])
        offset = np.array([self.lon0, self.lat0])
        return shapely.transform(geoms, lambda xy: xy * scale + offset)

    def geoms_from_lonlat(self, geoms):
        """Return the geometries converted from WGS-84 degrees to plane metres."""
        scale = np.array([self.kx, self.ky])
        offset = np.array([self.lon0, self.lat0])
        return shapely.transform(geoms, lambda xy: (xy - offset) * scale)


@dataclass
class DensityModel:
    """Relative activity density (people, grids, incidents) over the plane, per km².

    A sum of exponential kernels ``amp * exp(-d / scale)`` (the city core and the seats of
    outlying districts) plus a rural ``floor``; inside ``voids`` (a lake) it is multiplied by
    ``void_factor``.
    """

    centres: np.ndarray  # (k, 2) metres
    amplitudes: np.ndarray  # (k,)
    scales: np.ndarray  # (k,) metres
    floor: float = 0.05
    voids: shapely.Geometry | None = None
    void_factor: float = 0.01
    _void_prepared: bool = field(default=False, repr=False)

    def __call__(self, x, y) -> np.ndarray:
        """Return the density at plane points (x, y)."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        d = np.hypot(x[..., None] - self.centres[:, 0], y[..., None] - self.centres[:, 1])
        g = (self.amplitudes * np.exp(-d / self.scales)).sum(axis=-1) + self.floor
        if self.voids is not None:
            g = np.where(self.in_voids(x, y), g * self.void_factor, g)
        return g

    def in_voids(self, x, y) -> np.ndarray:
        """Return True where plane points (x, y) fall in a void (water)."""
        if self.voids is None:
            return np.zeros(np.shape(x), bool)
        if not self._void_prepared:
            shapely.prepare(self.voids)
            self._void_prepared = True
        return shapely.contains_xy(self.voids, x, y)

    def sample(
        self, rng: np.random.Generator, n: int, region: shapely.Geometry
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``n`` plane points inside ``region`` drawn with probability ∝ density.

        Exact mixture sampling: each kernel is a 2-D exponential (radius ~ Gamma(2, scale)),
        the floor is uniform over the region's bounding box; points outside the region are
        dropped, which restricts the mixture to the region without changing its shape.
        """
        shapely.prepare(region)
        minx, miny, maxx, maxy = region.bounds
        masses = np.append(
            self.amplitudes * 2 * np.pi * self.scales**2, self.floor * (maxx - minx) * (maxy - miny)
        )
        probs = masses / masses.sum()
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        have = 0
        accept = 0.5
        while have < n:
            m = int((n - have) / max(accept, 0.01) * 1.2) + 64
            comp = rng.choice(len(probs), size=m, p=probs)
            r = rng.gamma(2.0, 1.0, size=m)
            theta = rng.uniform(0, 2 * np.pi, size=m)
            is_floor = comp == len(self.amplitudes)
            kc = np.minimum(comp, len(self.amplitudes) - 1)
            x = np.where(
                is_floor,
                rng.uniform(minx, maxx, size=m),
                self.centres[kc, 0] + r * self.scales[kc] * np.cos(theta),
            )
            y = np.where(
                is_floor,
                rng.uniform(miny, maxy, size=m),
                self.centres[kc, 1] + r * self.scales[kc] * np.sin(theta),
            )
            keep = shapely.contains_xy(region, x, y)
            if self.voids is not None:
                keep &= ~self.in_voids(x, y) | (rng.random(m) < self.void_factor)
            accept = max(keep.mean(), 0.001)
            xs.append(x[keep])
            ys.append(y[keep])
            have += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def uniform_points(
    rng: np.random.Generator, geom: shapely.Geometry, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` points drawn uniformly inside ``geom`` (rejection from its bounding box)."""
    shapely.prepare(geom)
    minx, miny, maxx, maxy = geom.bounds
    fill = max(geom.area / max((maxx - minx) * (maxy - miny), 1e-12), 0.01)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    while have < n:
        m = int((n - have) / fill * 1.3) + 16
        x = rng.uniform(minx, maxx, m)
        y = rng.uniform(miny, maxy, m)
        keep = shapely.contains_xy(geom, x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def allocate(total: int, weights: np.ndarray, minimum: int = 1, maximum: int | None = None):
    """Return integer counts summing to ``total`` (or more, to honour ``minimum``) ∝ ``weights``.

    Largest-remainder rounding; every count is within [minimum, maximum].
    """
    w = np.asarray(weights, float)
    k = len(w)
    if k == 0:
        return np.zeros(0, int)
    hi = maximum if maximum is not None else max(total, minimum)
    total = min(max(total, k * minimum), k * hi)
    w = np.where(w > 0, w, 1e-9)
    counts = np.full(k, minimum, int)
    free = np.ones(k, bool)
    # Repeatedly share what is left among the entries not yet capped.
    for _ in range(k + 1):
        left = total - counts.sum()
        if left <= 0 or not free.any():
            break
        share = left * w * free / (w * free).sum()
        add = np.floor(share).astype(int)
        rem = left - add.sum()
        order = np.argsort(-(share - add), kind="stable")
        add[order[:rem]] += 1
        new = np.minimum(counts + add, hi)
        free = new < hi
        counts = new
    return counts


@dataclass
class Partition:
    """A parent polygon split into children: geometries, generator seeds, point labels."""

    children: list[shapely.Geometry]
    seeds: np.ndarray  # (n, 2) plane metres, each inside its child
    labels: np.ndarray  # child index of each input point


def _nearest(centres: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Return the index of the nearest centre for each point (brute force when small)."""
    if len(centres) * len(pts) <= 4_000_000:
        d2 = (pts[:, None, 0] - centres[None, :, 0]) ** 2 + (
            pts[:, None, 1] - centres[None, :, 1]
        ) ** 2
        return np.argmin(d2, axis=1)
    from scipy.spatial import cKDTree  # only for big cases: scipy is slow to import

    return cKDTree(centres).query(pts)[1]


def _kmeans_seeds(rng: np.random.Generator, pts: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Return ``k`` seeds among ``pts`` spread like a density-weighted centroidal tessellation.

    Lloyd iterations on the points, then each centroid is snapped to its cluster's member
    nearest to it, so every seed is one of the input points (hence inside the parent, even
    where the parent is not convex and a centroid would fall outside).
    """
    centroids = pts[rng.choice(len(pts), size=k, replace=False)]
    for _ in range(iters):
        lab = _nearest(centroids, pts)
        counts = np.bincount(lab, minlength=k)
        sx = np.bincount(lab, weights=pts[:, 0], minlength=k)
        sy = np.bincount(lab, weights=pts[:, 1], minlength=k)
        empty = counts == 0
        nonempty = ~empty
        centroids[nonempty, 0] = sx[nonempty] / counts[nonempty]
        centroids[nonempty, 1] = sy[nonempty] / counts[nonempty]
        if empty.any():
            centroids[empty] = pts[rng.choice(len(pts), size=int(empty.sum()), replace=False)]
    lab = _nearest(centroids, pts)
    d2 = ((pts - centroids[lab]) ** 2).sum(axis=1)
    order = np.lexsort((d2, lab))
    first = np.ones(len(order), bool)
    first[1:] = lab[order][1:] != lab[order][:-1]
    members = order[first]  # nearest member of each non-empty cluster
    seeds = pts[members]
    if len(seeds) < k:  # clusters that ended empty: take unused points
        unused = np.setdiff1d(np.arange(len(pts)), members)
        extra = pts[rng.choice(unused, size=k - len(seeds), replace=False)]
        seeds = np.vstack([seeds, extra])
    return seeds


def _polygon_parts(geom: shapely.Geometry) -> np.ndarray:
    parts = shapely.get_parts(geom)
    return parts[shapely.get_type_id(parts) == 3]


def _absorb_exclaves(children: list, seeds: np.ndarray, parent_area: float) -> list:
    """Return children where each disconnected piece without the seed joins a neighbour.

    A convex Voronoi cell clipped to a non-convex parent can fall apart; a piece cut off from
    its seed is handed to the sibling sharing the longest border with it (pieces touching no
    sibling, e.g. an island of a multi-part parent, stay).
    """
    keep: list[list] = []
    movers: list[tuple[int, shapely.Geometry]] = []
    for i, child in enumerate(children):
        parts = _polygon_parts(child)
        if len(parts) <= 1:
            keep.append(list(parts))
            continue
        seed_pt = shapely.points(seeds[i])
        has_seed = shapely.intersects(parts, seed_pt)
        main = int(np.argmax(has_seed)) if has_seed.any() else int(np.argmax(shapely.area(parts)))
        keep.append([parts[main]])
        movers.extend((i, p) for j, p in enumerate(parts) if j != main)
    if not movers:
        return [shapely.union_all(k) if len(k) > 1 else k[0] for k in keep]
    whole = np.array([shapely.union_all(k) if len(k) > 1 else k[0] for k in keep])
    tol = max(math.sqrt(parent_area) * 1e-9, 1e-6)
    for owner, piece in movers:
        near = np.flatnonzero(shapely.dwithin(whole, piece, tol))
        near = near[near != owner]
        if len(near) == 0:
            keep[owner].append(piece)
            continue
        border = shapely.length(
            shapely.intersection(shapely.boundary(piece), shapely.buffer(whole[near], tol * 10))
        )
        target = near[int(np.argmax(border))] if border.max() > 0 else owner
        keep[int(target)].append(piece)
    return [shapely.union_all(k) if len(k) > 1 else k[0] for k in keep]


def partition(
    rng: np.random.Generator,
    parent: shapely.Geometry,
    pts: np.ndarray,
    k: int,
    *,
    iters: int = 8,
    min_points_per_child: int = 6,
) -> Partition:
    """Return ``parent`` (plane metres) split into ``k`` children that tile it exactly.

    ``pts`` are density-distributed points inside the parent; seeds are placed by density-
    weighted Lloyd iterations over them, so children are smaller where points are denser. The
    children are the seeds' Voronoi cells clipped to the parent, with cut-off pieces handed to
    neighbours: pairwise disjoint, and their union is the parent.
    """
    pts = np.asarray(pts, float).reshape(-1, 2)
    if len(pts) < k * min_points_per_child:
        ux, uy = uniform_points(rng, parent, k * min_points_per_child - len(pts))
        pts_all = np.vstack([pts, np.column_stack([ux, uy])])
    else:
        pts_all = pts
    if k <= 1:
        seed = _kmeans_seeds(rng, pts_all, 1, 2)
        return Partition([parent], seed, np.zeros(len(pts), int))
    if len(pts_all) > 200 * k:  # Lloyd on a subsample: same shape, a fraction of the work
        pts_all = pts_all[rng.choice(len(pts_all), size=200 * k, replace=False)]
    seeds = _kmeans_seeds(rng, pts_all, k, iters)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=parent, ordered=True)
    )
    children = list(shapely.intersection(cells, parent))
    children = _absorb_exclaves(children, seeds, parent.area)
    return Partition(children, seeds, _nearest(seeds, pts) if len(pts) else np.zeros(0, int))
