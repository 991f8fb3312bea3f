"""Benchmark geo.coverage against shapely union + intersection.

Same process, same data: the synthetic 10k-grid Voronoi city and 12k clustered cameras
(30-150 m range, 10 % domes). Baselines, both exact and measured in a local metric CRS:
  A. "global": shapely.union_all of all cones, then intersection with every grid;
  B. "per grid": for each grid, union of only the cones whose boxes touch it (STRtree), then
     intersection (a much stronger baseline than A on clustered cameras).
Error: |ours - exact| as a fraction of grid area, max over grids >= 1 ha and over all grids.
Run:  /work/venv/bin/python bench/bench_geo_coverage.py [--skip-global]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _geo_city import cameras, voronoi_city  # noqa: E402

from geo import camera_sectors, coverage, local_metric_crs, transform_geometries  # noqa: E402


def peak_rss_mb() -> float:
    """Return this process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exact_global(grids_m: np.ndarray, cones_m: np.ndarray) -> np.ndarray:
    union = shapely.union_all(cones_m)
    return shapely.area(shapely.intersection(grids_m, union)) / shapely.area(grids_m)


def exact_per_grid(grids_m: np.ndarray, cones_m: np.ndarray) -> np.ndarray:
    tree = shapely.STRtree(cones_m)
    g_idx, c_idx = tree.query(grids_m)
    out = np.zeros(len(grids_m))
    starts = np.searchsorted(g_idx, np.arange(len(grids_m) + 1))
    for g in range(len(grids_m)):
        cands = cones_m[c_idx[starts[g] : starts[g + 1]]]
        if len(cands):
            union = shapely.union_all(cands)
            out[g] = shapely.intersection(grids_m[g], union).area / grids_m[g].area
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grids", type=int, default=10_000)
    parser.add_argument("--cameras", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-global", action="store_true", help="skip baseline A (slow)")
    args = parser.parse_args()

    grids = voronoi_city(args.grids)
    cams = cameras(args.cameras)
    coverage(grids[:20], cams.iloc[:20])  # JIT warm-up (cached on disk)
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = coverage(grids, cams)
        times.append(time.perf_counter() - t)
    t_ours = min(times)
    t = time.perf_counter()
    cones = np.asarray(camera_sectors(cams).values, dtype=object)
    t_cones = time.perf_counter() - t
    rss_ours = peak_rss_mb()
    print(
        f"{len(grids)} grids, {len(cams)} cameras: coverage {t_ours:.3f} s (min of "
        f"{args.repeat}, from the camera table); building cone polygons for the baselines "
        f"took {t_cones:.3f} s more (not counted in either); peak RSS so far {rss_ours:.0f} MB"
    )

    b = shapely.total_bounds(grids)
    crs = local_metric_crs([b[0], b[2]], [b[1], b[3]])
    grids_m = transform_geometries(grids, "wgs84", crs)
    cones_m = transform_geometries(cones, "wgs84", crs)
    area = shapely.area(grids_m)
    big = area >= 1e4

    t = time.perf_counter()
    exact_b = exact_per_grid(grids_m, cones_m)
    t_b = time.perf_counter() - t
    err = np.abs(ours - exact_b)
    print(
        f"baseline B (per-grid union + intersection, cones prebuilt and projected): {t_b:.2f} s"
        f" | ratio {t_b / t_ours:.1f}x | max error {err[big].max():.3%} of grid area for "
        f"{big.sum()} grids >= 1 ha, {err.max():.3%} over all grids, mean {err.mean():.4%}"
    )
    if not args.skip_global:
        t = time.perf_counter()
        exact_a = exact_global(grids_m, cones_m)
        t_a = time.perf_counter() - t
        print(
            f"baseline A (global union_all + intersection): {t_a:.1f} s | ratio "
            f"{t_a / t_ours:.0f}x | A vs B max difference {np.abs(exact_a - exact_b).max():.2e}"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB (ours alone: {rss_ours:.0f} MB)")


if __name__ == "__main__":
    main()
