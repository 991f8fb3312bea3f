"""Operator API latency while a login flood hits the same server (argon2 per attempt).

Starts ``python -m dashboard`` (one process, waitress) on a free port against a small city
and, per configuration, measures the median latency of ``GET /api/v1/incidents?limit=20``
(an operator token) first on a quiet server (the baseline), then while ``--logins`` sign-ins
for unknown users are posted ``--parallel`` at a time. It prints both medians and their
ratio. Configurations:

- ``unbounded``: ``GRIDSIGHT_LOGIN_CONCURRENCY=64`` and every attempt from its own address
  (a trusted proxy's ``X-Forwarded-For``): what the server did before the bound, every
  attempt an argon2 verification, as many at once as threads;
- ``bounded``: the default concurrency (2), every attempt from its own address: only the
  verification bound protects the API;
- ``one-address``: the defaults, every attempt from one address: the per-address limit
  answers most attempts with 429 before any argon2 work;
- ``nat``: as ``one-address``, and during the flood ``--operators`` real operators sign in
  with their right passwords from that same address (a command centre behind one NAT
  address); their answers are printed too (all 302 is the goal).

Usage::

    python bench/bench_login.py [--logins 200 --parallel 32]
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.incident_city import free_port, start_server  # noqa: E402 - after the path

CONFIGS = {
    "unbounded": ({"GRIDSIGHT_LOGIN_CONCURRENCY": "64"}, True),
    "bounded": ({}, True),
    "one-address": ({}, False),
    "nat": ({}, False),
}
NAT_ADDRESS = "10.200.0.1"


def prepare(db_path: Path, operators: int = 0) -> tuple[str, list[tuple[str, str]]]:
    """Return an operator token and ``operators`` (name, password) pairs after migrating a
    small city into ``db_path``."""
    from bench.operator_city import build_city
    from layers.db import Database
    from layers.services import users

    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    build_city(db, incidents=200)
    people = [(f"op-{k:02d}", f"right-password-{k:02d}") for k in range(operators)]
    with db.session() as s:
        _row, token = users.create_token(s, "bench-ops", "operator", actor="bench")
        for name, password in people:
            users.create_user(s, name, "operator", password, actor="bench")
    db.dispose()
    return token, people


def api_latencies(port: int, token: str, stop: threading.Event, out: list[float]) -> None:
    """Append the latency (s) of API reads to ``out`` until ``stop`` is set."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        t0 = time.perf_counter()
        conn.request("GET", "/api/v1/incidents?limit=20", headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        out.append(time.perf_counter() - t0)
    conn.close()


def one_login(port: int, i: int, distinct: bool, who: tuple[str, str] | None = None) -> int:
    """Return the status of one sign-in: an unknown user (its own client address when
    ``distinct``, else the NAT address), or ``who`` = (name, password) from the NAT address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" if distinct else NAT_ADDRESS
    fwd = {"X-Forwarded-For": address}
    conn.request("GET", "/login", headers=fwd)
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = "; ".join(h.split(";", 1)[0] for h in resp.headers.get_all("Set-Cookie") or [])
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    name, password = who or (f"ghost-{i}", "guess-123456")
    body = urlencode({"username": name, "password": password, "csrf_token": token})
    conn.request("POST", "/login", body=body, headers={
        **fwd, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def run_config(name: str, args, tmp: Path) -> dict:
    """Return the quiet and flooded medians of one configuration."""
    env, distinct = CONFIGS[name]
    env = {**env, "GRIDSIGHT_TRUSTED_PROXIES": "127.0.0.1"}
    data = tmp / name
    data.mkdir()
    token, people = prepare(data / "gs.sqlite", args.operators if name == "nat" else 0)
    port = free_port()
    proc = start_server(data / "gs.sqlite", data, port, extra_env=env, timeout_s=120)
    try:
        quiet: list[float] = []
        stop = threading.Event()
        reader = threading.Thread(target=api_latencies, args=(port, token, stop, quiet))
        reader.start()
        time.sleep(args.quiet_s)
        stop.set()
        reader.join()
        flooded: list[float] = []
        stop = threading.Event()
        reader = threading.Thread(target=api_latencies, args=(port, token, stop, flooded))
        t0 = time.perf_counter()
        operator_statuses: list[int] = []

        def operators() -> None:
            # one after another, spread over the flood, each retried on 503 "busy" like a browser
            for k, who in enumerate(people):
                time.sleep(0.05)
                status = 503
                for _ in range(20):
                    status = one_login(port, 10_000 + k, False, who)
                    if status != 503:
                        break
                    time.sleep(2)
                operator_statuses.append(status)

        signer = threading.Thread(target=operators)
        with ThreadPoolExecutor(args.parallel) as pool:
            reader.start()
            signer.start()
            statuses = list(pool.map(lambda i: one_login(port, i, distinct), range(args.logins)))
            signer.join()
        flood_s = time.perf_counter() - t0
        stop.set()
        reader.join()
    finally:
        proc.terminate()
        proc.wait(30)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    ops = {s: operator_statuses.count(s) for s in sorted(set(operator_statuses))}
    return {"quiet": statistics.median(quiet), "flood": statistics.median(flooded),
            "n": len(flooded), "flood_s": flood_s, "statuses": counts,
            "operators": ops}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--quiet-s", type=float, default=5.0)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--operators", type=int, default=30, help="real sign-ins in `nat`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            r = run_config(name, args, Path(tmp))
            print(f"{name:12} API median quiet {r['quiet'] * 1e3:7.1f} ms | under "
                  f"{args.logins} logins x{args.parallel}: {r['flood'] * 1e3:7.1f} ms "
                  f"({r['n']} reads) = {r['flood'] / r['quiet']:6.1f}x | flood lasted "
                  f"{r['flood_s']:5.1f} s, statuses {r['statuses']}"
                  + (f", operators {r['operators']}" if r["operators"] else ""),
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
