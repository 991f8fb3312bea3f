"""Benchmark: sustained acknowledged incidents per second, with grid assignment, on SQLite.

Compares, in the same run on the same database and points:

- ``baseline``: one transaction (one commit) per incident, each request thread writing
  itself (``create_incident`` inside ``db.session()``), as a naive handler would;
- ``group``: the app's group-commit ``IntakeWriter`` (one writer thread batches queued
  incidents into one transaction and acknowledges after the commit);
- ``http`` (``--http``): the real server (``python -m dashboard``, group commit) on 127.0.0.1,
  driven by keep-alive HTTP clients posting ``/api/v1/incidents`` with a Bearer token, plus
  the batch endpoint and, as the web stack's ceiling, GETs of the static OpenAPI document.

"Acknowledged" means the call returned after the commit. The city is a synthetic Voronoi
city (``bench/_geo_city.py``) stored as real grids, areas, centers and one grid worker per
grid; points are clustered like real incidents. Bounded: ``--n`` incidents per mode.

Usage::

    python bench/bench_intake.py --grids 2000 --n 3000 --threads 16 [--http]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from bench._geo_city import city_bounds, clustered_points, voronoi_city  # noqa: E402
from layers.db import Database  # noqa: E402
from layers.models import AdminArea, Center, Grid, Responder  # noqa: E402
from layers.models.base import geometry_columns  # noqa: E402


def build_city(db: Database, n_grids: int) -> int:
    """Return the number of grids after writing a Voronoi city into ``db``."""
    grids = voronoi_city(n_grids)
    box = shapely.box(*city_bounds())
    with db.session() as s:
        city = AdminArea(level="city", code="320100", name="bench city", **geometry_columns(box))
        s.add(city)
        s.flush()
        s.add(Center(level="city", name="city center", area_id=city.id,
                     lon=box.centroid.x, lat=box.centroid.y))  # fmt: skip
        district = AdminArea(level="district", code="320102", name="d", parent_id=city.id,
                             **geometry_columns(box))  # fmt: skip
        street = AdminArea(level="street", code="320102001", name="s", parent_id=None,
                           **geometry_columns(box))  # fmt: skip
        s.add(district)
        s.flush()
        street.parent_id = district.id
        s.add(street)
        s.flush()
        for lvl, area in (("county", district), ("township", street)):
            s.add(Center(level=lvl, name=lvl, area_id=area.id, lon=box.centroid.x,
                         lat=box.centroid.y))  # fmt: skip
        per = 20
        for c0 in range(0, len(grids), per):
            part = grids[c0 : c0 + per]
            hull = shapely.union_all(part)
            com = AdminArea(level="community", code=f"320102001{c0 // per + 1:03d}",
                            name=f"c{c0}", parent_id=street.id, **geometry_columns(hull))  # fmt: skip
            s.add(com)
            s.flush()
            pt = hull.representative_point()
            s.add(Center(level="village", name=f"v{c0}", area_id=com.id, lon=pt.x, lat=pt.y))
            for k, g in enumerate(part):
                grid = Grid(code=f"{com.code}{k + 1:02d}", name=f"g{c0 + k}", community_id=com.id,
                            **geometry_columns(g))  # fmt: skip
                s.add(grid)
                s.flush()
                p = g.representative_point()
                s.add(Responder(name=f"w{grid.id}", kind="grid_worker", grid_id=grid.id,
                                available=True, lon=p.x, lat=p.y))  # fmt: skip
    return len(grids)


def run_threads(n: int, threads: int, fn) -> tuple[float, int]:
    """Return (seconds, acknowledged) for ``n`` calls of fn(i) spread over ``threads``."""
    it = iter(range(n))
    lock = threading.Lock()
    ok = [0]

    def loop():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            if fn(i):
                with lock:
                    ok[0] += 1

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0, ok[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grids", type=int, default=2000)
    ap.add_argument("--n", type=int, default=3000, help="incidents per mode (bounded load)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--http", action="store_true", help="also drive a real server over HTTP")
    args = ap.parse_args()
    if not 1 <= args.n <= 50_000:
        ap.error("--n: give 1..50000 (load tests stay bounded)")

    from layers.services import incidents as svc

    tmp = Path(tempfile.mkdtemp(prefix="bench_intake_"))
    db = Database(f"sqlite:///{tmp / 'bench.sqlite'}")
    db.migrate()
    t0 = time.perf_counter()
    n_grids = build_city(db, args.grids)
    print(f"city: {n_grids} grids, built in {time.perf_counter() - t0:.1f} s ({tmp})")
    lon, lat = clustered_points(3 * args.n + 10, seed=3)
    bodies = [
        {"lon": float(x), "lat": float(y), "category": "ENV"} for x, y in zip(lon, lat, strict=True)
    ]
    with db.session() as s:  # warm caches (locator, categories, numba) outside the timing
        svc.create_incident(s, bodies[-1])

    def baseline(i: int) -> bool:
        try:
            with db.session() as s:
                svc.create_incident(s, bodies[i])
            return True
        except svc.IncidentInputError:
            return False

    writer = svc.IntakeWriter(db).start()

    def group(i: int) -> bool:
        try:
            writer.create(bodies[args.n + i])
            return True
        except svc.IncidentInputError:
            return False

    results = {}
    secs, ok = run_threads(args.n, args.threads, baseline)
    results["baseline (commit per request)"] = (secs, ok)
    secs, ok = run_threads(args.n, args.threads, group)
    results["group commit (IntakeWriter)"] = (secs, ok)
    writer.stop()
    print(f"writer: {writer.written} incidents in {writer.batches} transactions "
          f"(mean batch {writer.written / max(writer.batches, 1):.1f})")  # fmt: skip

    if args.http:
        ceiling, single, batched = run_http(db, tmp, args, bodies[2 * args.n :])
        results["http GET openapi.json (no DB: ceiling)"] = ceiling
        results["http group commit (real server)"] = single
        results["http batch import, 100 per request"] = batched

    base = results["baseline (commit per request)"]
    base_rate = base[1] / base[0]
    print(f"\n{'mode':36s} {'acked':>7s} {'seconds':>8s} {'per s':>8s} {'x baseline':>10s}")
    for name, (secs, ok) in results.items():
        rate = ok / secs
        print(f"{name:36s} {ok:7d} {secs:8.2f} {rate:8.0f} {rate / base_rate:10.2f}")
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


def run_http(db: Database, tmp: Path, args, bodies: list[dict]):
    """Return (seconds, ok) for: GETs of a static document (the web-stack ceiling), one
    incident per POST, and 100 incidents per batch POST."""
    import requests

    from bench.incident_city import free_port, start_server
    from layers.services import users

    with db.session() as s:
        _row, token = users.create_token(s, "bench-intake", "intake", actor="bench")
    db.dispose()
    port = free_port()
    proc = start_server(tmp / "bench.sqlite", tmp, port)
    local = threading.local()
    errors: list[int] = []
    url = f"http://127.0.0.1:{port}/api/v1/incidents"

    def post(i: int) -> bool:
        sess = getattr(local, "s", None)
        if sess is None:
            sess = local.s = requests.Session()
            sess.headers["Authorization"] = f"Bearer {token}"
        for _attempt in range(3):  # a dropped keep-alive connection is retried, same key
            try:
                r = sess.post(url, json=bodies[i], timeout=60,
                              headers={"Idempotency-Key": f"bench-{i}"})  # fmt: skip
                return r.status_code in (200, 201)
            except requests.ConnectionError:
                errors.append(i)
                sess = local.s = requests.Session()
                sess.headers["Authorization"] = f"Bearer {token}"
        return False

    def get_doc(_i: int) -> bool:
        sess = getattr(local, "g", None)
        if sess is None:
            sess = local.g = requests.Session()
        return sess.get(url.replace("/incidents", "/openapi.json"), timeout=60).status_code == 200

    try:
        post(0)
        ceiling = run_threads(args.n, args.threads, get_doc)
        single = run_threads(args.n, args.threads, lambda i: post(i + 1))
        print(f"http: {len(errors)} dropped connections retried")
        chunks = [bodies[k : k + 100] for k in range(0, args.n, 100)]
        acked = [0]
        lock = threading.Lock()

        def post_batch(i: int) -> bool:
            sess = requests.Session()
            sess.headers["Authorization"] = f"Bearer {token}"
            r = sess.post(url + "/batch", json={"incidents": chunks[i]}, timeout=120)
            with lock:
                acked[0] += len(r.json()["created"]) if r.status_code == 200 else 0
            return r.status_code == 200

        secs, _ = run_threads(len(chunks), min(args.threads, 8), post_batch)
        return ceiling, single, (secs, acked[0])
    finally:
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
