"""Benchmark geo.assign_points (GridIndex) against geopandas.sjoin(predicate="within").

Same process, same data: a synthetic Voronoi city of 10k grids (denser downtown) and 1M/5M
clustered points. Prints times, the speed-up ratio, whether the results are identical, and
peak memory. Run:  /work/venv/bin/python bench/bench_geo_assign.py [--sizes 1000000 5000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import geopandas as gpd
import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _geo_city import clustered_points, voronoi_city  # noqa: E402

from geo import GridIndex  # noqa: E402


def peak_rss_mb() -> float:
    """Return this process's peak resident memory so far, in MB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def sjoin_ids(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame) -> np.ndarray:
    joined = gpd.sjoin(points, grids, predicate="within", how="left")
    right = joined["index_right"].fillna(-1).astype(np.int64)
    # a point on a shared edge is "within" neither grid, so no point can match twice; keep
    # the lowest index anyway so the comparison does not depend on that argument
    return right.groupby(level=0).min().reindex(points.index).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--grids", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"numba threads: {numba.get_num_threads()}")
    grids = voronoi_city(args.grids)
    print(f"city: {len(grids)} Voronoi grids")
    GridIndex(grids[:50]).assign(np.zeros(3), np.zeros(3))  # JIT warm-up (cached on disk)
    t = time.perf_counter()
    index = GridIndex(grids)
    build = time.perf_counter() - t
    print(
        f"GridIndex build: {build:.2f} s, raster {index.nrows}x{index.ncols}, "
        f"{index.n_boundary_cells} boundary cells, index arrays {index.nbytes / 1e6:.0f} MB; "
        f"peak RSS so far {peak_rss_mb():.0f} MB"
    )
    grids_gdf = gpd.GeoDataFrame(geometry=grids, crs="EPSG:4326")
    for n in args.sizes:
        lon, lat = clustered_points(n)
        t_ours, ours = best_of(lambda lon=lon, lat=lat: index.assign(lon, lat), args.repeat)
        numba.set_num_threads(1)
        t_ours_1, _ = best_of(lambda lon=lon, lat=lat: index.assign(lon, lat), args.repeat)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        rss_ours = peak_rss_mb()
        t = time.perf_counter()
        points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
        t_points = time.perf_counter() - t
        t_sjoin, theirs = best_of(
            lambda points=points: sjoin_ids(points, grids_gdf), 2 if n <= 1_000_000 else 1
        )
        mismatches = int((ours != theirs).sum())
        print(
            f"n={n:>9,}: assign {t_ours:.3f} s ({n / t_ours / 1e6:.1f} M pts/s; 1 thread "
            f"{t_ours_1:.3f} s) | sjoin {t_sjoin:.3f} s (+{t_points:.2f} s points_from_xy) | "
            f"ratio {t_sjoin / t_ours:.1f}x (1 thread {t_sjoin / t_ours_1:.1f}x) | "
            f"identical: {mismatches == 0} ({mismatches} differ, {int((ours < 0).sum())} "
            f"outside) | peak RSS after ours {rss_ours:.0f} MB, after sjoin {peak_rss_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
