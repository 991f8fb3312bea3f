"""Gaussian kernel density rasters of incident points.

Technique: cloud-in-cell (bilinear) binning of the points onto the pixel centres, then a
separable Gaussian blur whose sigma is the bandwidth converted from metres to pixels along
each axis. Bilinear binning widens each point by a triangle of variance 1/6 pixel^2 per axis, which is
taken off the Gaussian's variance; with pixels of up to 0.4 bandwidth the error stays well
under 1 % of the peak (0.05-0.4 % measured in tests), and coarser rasters are computed on an
oversampled raster (capped at 40 M cells) and subsampled.
"""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np
from numba import prange
from numpy.typing import ArrayLike, NDArray

__all__ = ["density", "metres_per_degree"]

_A = 6378137.0  # WGS-84 semi-major axis
_E2 = 6.69437999014e-3  # WGS-84 first eccentricity squared
_MAX_PX_PER_BANDWIDTH = 2.5  # pixels per bandwidth below which we oversample
_MAX_FINE_CELLS = 40_000_000  # cap on the oversampled raster (memory)


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Return (metres per degree of longitude, metres per degree of latitude) at ``lat``.

    Uses the WGS-84 radii of curvature, so it is exact for small steps at that latitude.
    """
    phi = math.radians(lat)
    w = math.sqrt(1.0 - _E2 * math.sin(phi) ** 2)
    n = _A / w  # prime-vertical radius
    m = _A * (1.0 - _E2) / w**3  # meridional radius
    return math.radians(1.0) * n * math.cos(phi), math.radians(1.0) * m


@numba.njit(parallel=True, cache=True)
def _cic_bin_parallel(lon, lat, w, x0, y0, inv_dx, inv_dy, nx, ny, n_chunks):
    """Return the CIC binning of the points, done in n_chunks private rasters then summed."""
    parts = np.zeros((n_chunks, ny, nx), dtype=np.float64)
    n = len(lon)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        _cic_bin(
            lon, lat, w, x0, y0, inv_dx, inv_dy, nx, ny, parts[c], c * size, min(n, (c + 1) * size)
        )
    out = parts[0]
    for c in range(1, n_chunks):
        out += parts[c]
    return out


@numba.njit(cache=True)
def _cic_bin(lon, lat, w, x0, y0, inv_dx, inv_dy, nx, ny, out, start, stop):
    """Add the weights of points start..stop-1 to their 4 surrounding pixel centres."""
    for i in range(start, stop):
        u = (lon[i] - x0) * inv_dx - 0.5  # pixel-centre coordinates
        v = (lat[i] - y0) * inv_dy - 0.5
        wi = w[i]
        if not (u > -1.0 and u < nx and v > -1.0 and v < ny and np.isfinite(wi)):
            continue  # also rejects NaN
        c = math.floor(u)
        r = math.floor(v)
        fu = u - c
        fv = v - r
        c = int(c)
        r = int(r)
        if 0 <= r < ny:
            if 0 <= c < nx:
                out[r, c] += wi * (1 - fu) * (1 - fv)
            if 0 <= c + 1 < nx:
                out[r, c + 1] += wi * fu * (1 - fv)
        if 0 <= r + 1 < ny:
            if 0 <= c < nx:
                out[r + 1, c] += wi * (1 - fu) * fv
            if 0 <= c + 1 < nx:
                out[r + 1, c + 1] += wi * fu * fv


def _gaussian_kernel(sigma_px: float, truncate: float) -> np.ndarray:
    radius = max(int(math.ceil(truncate * sigma_px)), 1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def density(
    lon: ArrayLike,
    lat: ArrayLike,
    bounds: tuple[float, float, float, float],
    shape: tuple[int, int],
    bandwidth_m: float,
    weights: ArrayLike | None = None,
    *,
    truncate: float = 4.0,
) -> NDArray[np.float64]:
    """Return a Gaussian kernel density raster (weight per square metre) of the points.

    Parameters
    ----------
    lon, lat : array-like of float
        Points in EPSG:4326 degrees. NaN points (or NaN weights) are ignored.
    bounds : (minx, miny, maxx, maxy)
        Raster extent in EPSG:4326 degrees; pixel centres sit at the centres of a regular
        ``shape`` grid over it.
    shape : (rows, cols)
        Raster size. Row 0 is the SOUTHERN edge (y ascending, as in datashader/xarray); use
        ``np.flipud`` for a north-up image.
    bandwidth_m : float
        Standard deviation of the Gaussian kernel in metres (isotropic on the ground).
    weights : array-like of float, optional
        Weight per point (default 1).
    truncate : float, default 4.0
        Kernel cut-off in standard deviations.

    Returns
    -------
    numpy.ndarray of float64, shape ``shape``
        Sum over points of ``w * exp(-d^2 / (2 h^2)) / (2 pi h^2)`` at each pixel centre, with
        ``d`` the ground distance in metres. Points outside ``bounds`` contribute nothing
        (they are not binned), so keep ``truncate * bandwidth_m`` of margin if that matters.

    Raises
    ------
    ValueError
        For a non-positive bandwidth, an empty shape or inverted bounds.
    """
    ny, nx = (int(s) for s in shape)
    minx, miny, maxx, maxy = (float(b) for b in bounds)
    if not bandwidth_m > 0:
        raise ValueError(f"bandwidth_m must be positive, got {bandwidth_m!r}")
    if ny <= 0 or nx <= 0:
        raise ValueError(f"shape must be two positive ints (rows, cols), got {shape!r}")
    if not (maxx > minx and maxy > miny):
        raise ValueError(f"bounds must be (minx, miny, maxx, maxy) with max > min, got {bounds!r}")
    lon_a = np.ascontiguousarray(np.asarray(lon, dtype=np.float64).reshape(-1))
    lat_a = np.ascontiguousarray(np.asarray(lat, dtype=np.float64).reshape(-1))
    if weights is None:
        w = np.ones(len(lon_a))
    else:
        w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).reshape(-1))
    if not (len(lon_a) == len(lat_a) == len(w)):
        raise ValueError("lon, lat and weights must have the same length")
    mx, my = metres_per_degree(0.5 * (miny + maxy))
    px_w = (maxx - minx) / nx * mx
    px_h = (maxy - miny) / ny * my
    # Binning + a sampled kernel stay within 1 % of the peak while a pixel is at most
    # ~h / 2.5; coarser requests are computed on an odd-factor finer raster whose centres
    # include the requested ones, then subsampled.
    f = max(1, math.ceil(max(px_w, px_h) / (bandwidth_m / _MAX_PX_PER_BANDWIDTH)))
    f = min(f, max(1, int(math.sqrt(_MAX_FINE_CELLS / (nx * ny)))))
    f += 1 - f % 2
    fnx, fny = nx * f, ny * f
    n_chunks = numba.get_num_threads() if fnx * fny <= 4_000_000 else 1
    grid = _cic_bin_parallel(
        lon_a, lat_a, w, minx, miny, fnx / (maxx - minx), fny / (maxy - miny), fnx, fny,
        n_chunks,
    )  # fmt: skip
    # Bilinear binning spreads each point by a triangle of variance 1/6 pixel^2 per axis;
    # taking it off the Gaussian's variance cancels the second-order error.
    kx = _gaussian_kernel(math.sqrt((bandwidth_m / (px_w / f)) ** 2 - 1 / 6), truncate)
    ky = _gaussian_kernel(math.sqrt((bandwidth_m / (px_h / f)) ** 2 - 1 / 6), truncate)
    # cv2's separable filter is SIMD and multi-threaded (float32 is its fast path; 1e-7
    # relative is far inside the error budget). BORDER_CONSTANT = zero outside the raster.
    out = cv2.sepFilter2D(
        grid.astype(np.float32),
        cv2.CV_32F,
        kx.astype(np.float32),
        ky.astype(np.float32),
        borderType=cv2.BORDER_CONSTANT,
    )
    if f > 1:
        out = out[f // 2 :: f, f // 2 :: f]
    # Kernels sum to 1 over pixels; divide by the (fine) pixel area for weight per m^2.
    return out.astype(np.float64) / ((px_w / f) * (px_h / f))
