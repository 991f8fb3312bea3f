"""Load test on 127.0.0.1: operator sessions polling the map while incidents pour in.

Starts GridSight as real server processes (``python -m dashboard``) on a free port against
one database and, for a bounded time, runs in this process:

- ``--sessions`` operator sessions (real logins, CSRF, cookies), each sending the map's live
  refresh (the operator-tick ``/_dash-update-component`` request the browser sends, with its
  cursor carried over) once per second, as an open map does;
- ``--rate`` incident POSTs per second to ``/api/v1/incidents`` (an intake token, an
  ``Idempotency-Key`` each), open loop: requests start on schedule whether or not earlier ones
  have finished, so a slow server shows up as latency instead of a slower test.

It reports p50/p95/p99 latency of refreshes and POSTs, errors, and checks afterwards that
every acknowledged incident is stored (by its idempotency key and id): zero lost. It runs the
baseline first, the embedded single process (``GRIDSIGHT_WORKERS=1``, waitress, in-process
events), then ``--workers`` gunicorn workers with Redis, and prints the ratios.

Usage::

    python bench/bench_load.py --db postgresql+psycopg://u:pw@127.0.0.1/gridsight_bench_city \\
        --redis redis://127.0.0.1:6390/0 [--workers 3 --sessions 20 --rate 100 --seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.incident_city import free_port  # noqa: E402
from bench.operator_city import refresh_body  # noqa: E402 - after the path


def start_server(db_url: str, port: int, workers: int, redis_url: str | None, log: Path):
    """Return the server process (its own process group) once /healthz answers."""
    from bench.incident_city import start_server as start_dashboard

    env = {"GRIDSIGHT_WORKERS": str(workers)}
    if redis_url and workers > 1:
        env["GRIDSIGHT_REDIS_URL"] = redis_url
        env["GRIDSIGHT_REDIS_STREAM"] = f"gridsight-bench:{secrets.token_hex(4)}"
    proc = start_dashboard(db_url, log.parent / "data", port, log_path=log, extra_env=env,
                           new_session=True, timeout_s=300)  # fmt: skip
    time.sleep(2.0 if workers > 1 else 0.5)  # every worker up, not just the first
    return proc


def stop_server(proc) -> None:
    """Stop the server process group (gunicorn master and workers)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def accounts(db_url: str, n: int) -> tuple[list[tuple[str, str]], str, dict]:
    """Return ``n`` fresh operator logins and an intake token, created in the database."""
    from layers.db import Database
    from layers.services import users

    db = Database(db_url)
    db.migrate()
    tag = secrets.token_hex(3)
    logins = []
    with db.session() as s:
        for i in range(n):
            name, pw = f"load{tag}{i}", secrets.token_urlsafe(12)
            users.create_user(s, name, "operator", pw, actor="bench", must_change_password=False)
            logins.append((name, pw))
        _row, token = users.create_token(s, f"load-intake-{tag}", "intake", actor="bench")
    city = {}
    with db.session() as s:  # where reports come from: places of earlier incidents
        from sqlalchemy import select

        from layers.models import Incident

        rows = s.execute(select(Incident.lon, Incident.lat).where(Incident.id % 97 == 0)
                         .limit(20_000)).all()  # fmt: skip
        city["places"] = [(float(r.lon), float(r.lat)) for r in rows]
    db.dispose()
    return logins, token, city


def login(base: str, user: str, password: str):
    """Return a requests session signed in to the app, with Dash's CSRF header set."""
    import requests

    s = requests.Session()
    page = s.get(base + "/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = s.post(base + "/login", data={"username": user, "password": password,
                                      "csrf_token": token}, allow_redirects=False, timeout=30)  # fmt: skip
    if r.status_code != 302:
        raise RuntimeError(f"login of {user} answered {r.status_code}")
    s.headers["X-CSRFToken"] = s.cookies.get("_csrf_token")
    return s


def refresh_spec(session, base: str) -> list[str]:
    """Return the outputs of the operator-tick refresh callback, from /_dash-dependencies."""
    deps = session.get(base + "/_dash-dependencies", timeout=30).json()
    for d in deps:
        ins = {(i["id"], i["property"]) for i in d["inputs"]}
        if ("operator-tick", "n_intervals") in ins and "operator-cursor.data" in d["output"]:
            return d["output"].strip(".").split("...")
    raise RuntimeError("no operator-tick refresh callback in /_dash-dependencies")


def machine_busy_s() -> float:
    """Return the CPU seconds all cores of the machine have been busy (from /proc/stat)."""
    fields = open("/proc/stat").readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """Return the CPU seconds this (load generator) process has used."""
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of ``values`` in milliseconds (nan if empty)."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] * 1e3


def run_phase(label: str, base: str, logins, token: str, city: dict, args) -> dict:
    """Return latencies, errors and acknowledged incidents of one bounded load run."""
    import numpy as np
    import requests

    sessions = [login(base, u, p) for u, p in logins]
    outputs = refresh_spec(sessions[0], base)
    stop = threading.Event()
    lock = threading.Lock()
    res: dict = {"refresh": [], "post": [], "errors": [], "acked": {}, "late_starts": 0}

    def operator(k: int, s) -> None:
        cursor, n = None, 0
        # the first refresh is the full one of a fresh page: not part of the steady state
        r = s.post(base + "/_dash-update-component", json=refresh_body(outputs, cursor, n),
                   timeout=60)  # fmt: skip
        cursor = r.json()["response"]["operator-cursor"]["data"] if r.status_code == 200 else None
        nxt = time.monotonic() + (k / len(sessions))  # spread the sessions over the second
        while not stop.is_set():
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += 1.0
            n += 1
            t0 = time.perf_counter()
            try:
                r = s.post(base + "/_dash-update-component",
                           json=refresh_body(outputs, cursor, n), timeout=30)  # fmt: skip
            except requests.RequestException as exc:
                with lock:
                    res["errors"].append(f"refresh: {type(exc).__name__}")
                continue
            dt_s = time.perf_counter() - t0
            if r.status_code == 200:
                cursor = r.json()["response"]["operator-cursor"]["data"]
            elif r.status_code != 204:
                with lock:
                    res["errors"].append(f"refresh: HTTP {r.status_code}")
                continue
            with lock:
                res["refresh"].append(dt_s)

    rng = np.random.default_rng(11)
    places = city["places"]
    local = threading.local()

    def post(i: int, key: str, lon: float, lat: float) -> None:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.headers["Authorization"] = f"Bearer {token}"
        t0 = time.perf_counter()
        try:
            r = s.post(base + "/api/v1/incidents", timeout=30,
                       json={"lon": lon, "lat": lat, "category": "ENV", "description": key},
                       headers={"Idempotency-Key": key})  # fmt: skip
        except requests.RequestException as exc:
            with lock:
                res["errors"].append(f"post: {type(exc).__name__}")
            return
        dt_s = time.perf_counter() - t0
        with lock:
            if r.status_code == 201:
                res["post"].append(dt_s)
                res["acked"][key] = r.json()["id"]
            else:
                res["errors"].append(f"post: HTTP {r.status_code} {r.text[:120]}")

    threads = [threading.Thread(target=operator, args=(k, s), daemon=True)
               for k, s in enumerate(sessions)]  # fmt: skip
    for t in threads:
        t.start()
    pool = ThreadPoolExecutor(max_workers=64)
    tag = secrets.token_hex(4)

    def pour(n: int, prefix: str) -> float:
        t_start = time.monotonic()
        futures = []
        for i in range(n):
            due = t_start + i / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.05:
                res["late_starts"] += 1
            # places of earlier incidents: inside the city by construction (a jittered copy
            # can fall outside its edge and be refused, rightly, with a 422)
            lon, lat = places[int(rng.integers(len(places)))]
            futures.append(pool.submit(post, i, f"{prefix}-{i}", lon, lat))
        for f in futures:
            f.result()
        return time.monotonic() - t_start

    # warm-up, not counted: every worker builds its grid locator, pools and caches
    pour(int(args.rate * args.warmup), f"warm-{tag}")
    with lock:
        for k in ("refresh", "post", "errors"):
            res[k].clear()
        res["acked"].clear()
        res["late_starts"] = 0
    load0 = os.getloadavg()[0]
    busy0, own0 = machine_busy_s(), own_cpu_s()
    n_posts = int(args.rate * args.seconds)
    wall = pour(n_posts, f"load-{tag}")
    # server side = the whole machine minus this generator (web workers, PostgreSQL, Redis)
    res["server_cores"] = ((machine_busy_s() - busy0) - (own_cpu_s() - own0)) / wall
    res["generator_cores"] = (own_cpu_s() - own0) / wall
    pool.shutdown(wait=True)
    stop.set()
    for t in threads:
        t.join(35)
    res["wall"] = wall
    res["sent"] = n_posts
    res["load"] = (load0, os.getloadavg()[0])
    res["label"] = label
    return res


def lost(db_url: str, acked: dict[str, int]) -> list[str]:
    """Return the idempotency keys of acknowledged incidents the database does not hold."""
    from sqlalchemy import select

    from layers.db import Database
    from layers.models import IdempotencyKey, Incident

    db = Database(db_url)
    keys = list(acked)
    found: dict[str, int] = {}
    with db.session() as s:
        for start in range(0, len(keys), 5000):
            chunk = keys[start : start + 5000]
            rows = s.execute(
                select(IdempotencyKey.key, IdempotencyKey.incident_id)
                .join(Incident, Incident.id == IdempotencyKey.incident_id)
                .where(IdempotencyKey.key.in_(chunk))
            ).all()
            found.update({k: i for k, i in rows})
    db.dispose()
    return [k for k, i in acked.items() if found.get(k) != i]


#: Idempotency-Key prefixes of the incidents this generator posts (warm-up and measured).
KEY_PREFIXES = ("warm-", "load-")


def remove_posted(db_url: str) -> int:
    """Delete the incidents this generator posted (any run), with their events and keys.

    Each run adds ``rate x (warmup + seconds)`` incidents; left in place they pile up in the
    map's 24-hour window and the "today" counts, so every later phase would count and draw
    more than the last and runs would not compare. Called before the first phase and after
    each (after the lost-incident check), so every phase starts from the seeded city.
    Audit entries (escalations of posted incidents) stay: the audit log is append-only.
    """
    from sqlalchemy import text

    from layers.db import Database

    db = Database(db_url)
    like = " OR ".join(f"key LIKE '{p}%'" for p in KEY_PREFIXES)
    with db.session() as s:
        ids = f"SELECT incident_id FROM idempotency_keys WHERE {like}"
        n = s.execute(text(f"SELECT count(*) FROM ({ids}) AS posted")).scalar() or 0
        if n:
            s.execute(
                text(f"UPDATE incidents SET duplicate_of = NULL WHERE duplicate_of IN ({ids})")
            )
            s.execute(text(f"DELETE FROM incident_events WHERE incident_id IN ({ids})"))
            s.execute(text(f"CREATE TEMPORARY TABLE posted_ids AS {ids}"))
            s.execute(text(f"DELETE FROM idempotency_keys WHERE {like}"))
            s.execute(
                text("DELETE FROM incidents WHERE id IN (SELECT incident_id FROM posted_ids)")
            )
            s.execute(text("DROP TABLE posted_ids"))
    if n and db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE incidents, incident_events, idempotency_keys"))
    db.dispose()
    return int(n)


def report(res: dict) -> None:
    """Print one phase's numbers."""
    r, p = res["refresh"], res["post"]
    print(f"\n== {res['label']}: {res['wall']:.1f} s, load average {res['load'][0]:.1f} -> "
          f"{res['load'][1]:.1f}")  # fmt: skip
    print(f"  map refresh : {len(r):6,} done, p50 {pct(r, .5):7.1f} ms, p95 {pct(r, .95):7.1f} ms,"
          f" p99 {pct(r, .99):7.1f} ms, max {max(r, default=0) * 1e3:7.1f} ms")  # fmt: skip
    print(f"  incident POST: {len(p):6,} of {res['sent']:,} acknowledged "
          f"({len(p) / res['wall']:.1f}/s), p50 {pct(p, .5):7.1f} ms, p95 {pct(p, .95):7.1f} ms,"
          f" p99 {pct(p, .99):7.1f} ms")  # fmt: skip
    print(f"  CPU: server side (workers + database + Redis) {res['server_cores']:.2f} cores, "
          f"load generator {res['generator_cores']:.2f} cores")  # fmt: skip
    print(f"  errors: {len(res['errors'])}  late starts (>50 ms behind schedule): "
          f"{res['late_starts']}  lost acknowledged incidents: {len(res['lost'])}")  # fmt: skip
    for e in sorted(set(res["errors"]))[:5]:
        print(f"    e.g. {e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=os.environ.get("GRIDSIGHT_BENCH_PG_URL"), required=False)
    ap.add_argument("--redis", default=os.environ.get("GRIDSIGHT_TEST_REDIS_URL"))
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rate", type=float, default=100.0, help="incident POSTs per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load not counted")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--out", default="/tmp/gridsight-load", help="server logs")
    ap.add_argument("--keep", action="store_true",
                    help="keep the posted incidents (default: removed after each phase)")  # fmt: skip
    args = ap.parse_args()
    if not args.db:
        ap.error("--db is required (a seeded city; PostgreSQL for several workers)")
    if args.workers > 1 and not args.redis:
        ap.error("--redis is required for several workers")
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    if not args.keep:
        gone = remove_posted(args.db)
        if gone:
            print(f"removed {gone:,} incidents left by earlier runs of this generator")
    logins, token, city = accounts(args.db, args.sessions)
    print(f"load: {args.sessions} operator sessions x 1 refresh/s + {args.rate:g} incident "
          f"POST/s for {args.seconds:g} s; database {args.db.split('@')[-1]}")  # fmt: skip
    phases = []
    for workers in ([] if args.skip_baseline else [1]) + [args.workers]:
        label = ("baseline: 1 process (waitress, in-process events)" if workers == 1
                 else f"{workers} gunicorn workers + Redis")  # fmt: skip
        port = free_port()
        proc = start_server(args.db, port, workers, args.redis, out / f"server-{workers}.log")
        try:
            res = run_phase(label, f"http://127.0.0.1:{port}", logins, token, city, args)
        finally:
            stop_server(proc)
        res["lost"] = lost(args.db, res["acked"])
        if not args.keep:
            res["removed"] = remove_posted(args.db)
        report(res)
        phases.append(res)
    if len(phases) == 2:
        a, b = phases
        print("\n== ratio (baseline / several workers; > 1 means the workers are faster)")
        for name in ("refresh", "post"):
            print(f"  {name:8} p95: {pct(a[name], .95) / pct(b[name], .95):5.2f}x  "
                  f"p50: {pct(a[name], .5) / pct(b[name], .5):5.2f}x")  # fmt: skip
    final = phases[-1]
    ok = (pct(final["refresh"], .95) <= 300 and pct(final["post"], .95) <= 300
          and not final["errors"] and not final["lost"])  # fmt: skip
    print(f"\ngoal (p95 <= 300 ms for both, zero errors, zero lost): {'met' if ok else 'NOT met'}")
    json.dump({p["label"]: {k: v for k, v in p.items() if k not in ("acked",)} for p in phases},
              open(out / "results.json", "w"), default=str)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
