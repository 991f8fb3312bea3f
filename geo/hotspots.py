"""Hot-spot analysis of per-grid counts: Getis-Ord Gi* over a libpysal neighbourhood.

Gi* (binary weights, the grid itself included) is computed in closed form with one sparse
matrix product: z_i = (sum_j w_ij x_j - mean * W_i) / (S * sqrt((n W_i - W_i^2) / (n - 1))),
with S the population standard deviation of the counts; the same z as esda's
``G_Local(star=True, transform="B")`` (tests compare them), without its per-call cost.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from numpy.typing import ArrayLike
from scipy import stats

from geo.assign import _as_polygon_array
from geo.crs import from_wgs84, local_metric_crs

__all__ = ["hotspots", "neighbourhood_weights"]


def neighbourhood_weights(grids, distance_m: float | None = None) -> sp.csr_matrix:
    """Return the grids' Gi* neighbourhood as a sparse 0/1 matrix, for repeated ``hotspots``.

    Parameters
    ----------
    grids : sequence or GeoSeries of shapely (Multi)Polygons, EPSG:4326
        No None or empty geometries.
    distance_m : float, optional
        None: QUEEN contiguity; a number: a distance band between centroids, in metres.

    Returns
    -------
    scipy.sparse.csr_matrix of float, shape (n, n)
        ``w[i, j] = 1`` when grid j is a neighbour of grid i or j == i (Gi* counts the grid
        itself), in the order of ``grids``. Building it is the costly part of Gi* (polygon
        contiguity); reuse it while the grid shapes stay the same.
    """
    return _star_matrix(_weights(_as_polygon_array(grids), distance_m))


def _star_matrix(w) -> sp.csr_matrix:
    """Return libpysal weights as a binary CSR matrix with the diagonal set (Gi*'s W*)."""
    binary = w.sparse.tocsr().astype(bool) + sp.identity(w.n, format="csr", dtype=bool)
    return binary.astype(np.float64).tocsr()


def _weights(geoms: np.ndarray, distance_m: float | None):
    """Return binary libpysal weights: queen contiguity, or a distance band in metres."""
    import geopandas as gpd
    import libpysal

    with warnings.catch_warnings():
        # islands and disconnected components are legitimate here; Gi* still has the focal
        # observation itself, so libpysal's warnings about them are noise.
        warnings.simplefilter("ignore", UserWarning)
        if distance_m is None:
            return libpysal.weights.Queen.from_dataframe(
                gpd.GeoDataFrame(geometry=geoms), use_index=False, silence_warnings=True
            )
        centroids = np.asarray([g.centroid.coords[0] for g in geoms])
        crs = local_metric_crs(centroids[:, 0], centroids[:, 1])
        x, y = from_wgs84(centroids[:, 0], centroids[:, 1], crs)
        return libpysal.weights.DistanceBand(
            np.column_stack([x, y]), threshold=float(distance_m), binary=True, silence_warnings=True
        )


def hotspots(
    grids,
    counts: ArrayLike,
    *,
    distance_m: float | None = None,
    alpha: float = 0.05,
    weights=None,
) -> pd.DataFrame:
    """Return Getis-Ord Gi* z-scores, p-values and a hot/cold label for each grid.

    Parameters
    ----------
    grids : sequence or GeoSeries of shapely (Multi)Polygons, EPSG:4326
        Must not contain None or empty geometries (every grid needs a neighbourhood).
    counts : array-like of float
        One value per grid (incidents, or any intensity), same order as ``grids``.
    distance_m : float, optional
        Neighbourhood. Default (None): QUEEN contiguity (grids sharing an edge or a vertex).
        A number: a binary DISTANCE BAND, grids whose centroids are within ``distance_m``
        metres (measured in a local metric CRS). Use it when grid polygons do not share
        vertices exactly (digitising gaps), where contiguity finds no neighbours.
    alpha : float, default 0.05
        Two-sided significance level for the ``hotspot`` label.
    weights : scipy.sparse matrix, optional
        The grids' ``neighbourhood_weights`` computed before (``distance_m`` is then unused).

    Returns
    -------
    pandas.DataFrame
        Index: the GeoSeries index, or 0..n-1. Columns ``gi_z`` (Gi* z-score; binary weights
        with the grid itself included, as esda ``G_Local(star=True, transform="B")``),
        ``p_value`` (two-sided, normal approximation), ``hotspot`` ("hot", "cold" or
        "not significant"). z is NaN when all counts are equal.
    """
    geoms = _as_polygon_array(grids)
    y = np.asarray(counts, dtype=np.float64).reshape(-1)
    if len(y) != len(geoms):
        raise ValueError(f"counts has {len(y)} values for {len(geoms)} grids")
    if len(geoms) < 3:
        raise ValueError("hotspots needs at least 3 grids")
    if not np.all(np.isfinite(y)):
        raise ValueError("counts must be finite (no NaN); fill missing grids with 0")
    if (shapely.is_missing(geoms) | shapely.is_empty(geoms)).any():
        raise ValueError("grids contains None or empty geometries")
    index = grids.index if isinstance(grids, pd.Series) else pd.RangeIndex(len(geoms))
    w = _star_matrix(_weights(geoms, distance_m)) if weights is None else weights
    if w.shape != (len(geoms), len(geoms)):
        raise ValueError(f"weights hold {w.shape[0]} grids, not {len(geoms)}")
    z = _gi_star(y, w)
    p = 2.0 * stats.norm.sf(np.abs(z))
    label = np.where(p < alpha, np.where(z > 0, "hot", "cold"), "not significant").astype(object)
    label[np.isnan(z)] = "not significant"
    return pd.DataFrame({"gi_z": z, "p_value": p, "hotspot": label}, index=index)


def _gi_star(y: np.ndarray, w: sp.csr_matrix) -> np.ndarray:
    """Return Gi* z-scores of ``y`` for the binary neighbourhood ``w`` (self included).

    NaN where z is undefined: every count equal, or a grid whose neighbourhood is everything.
    """
    n = len(y)
    if np.all(y == y[0]):
        return np.full(n, np.nan)
    mean = y.mean()
    spread = np.sqrt(max(float((y**2).mean() - mean**2), 0.0))
    w_i = np.asarray(w.sum(axis=1)).ravel()
    scale = spread * np.sqrt((n * w_i - w_i**2) / (n - 1))
    z = np.full(n, np.nan)
    ok = scale > 1e-12 * max(abs(mean), 1.0)
    z[ok] = ((w @ y)[ok] - mean * w_i[ok]) / scale[ok]
    return z
