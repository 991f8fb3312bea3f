"""Point-in-grid assignment: which grid polygon holds each point.

Technique: a raster of grid ids over the city (about 5 m cells by default). A cell that no
polygon boundary touches lies wholly inside one polygon (or outside all), so its points get
the cell's id with one array gather. A cell that some boundary touches keeps a short list of
candidate polygons; its points get an exact even-odd ray-crossing test (numba) whose
orientation decisions are filtered so they are never wrong, and the rare points whose
decision is uncertain (on or within ~1e-15 relative of a boundary) are decided by GEOS
``covers``. The result therefore equals a shapely ``covers`` oracle exactly.

Tie rule (points on a shared edge or vertex, or overlapping polygons): the point gets the
LOWEST index among the polygons that cover it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pyproj
import shapely
from numba import prange
from numpy.typing import ArrayLike, NDArray

from geo._rings import FlatRings, flatten_polygons, locate_point
from geo.measure import metres_per_degree

__all__ = ["GridIndex", "assign_points"]

_PAD = 1e-3  # cells; far above the ~1e-10 rounding of cell-index arithmetic
_NEEDS_GEOS = -2


def _as_polygon_array(grids) -> np.ndarray:
    """Return grids as a numpy object array of geometries, checking any attached CRS."""
    crs = getattr(grids, "crs", None)
    if crs is not None and pyproj.CRS.from_user_input(crs) != pyproj.CRS.from_epsg(4326):
        raise ValueError(f"grids must be in EPSG:4326 (WGS-84 lon/lat), got crs {crs}")
    geoms = np.asarray(getattr(grids, "values", grids), dtype=object)
    if geoms.ndim != 1:
        geoms = geoms.reshape(-1)
    types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, [-1, 3, 6])  # missing, Polygon, MultiPolygon
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"grids must be Polygon or MultiPolygon; item {i} is {geoms[i].geom_type}")
    return geoms


@numba.njit(cache=True)
def _mark_edges(rings_xs, rings_ys, ring_coord_start, ring_poly, x0, y0, inv_dx, inv_dy,
                nrows, ncols, pad, out_cell, out_poly, write):  # fmt: skip
    """Count (and with write=True record) every (cell, polygon) pair where an edge touches
    the cell padded by ``pad`` cells. Return the count."""
    count = 0
    for r in range(len(ring_coord_start) - 1):
        poly = ring_poly[r]
        for k in range(ring_coord_start[r], ring_coord_start[r + 1] - 1):
            u1 = (rings_xs[k] - x0) * inv_dx
            v1 = (rings_ys[k] - y0) * inv_dy
            u2 = (rings_xs[k + 1] - x0) * inv_dx
            v2 = (rings_ys[k + 1] - y0) * inv_dy
            vlo = min(v1, v2)
            vhi = max(v1, v2)
            r0 = max(int(math.floor(vlo - pad)), 0)
            r1 = min(int(math.floor(vhi + pad)), nrows - 1)
            for row in range(r0, r1 + 1):
                if v1 == v2:
                    ua = min(u1, u2)
                    ub = max(u1, u2)
                else:
                    a = max(vlo, row - pad)
                    b = min(vhi, row + 1 + pad)
                    ta = (a - v1) / (v2 - v1)
                    tb = (b - v1) / (v2 - v1)
                    ua_ = u1 + ta * (u2 - u1)
                    ub_ = u1 + tb * (u2 - u1)
                    ua = min(ua_, ub_)
                    ub = max(ua_, ub_)
                c0 = max(int(math.floor(ua - pad)), 0)
                c1 = min(int(math.floor(ub + pad)), ncols - 1)
                for col in range(c0, c1 + 1):
                    if write:
                        out_cell[count] = row * ncols + col
                        out_poly[count] = poly
                    count += 1
    return count


@numba.njit(cache=True)
def _fill_interiors(rings_xs, rings_ys, ring_coord_start, poly_ring_start, x0, y0, inv_dx,
                    inv_dy, nrows, ncols, flagged, raster, out_cell, out_poly, write):  # fmt: skip
    """Scanline-fill polygon interiors at cell centres.

    Unflagged cells get the polygon id (polygons are visited from the highest index down, so
    the lowest covering index wins); flagged cells whose centre is inside get a (cell, polygon)
    candidate pair instead. Return the number of pairs.
    """
    n_polys = len(poly_ring_start) - 1
    max_edges = 1
    for p in range(n_polys):
        e = 0
        for r in range(poly_ring_start[p], poly_ring_start[p + 1]):
            e += ring_coord_start[r + 1] - ring_coord_start[r]
        max_edges = max(max_edges, e)
    buf = np.empty(max_edges, dtype=np.float64)
    count = 0
    for p in range(n_polys - 1, -1, -1):
        rs = poly_ring_start[p]
        re = poly_ring_start[p + 1]
        if rs == re:
            continue
        vmin = np.inf
        vmax = -np.inf
        for k in range(ring_coord_start[rs], ring_coord_start[re]):
            v = (rings_ys[k] - y0) * inv_dy
            vmin = min(vmin, v)
            vmax = max(vmax, v)
        r0 = max(int(math.floor(vmin - 0.5)), 0)
        r1 = min(int(math.ceil(vmax - 0.5)), nrows - 1)
        for row in range(r0, r1 + 1):
            yc = row + 0.5
            m = 0
            for r in range(rs, re):
                for k in range(ring_coord_start[r], ring_coord_start[r + 1] - 1):
                    v1 = (rings_ys[k] - y0) * inv_dy
                    v2 = (rings_ys[k + 1] - y0) * inv_dy
                    if (v1 > yc) != (v2 > yc):
                        u1 = (rings_xs[k] - x0) * inv_dx
                        u2 = (rings_xs[k + 1] - x0) * inv_dx
                        buf[m] = u1 + (yc - v1) * (u2 - u1) / (v2 - v1)
                        m += 1
            if m < 2:
                continue
            xs_row = np.sort(buf[:m])
            for j in range(0, m - 1, 2):
                c0 = max(int(math.ceil(xs_row[j] - 0.5)), 0)
                c1 = min(int(math.ceil(xs_row[j + 1] - 0.5)) - 1, ncols - 1)
                for col in range(c0, c1 + 1):
                    if flagged[row, col]:
                        if write:
                            out_cell[count] = row * ncols + col
                            out_poly[count] = p
                        count += 1
                    elif write:
                        raster[row, col] = p
    return count


@numba.njit(parallel=True, cache=True)
def _query(lon, lat, x0, y0, inv_dx, inv_dy, nrows, ncols, raster, cell_start, cell_cand,
           poly_ring_start, ring_coord_start, rings_xs, rings_ys, out):  # fmt: skip
    for i in prange(len(lon)):
        fu = (lon[i] - x0) * inv_dx
        fv = (lat[i] - y0) * inv_dy
        if not (fu >= 0.0 and fu < ncols and fv >= 0.0 and fv < nrows):  # also NaN
            out[i] = -1
            continue
        v = raster[int(fv), int(fu)]
        if v >= -1:
            out[i] = v
            continue
        k = -2 - v
        res = -1
        for j in range(cell_start[k], cell_start[k + 1]):
            c = cell_cand[j]
            s = locate_point(lon[i], lat[i], c, poly_ring_start, ring_coord_start, rings_xs,
                             rings_ys)  # fmt: skip
            if s == 1:
                res = c
                break
            if s == -1:
                res = _NEEDS_GEOS
                break
        out[i] = res


class GridIndex:
    """A reusable index answering "which grid holds this point" exactly and fast.

    Parameters
    ----------
    grids : sequence, numpy array or GeoSeries of shapely Polygon/MultiPolygon
        Grid polygons in EPSG:4326 (lon, lat degrees). A GeoSeries with another ``crs`` is
        rejected. Positions (0..n-1), not index labels, identify grids. None/empty entries
        never hold a point. Polygons should be valid; results equal GEOS ``covers``.
    cell_m : float, default 5.0
        Raster cell size in metres (approximate: the raster is in degrees). Smaller cells mean
        fewer points in boundary cells (faster queries) and more memory.
    max_cells : int, default 60_000_000
        Upper bound on raster cells (4 bytes each); the cell grows beyond ``cell_m`` to stay
        under it.

    Notes
    -----
    Build once, query many times (``assign``). A 30 x 30 km city of 10,000 grids at 5 m is
    ~36 M cells (~150 MB) plus candidate lists for the boundary cells.
    """

    def __init__(self, grids, *, cell_m: float = 5.0, max_cells: int = 60_000_000) -> None:
        self.geoms = _as_polygon_array(grids)
        self.rings: FlatRings = flatten_polygons(self.geoms)
        n = len(self.geoms)
        ok = ~(shapely.is_missing(self.geoms) | shapely.is_empty(self.geoms))
        if ok.any():
            b = shapely.bounds(self.geoms[ok])
            xmin, ymin = np.nanmin(b[:, 0]), np.nanmin(b[:, 1])
            xmax, ymax = np.nanmax(b[:, 2]), np.nanmax(b[:, 3])
        else:
            xmin = ymin = 0.0
            xmax = ymax = 1.0
        lat_c = float(np.clip(0.5 * (ymin + ymax), -85.0, 85.0))
        m_lon, m_lat = metres_per_degree(lat_c)
        dx, dy = cell_m / m_lon, cell_m / m_lat
        cells = ((xmax - xmin) / dx + 2) * ((ymax - ymin) / dy + 2)
        if cells > max_cells:
            scale = math.sqrt(cells / max_cells) * 1.01
            dx *= scale
            dy *= scale
        # one empty cell of margin on every side, so out-of-raster means outside every grid
        self.x0 = xmin - dx
        self.y0 = ymin - dy
        self.ncols = int(math.ceil((xmax - xmin) / dx)) + 2
        self.nrows = int(math.ceil((ymax - ymin) / dy)) + 2
        self.inv_dx = 1.0 / dx
        self.inv_dy = 1.0 / dy
        self._build(n)

    def _build(self, n: int) -> None:
        fr = self.rings
        args = (self.x0, self.y0, self.inv_dx, self.inv_dy, self.nrows, self.ncols)
        empty_i = np.empty(0, dtype=np.int64)
        n_edge = _mark_edges(fr.xs, fr.ys, fr.ring_coord_start, fr.ring_poly, *args, _PAD,
                             empty_i, empty_i, False)  # fmt: skip
        edge_cell = np.empty(n_edge, dtype=np.int64)
        edge_poly = np.empty(n_edge, dtype=np.int64)
        _mark_edges(fr.xs, fr.ys, fr.ring_coord_start, fr.ring_poly, *args, _PAD, edge_cell,
                    edge_poly, True)  # fmt: skip
        flagged = np.zeros((self.nrows, self.ncols), dtype=np.bool_)
        flagged.reshape(-1)[edge_cell] = True
        raster = np.full((self.nrows, self.ncols), -1, dtype=np.int32)
        n_fill = _fill_interiors(fr.xs, fr.ys, fr.ring_coord_start, fr.poly_ring_start, *args,
                                 flagged, raster, empty_i, empty_i, False)  # fmt: skip
        fill_cell = np.empty(n_fill, dtype=np.int64)
        fill_poly = np.empty(n_fill, dtype=np.int64)
        _fill_interiors(fr.xs, fr.ys, fr.ring_coord_start, fr.poly_ring_start, *args, flagged,
                        raster, fill_cell, fill_poly, True)  # fmt: skip
        del flagged
        keys = np.concatenate([edge_cell, fill_cell]) * max(n, 1) + np.concatenate(
            [edge_poly, fill_poly]
        )
        del edge_cell, edge_poly, fill_cell, fill_poly
        # sorted by cell, then by polygon index (the tie rule); sort-based unique, because
        # numpy's hash-based np.unique is ~40x slower on these few million int64 keys
        keys.sort()
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
        cells = keys // max(n, 1)
        self.cell_cand = (keys % max(n, 1)).astype(np.int64)
        starts = (
            np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]]))
            if len(cells)
            else np.zeros(0, dtype=np.int64)
        )
        flag_cells = cells[starts]
        self.cell_start = np.append(starts, len(cells)).astype(np.int64)
        raster.reshape(-1)[flag_cells] = -2 - np.arange(len(flag_cells), dtype=np.int32)
        self.raster = raster
        self.n_boundary_cells = len(flag_cells)

    @property
    def n_grids(self) -> int:
        """Return the number of grids (positions 0..n-1)."""
        return len(self.geoms)

    @property
    def nbytes(self) -> int:
        """Return the memory held by the index arrays, in bytes."""
        fr = self.rings
        arrays = [self.raster, self.cell_cand, self.cell_start, fr.xs, fr.ys]
        arrays += [fr.ring_coord_start, fr.ring_poly, fr.poly_ring_start]
        return int(sum(a.nbytes for a in arrays))

    def assign(self, lon: ArrayLike, lat: ArrayLike) -> NDArray[np.int64]:
        """Return the position of the grid covering each WGS-84 point, -1 where none does.

        Parameters
        ----------
        lon, lat : array-like of float
            Point coordinates in EPSG:4326 degrees, same shape. NaN gives -1.

        Returns
        -------
        numpy.ndarray of int64, same shape as ``lon``
            Lowest index among the grids that cover the point (boundary included), else -1.
        """
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        if lon_a.shape != lat_a.shape:
            raise ValueError(f"lon and lat shapes differ: {lon_a.shape} vs {lat_a.shape}")
        flat_lon = np.ascontiguousarray(lon_a.reshape(-1))
        flat_lat = np.ascontiguousarray(lat_a.reshape(-1))
        out = np.empty(flat_lon.shape, dtype=np.int64)
        fr = self.rings
        _query(flat_lon, flat_lat, self.x0, self.y0, self.inv_dx, self.inv_dy, self.nrows,
               self.ncols, self.raster, self.cell_start, self.cell_cand, fr.poly_ring_start,
               fr.ring_coord_start, fr.xs, fr.ys, out)  # fmt: skip
        hard = np.flatnonzero(out == _NEEDS_GEOS)
        if len(hard):
            self._resolve_with_geos(flat_lon, flat_lat, hard, out)
        return out.reshape(lon_a.shape)

    def _resolve_with_geos(self, lon, lat, idx, out) -> None:
        """Decide near-boundary points exactly with GEOS covers (lowest covering index)."""
        cols = ((lon[idx] - self.x0) * self.inv_dx).astype(np.int64)
        rows = ((lat[idx] - self.y0) * self.inv_dy).astype(np.int64)
        ks = -2 - self.raster[rows, cols].astype(np.int64)
        for i, k in zip(idx, ks, strict=True):
            cands = self.cell_cand[self.cell_start[k] : self.cell_start[k + 1]]
            hits = shapely.covers(self.geoms[cands], shapely.Point(lon[i], lat[i]))
            out[i] = cands[np.argmax(hits)] if hits.any() else -1


def assign_points(lon: ArrayLike, lat: ArrayLike, grids) -> NDArray[np.int64]:
    """Return the index of the grid polygon covering each point, -1 where none does.

    Parameters
    ----------
    lon, lat : array-like of float
        EPSG:4326 degrees. NaN coordinates give -1.
    grids : GridIndex, or sequence / GeoSeries of shapely (Multi)Polygons in EPSG:4326
        Pass a prebuilt ``GridIndex`` when querying the same grids more than once; otherwise
        one is built (and thrown away) for this call.

    Returns
    -------
    numpy.ndarray of int64
        Exactly what ``shapely.covers(grids[i], Point(lon, lat))`` says, with the tie rule: on
        a shared edge or vertex (or where grids overlap) the LOWEST covering index wins.
    """
    index = grids if isinstance(grids, GridIndex) else GridIndex(grids)
    return index.assign(lon, lat)
