"""Benchmark geo.density against datashader aggregation + cv2.GaussianBlur.

Same process, same data: 1M clustered points over the synthetic 30 x 30 km city, a 512 x 512
raster (58 m pixels) and a 300 m bandwidth. Accuracy: both methods against an exact Gaussian
kernel sum (distances in a local metric CRS) on a feasible case (5,000 points, 256 x 256).
Run:  /work/venv/bin/python bench/bench_geo_density.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import cv2
import datashader as ds
import numba
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _geo_city import city_bounds, clustered_points  # noqa: E402

from geo import density, from_wgs84, local_metric_crs  # noqa: E402
from geo.measure import metres_per_degree  # noqa: E402


def peak_rss_mb() -> float:
    """Return this process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def datashader_blur(lon, lat, bounds, shape, h):
    """Return datashader count aggregation + cv2 Gaussian blur, scaled to weight per m^2."""
    ny, nx = shape
    cvs = ds.Canvas(
        plot_width=nx,
        plot_height=ny,
        x_range=(bounds[0], bounds[2]),
        y_range=(bounds[1], bounds[3]),
    )
    agg = cvs.points(pd.DataFrame({"x": lon, "y": lat}), "x", "y", agg=ds.count())
    mx, my = metres_per_degree(0.5 * (bounds[1] + bounds[3]))
    px_w = (bounds[2] - bounds[0]) / nx * mx
    px_h = (bounds[3] - bounds[1]) / ny * my
    img = agg.values.astype(np.float32)
    out = cv2.GaussianBlur(
        img, (0, 0), sigmaX=h / px_w, sigmaY=h / px_h, borderType=cv2.BORDER_CONSTANT
    )
    return out / (px_w * px_h)


def exact_kde(lon, lat, bounds, shape, h):
    """Return the exact Gaussian kernel sum at pixel centres (local metric distances)."""
    crs = local_metric_crs([bounds[0], bounds[2]], [bounds[1], bounds[3]])
    px, py = from_wgs84(lon, lat, crs)
    ny, nx = shape
    xs = bounds[0] + (np.arange(nx) + 0.5) * (bounds[2] - bounds[0]) / nx
    ys = bounds[1] + (np.arange(ny) + 0.5) * (bounds[3] - bounds[1]) / ny
    gx, gy = np.meshgrid(xs, ys)
    cx, cy = from_wgs84(gx.ravel(), gy.ravel(), crs)
    out = np.zeros(cx.size)
    for s in range(0, len(px), 256):
        d2 = (cx[:, None] - px[None, s : s + 256]) ** 2 + (cy[:, None] - py[None, s : s + 256]) ** 2
        out += np.exp(-0.5 * d2 / h**2).sum(1)
    return (out / (2 * np.pi * h**2)).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--bandwidth", type=float, default=300.0)
    parser.add_argument("--skip-exact", action="store_true", help="speed only")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    bounds = city_bounds()
    shape = (args.size, args.size)
    lon, lat = clustered_points(args.points)
    density(lon[:100], lat[:100], bounds, shape, args.bandwidth)  # JIT warm-up
    datashader_blur(lon[:100], lat[:100], bounds, shape, args.bandwidth)
    # Interleave the runs so that load from other processes hits all of them alike.
    t_ours, t_ours_1, t_ds = [], [], []
    threads = numba.get_num_threads()
    for _ in range(args.repeat):
        t, ours = best_of(lambda: density(lon, lat, bounds, shape, args.bandwidth), 1)
        t_ours.append(t)
        numba.set_num_threads(1)
        t, _ = best_of(lambda: density(lon, lat, bounds, shape, args.bandwidth), 1)
        t_ours_1.append(t)
        numba.set_num_threads(threads)
        t, theirs = best_of(lambda: datashader_blur(lon, lat, bounds, shape, args.bandwidth), 1)
        t_ds.append(t)
    diff = np.abs(ours - theirs).max() / theirs.max()
    print(
        f"{args.points:,} points -> {shape} raster, h={args.bandwidth:.0f} m: density "
        f"min {min(t_ours) * 1e3:.1f} ms (median {np.median(t_ours) * 1e3:.1f}; 1 numba "
        f"thread min {min(t_ours_1) * 1e3:.1f}, ratio {min(t_ds) / min(t_ours_1):.2f}x) | "
        f"datashader+cv2 min {min(t_ds) * 1e3:.1f} ms (median {np.median(t_ds) * 1e3:.1f}) | "
        f"ratio of minima {min(t_ds) / min(t_ours):.2f}x, of medians "
        f"{np.median(t_ds) / np.median(t_ours):.2f}x | max |ours - datashader| = {diff:.2%} "
        f"of peak | peak RSS {peak_rss_mb():.0f} MB"
    )

    if args.skip_exact:
        return
    n_exact, exact_shape = 5_000, (256, 256)
    sub_lon, sub_lat = clustered_points(n_exact, seed=11)
    t = time.perf_counter()
    exact = exact_kde(sub_lon, sub_lat, bounds, exact_shape, args.bandwidth)
    t_exact = time.perf_counter() - t
    ours = density(sub_lon, sub_lat, bounds, exact_shape, args.bandwidth)
    theirs = datashader_blur(sub_lon, sub_lat, bounds, exact_shape, args.bandwidth)
    print(
        f"accuracy ({n_exact:,} points, {exact_shape}, h={args.bandwidth:.0f} m, exact sum "
        f"{t_exact:.1f} s): max error density {np.abs(ours - exact).max() / exact.max():.3%} "
        f"of peak | datashader+cv2 {np.abs(theirs - exact).max() / exact.max():.3%} of peak"
    )
    for h in (100.0, 60.0):
        ours = density(sub_lon, sub_lat, bounds, exact_shape, h)
        exact = exact_kde(sub_lon, sub_lat, bounds, exact_shape, h)
        theirs = datashader_blur(sub_lon, sub_lat, bounds, exact_shape, h)
        print(
            f"accuracy h={h:.0f} m (pixel 117 m): density "
            f"{np.abs(ours - exact).max() / exact.max():.3%} of peak | datashader+cv2 "
            f"{np.abs(theirs - exact).max() / exact.max():.3%}"
        )


if __name__ == "__main__":
    main()
