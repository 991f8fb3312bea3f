"""Benchmark spatial queries on PostgreSQL: PostGIS + GiST against the portable plans.

Runs against one PostgreSQL database holding the city scale (10,800 grids, 12,400 cameras,
1,000,000 incidents; seeded once with ``layers.seed`` if empty) and times, on the same
database, in the same process:

1. window queries (map viewports of 0.01°, 0.05° and 0.2°) on grids, cameras and incidents:
   ``layers.spatial_sql.window_match`` on PostgreSQL (``ST_Intersects``/``&&`` on the
   GiST-indexed ``geom``) against the portable plan (B-tree range tests on the bbox or lon/lat
   columns; for grids followed by the exact shapely test the SQLite path needs);
2. which grid holds ONE point (a map click): PostGIS ``ST_Covers`` against the cached
   ``geo.GridIndex`` locator (warm) and against building that locator (a fresh web worker);
3. which grid holds each of N points (bulk): one ``ST_Covers`` join in PostGIS against the
   warm ``GridIndex.assign`` (intake's path).

Every pair is checked to return the same rows. Usage::

    python bench/bench_postgis.py --db postgresql+psycopg://user:pw@127.0.0.1/gridsight_bench
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_city(url: str):
    """Return a migrated Database holding the city scale (seeded once, then reused)."""
    from sqlalchemy import func, select

    from layers.db import Database
    from layers.models import Grid

    db = Database(url)
    db.migrate()
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(Grid))
    if not n:
        from layers.seed import seed_city

        print("seeding the city scale (once, ~7 min) ...", flush=True)
        seed_city(db, scale="city", seed=42, progress=False)
    return db


def timed(fn, repeat: int) -> tuple[float, object]:
    """Return (median seconds, last result) of ``repeat`` calls."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def windows(bounds, size: float, n: int, rng) -> list[tuple[float, float, float, float]]:
    """Return ``n`` random square windows of ``size`` degrees inside ``bounds``."""
    x0, y0, x1, y1 = bounds
    xs = rng.uniform(x0, x1 - size, n)
    ys = rng.uniform(y0, y1 - size, n)
    return [
        (float(x), float(y), float(x + size), float(y + size)) for x, y in zip(xs, ys, strict=True)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=os.environ.get("GRIDSIGHT_BENCH_PG_URL"),
                    help="PostgreSQL URL (default GRIDSIGHT_BENCH_PG_URL)")  # fmt: skip
    ap.add_argument("--windows", type=int, default=40, help="windows per size")
    ap.add_argument("--points", type=int, default=100_000, help="points for the bulk test")
    args = ap.parse_args()
    if not args.db or not args.db.startswith("postgresql"):
        ap.error("--db must be a PostgreSQL URL (the SQLite path has no PostGIS to compare)")

    import shapely
    from sqlalchemy import func, select, text

    from layers.models import Camera, Grid, Incident
    from layers.services import spatial
    from layers.spatial_sql import bbox_columns_condition, point_covered_by, window_match

    db = ensure_city(args.db)
    rng = np.random.default_rng(7)
    with db.session() as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                  for m in (Grid, Camera, Incident)}  # fmt: skip
        b = s.execute(select(func.min(Grid.minx), func.min(Grid.miny), func.max(Grid.maxx),
                             func.max(Grid.maxy))).one()  # fmt: skip
        for t in ("grids", "cameras", "incidents"):
            s.execute(text(f"ANALYZE {t}"))
    bounds = tuple(float(v) for v in b)
    print(f"database: {counts}; city bounds {tuple(round(v, 3) for v in bounds)}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    # -- 1. windows -----------------------------------------------------------------------
    print("\n1. window queries (median per query, same windows, same database)")
    print(f"{'layer':10} {'window':>7} {'rows':>8} {'PostGIS+GiST':>13} {'bbox columns':>13} "
          f"{'ratio':>6}")  # fmt: skip
    rows_out = []
    for model, polygon in ((Grid, True), (Camera, False), (Incident, False)):
        for size in (0.01, 0.05, 0.2):
            ws = windows(bounds, size, args.windows, rng)
            cols = (model.id, model.geom_wkb) if polygon else (model.id,)

            def gist(ws=ws, model=model):
                with db.session() as s:
                    return [sorted(s.scalars(select(model.id).where(window_match(model, w))))
                            for w in ws]  # fmt: skip

            def portable(ws=ws, model=model, cols=cols, polygon=polygon):
                out = []
                with db.session() as s:
                    for w in ws:
                        rows = s.execute(
                            select(*cols).where(bbox_columns_condition(model, w))
                        ).all()
                        if polygon:  # the exact test the SQLite path adds in shapely
                            geoms = shapely.from_wkb([r[1] for r in rows])
                            keep = shapely.intersects(geoms, shapely.box(*w)) if rows else []
                            rows = [r for r, k in zip(rows, keep, strict=True) if k]
                        out.append(sorted(int(r[0]) for r in rows))
                return out

            gist()  # warm the caches of both plans the same way
            portable()
            t_g, a = timed(gist, 3)
            t_p, c = timed(portable, 3)
            assert a == c, f"{model.__tablename__} {size}: PostGIS and bbox columns disagree"
            n_rows = statistics.median(len(x) for x in a)
            per_g, per_p = t_g / len(ws) * 1e3, t_p / len(ws) * 1e3
            rows_out.append((model.__tablename__, size, n_rows, per_g, per_p))
            print(f"{model.__tablename__:10} {size:>6}° {n_rows:>8.0f} {per_g:>10.2f} ms "
                  f"{per_p:>10.2f} ms {per_p / per_g:>5.1f}x", flush=True)  # fmt: skip

    # -- 2. one point ---------------------------------------------------------------------
    print("\n2. which grid holds one point (a map click)")
    pts = np.column_stack([rng.uniform(bounds[0], bounds[2], 500),
                           rng.uniform(bounds[1], bounds[3], 500)])  # fmt: skip
    t0 = time.perf_counter()
    spatial._cache.clear()
    loc = spatial.locator(db)
    t_build = time.perf_counter() - t0

    def postgis_one():
        with db.session() as s:
            return [s.scalar(select(Grid.id).where(point_covered_by(Grid, x, y))
                             .order_by(Grid.id).limit(1)) for x, y in pts]  # fmt: skip

    def locator_one():
        with db.session() as s:  # what a request pays: the version check + the lookup
            return [int(spatial.locator(s).grid_at([x], [y])[0]) for x, y in pts]

    t_pg, a = timed(postgis_one, 3)
    t_loc, c = timed(locator_one, 3)
    a = [-1 if v is None else v for v in a]
    assert a == c, "PostGIS and GridIndex disagree on single points"
    print(f"  PostGIS ST_Covers:       {t_pg / len(pts) * 1e3:7.3f} ms per point")
    print(f"  GridIndex, warm cache:   {t_loc / len(pts) * 1e3:7.3f} ms per point "
          f"(version check + raster lookup) -> PostGIS/GridIndex {t_pg / t_loc:.1f}x")  # fmt: skip
    print(f"  GridIndex, cold (build): {t_build * 1e3:7.0f} ms once per web worker and grid "
          f"change = {t_build / (t_pg / len(pts)):,.0f} PostGIS lookups")  # fmt: skip

    # -- 3. many points -------------------------------------------------------------------
    print(f"\n3. which grid holds each of {args.points:,} points (bulk)")
    bulk = np.column_stack([rng.uniform(bounds[0], bounds[2], args.points),
                            rng.uniform(bounds[1], bounds[3], args.points)])  # fmt: skip

    def postgis_bulk():
        with db.session() as s:
            rows = s.execute(text(
                "SELECT p.i, (SELECT g.id FROM grids g WHERE ST_Covers(g.geom, "
                "ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)) ORDER BY g.id LIMIT 1) "
                "FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) "
                "WITH ORDINALITY AS p(x, y, i) ORDER BY p.i"),
                {"xs": bulk[:, 0].tolist(), "ys": bulk[:, 1].tolist()}).all()  # fmt: skip
        return np.array([-1 if r[1] is None else r[1] for r in rows], dtype=np.int64)

    def index_bulk():
        return loc.grid_at(bulk[:, 0], bulk[:, 1])

    t_pb, a = timed(postgis_bulk, 1)
    t_ib, c = timed(index_bulk, 3)
    assert np.array_equal(a, c), "PostGIS and GridIndex disagree on bulk points"
    print(f"  PostGIS join:     {t_pb:7.2f} s ({args.points / t_pb:,.0f} points/s)")
    print(f"  GridIndex.assign: {t_ib:7.3f} s ({args.points / t_ib:,.0f} points/s) -> "
          f"GridIndex {t_pb / t_ib:.0f}x faster")  # fmt: skip
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
