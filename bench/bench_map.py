"""Benchmark the operator map at city scale: first drawn map, refresh bytes and server time.

Seeds the "city" scale (10k grids, 12k cameras, 1M incidents) with ``layers.seed`` into a
SQLite file once and reuses it, starts the app in-process (waitress, free port), then:

1. time to first drawn map in headless Chromium (navigation -> every layer on the map), and
   the bytes the browser downloaded for it (scripts, layers, first callbacks);
2. refresh payload bytes and server time per live refresh (the real ``/_dash-update-component``
   request of the operator-tick callback), with a few new incidents per refresh and idle;
3. the baseline of re-sending the whole figure: a folium re-render of the same layers
   (``/export/situation.html`` for the whole city) and a full count resync.

Usage::

    python bench/bench_map.py [--db /tmp/gridsight-bench/city.sqlite] [--refreshes 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_city(db_path: Path):
    """Return a migrated Database holding the city-scale demo (seeded once, then reused)."""
    from sqlalchemy import func, select

    from layers.db import Database
    from layers.models import Grid

    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(Grid))
    if not n:
        from layers.seed import seed_city

        t0 = time.perf_counter()
        print(f"seeding the city scale into {db_path} (once) ...", flush=True)
        counts = seed_city(db, scale="city", seed=42, progress=False)
        print(f"  seeded {counts} in {time.perf_counter() - t0:.0f} s", flush=True)
    return db


def start_app(db_path: Path, data_dir: Path):
    """Return (app, base url, waitress server) with the app serving in a daemon thread."""
    from waitress import create_server

    from dashboard.app import create_app
    from layers.settings import load_settings

    settings = load_settings(db_url=f"sqlite:///{db_path}", data_dir=data_dir, seed_on_start=False,
                             simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    srv = create_server(app.server, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=srv.run, daemon=True).start()
    return app, f"http://127.0.0.1:{srv.effective_port}", srv


def make_login(app, name: str) -> tuple[str, str]:
    """Return (username, password) of a fresh operator account."""
    import secrets

    from layers.services import users

    password = secrets.token_urlsafe(12)
    with app.server.config["GRIDSIGHT"].db.session() as s:
        if users.get_user(s, name) is None:
            users.create_user(s, name, "operator", password, actor="bench")
        else:
            users.set_password(s, name, password, actor="bench")
    return name, password


LAYERS_DRAWN_JS = """
var m = window.gridsight && window.gridsight.map; if (!m) { return null; }
var out = {};
m.eachLayer(function (l) {
  var p = l.options && l.options.pane;
  if (p && p.indexOf('gs-') === 0 && !l.getLayers && !(l instanceof L.Renderer)) {
    out[p] = (out[p] || 0) + 1; }
});
var img = document.querySelector('.leaflet-gs-heat-pane img');
out.heat = !!(img && img.complete && img.naturalWidth > 0);
return out;
"""


def _load_once(d, base: str, n_grids: int) -> dict:
    """Return seconds from navigation to every layer drawn, and bytes downloaded."""
    d.get(base + "/healthz")  # a page on the same origin, to clear the stored view
    d.execute_script("localStorage.clear()")
    t0 = time.perf_counter()
    d.get(base + "/")
    drawn = None
    while time.perf_counter() - t0 < 90:
        c = d.execute_script(LAYERS_DRAWN_JS)
        if (c and c.get("gs-grids", 0) >= n_grids and c.get("gs-cameras", 0) > 0
                and c.get("gs-centers", 0) > 0 and c.get("heat")):  # fmt: skip
            drawn = time.perf_counter() - t0
            break
        time.sleep(0.02)
    total, data = d.execute_script(
        "var n = performance.getEntriesByType('navigation')[0];"
        "var r = performance.getEntriesByType('resource');"
        "var b = n.transferSize; r.forEach(function (e) { b += e.transferSize; });"
        "var data = 0; r.forEach(function (e) { if (e.name.indexOf('/layers/') >= 0 ||"
        " e.name.indexOf('_dash-update-component') >= 0 || e.name.indexOf('/map/') >= 0)"
        " { data += e.transferSize; } });"
        "return [b, data];"
    )
    return {"seconds": drawn, "bytes_total": total, "bytes_data": data}


def first_map(base: str, user: str, password: str, n_grids: int, runs: int) -> dict:
    """Return cold-cache and warm-cache (ETag revalidation) first-drawn-map measurements."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--window-size=1920,1080"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    out: dict = {"cold": [], "warm": []}
    try:
        d.get(base + "/login")
        d.find_element(By.NAME, "username").send_keys(user)
        d.find_element(By.NAME, "password").send_keys(password)
        d.find_element(By.CSS_SELECTOR, "form button").click()
        while "/login" in d.current_url:
            time.sleep(0.05)
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        for _ in range(runs):
            out["cold"].append(_load_once(d, base, n_grids))
        d.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
        _load_once(d, base, n_grids)  # fills the browser cache
        for _ in range(runs):
            out["warm"].append(_load_once(d, base, n_grids))
    finally:
        d.quit()
    return out


def refresh_outputs(app) -> list[str]:
    """Return the outputs ("id.prop") of the live refresh callback, as the app registered it."""
    key = next(k for k in app.callback_map if "operator-cursor.data" in k and "hideout" in k)
    return key.strip(".").split("...")


def dash_refresh_request(session, base: str, outputs: list[str], fdict: dict,
                         cursor: dict | None, n: int):  # fmt: skip
    """Return (response bytes, seconds, new cursor) of one operator-tick refresh via HTTP."""
    body = {
        "output": ".." + "...".join(outputs) + "..",
        "outputs": [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in outputs],
        "inputs": [
            {"id": "operator-tick", "property": "n_intervals", "value": n},
            {"id": "operator-filter", "property": "data", "value": fdict},
            {"id": "app-lang", "property": "data", "value": "zh"},
        ],
        "state": [{"id": "operator-cursor", "property": "data", "value": cursor}],
        "changedPropIds": ["operator-tick.n_intervals"],
    }
    t0 = time.perf_counter()
    r = session.post(base + "/_dash-update-component", json=body)
    dt_s = time.perf_counter() - t0
    if r.status_code == 204:
        return b"", dt_s, cursor
    r.raise_for_status()
    new_cursor = r.json()["response"]["operator-cursor"]["data"]
    return r.content, dt_s, new_cursor


def http_session(base: str, user: str, password: str):
    """Return a requests session logged in to the app (CSRF header set)."""
    import re

    import requests

    s = requests.Session()
    page = s.get(base + "/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = s.post(base + "/login", data={"username": user, "password": password,
                                      "csrf_token": token}, allow_redirects=False)  # fmt: skip
    assert r.status_code == 302, r.status_code
    s.headers["X-CSRFToken"] = s.cookies.get("_csrf_token")
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, default=Path("/tmp/gridsight-bench/city.sqlite"))
    p.add_argument("--refreshes", type=int, default=30)
    p.add_argument("--new-per-refresh", type=int, default=3)
    p.add_argument("--browser-runs", type=int, default=3)
    args = p.parse_args(argv)
    args.db.parent.mkdir(parents=True, exist_ok=True)

    from sqlalchemy import func, select

    from layers.models import Camera, Grid, Incident
    from layers.services import mapdata
    from layers.services.incidents import create_incident

    db = ensure_city(args.db)
    with db.session() as s:
        n_grids = s.scalar(select(func.count()).select_from(Grid))
        n_cams = s.scalar(select(func.count()).select_from(Camera))
        n_inc = s.scalar(select(func.count()).select_from(Incident))
    print(f"city: {n_grids} grids, {n_cams} cameras, {n_inc} incidents ({args.db})")
    app, base, _srv = start_app(args.db, args.db.parent)
    user, password = make_login(app, "bench-operator")
    http = http_session(base, user, password)

    # static layers, as the browser fetches them (server cache warm after the first call)
    static = {}
    for layer in ("grids", "districts", "streets", "communities", "cameras", "centers"):
        t0 = time.perf_counter()
        r = http.get(f"{base}/layers/{layer}.geojson")
        static[layer] = (len(r.content), time.perf_counter() - t0)
    static_bytes = sum(b for b, _ in static.values())
    print("static layers (first request, server-side build + cache):")
    for layer, (b, s_) in static.items():
        print(f"  {layer:12s} {b / 1e6:8.2f} MB  {s_ * 1000:8.0f} ms")

    runs = first_map(base, user, password, n_grids, args.browser_runs)
    secs = {}
    for kind, label in (("cold", "cold browser cache"), ("warm", "warm cache, ETag revalidation")):
        secs[kind] = [r["seconds"] for r in runs[kind] if r["seconds"] is not None]
        print(f"time to first drawn map, {label} (every layer drawn):",
              ", ".join(f"{s:.2f} s" for s in secs[kind]),
              f"(median {statistics.median(secs[kind]):.2f} s)")  # fmt: skip
        print(
            f"  downloaded: {runs[kind][-1]['bytes_total'] / 1e6:.2f} MB in all, of which map "
            f"data {runs[kind][-1]['bytes_data'] / 1e6:.2f} MB (layers, heat PNG, callbacks)"
        )

    # live refreshes through the real Dash endpoint
    fdict = {"window": "24h"}
    outputs = refresh_outputs(app)
    body, full_s, cursor = dash_refresh_request(http, base, outputs, fdict, None, 0)
    full_bytes = len(body)
    idle = [dash_refresh_request(http, base, outputs, fdict, cursor, i + 1) for i in range(10)]
    cursor = idle[-1][2]
    busy_bytes, busy_s = [], []
    grids = mapdata.city_bounds(db)
    import numpy as np

    rng = np.random.default_rng(7)
    for i in range(args.refreshes):
        with db.session() as s:
            for _ in range(args.new_per_refresh):
                lon = rng.uniform(grids[0], grids[2])
                lat = rng.uniform(grids[1], grids[3])
                try:
                    create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"})
                except ValueError:
                    continue  # a random point outside every grid
        b, sec, cursor = dash_refresh_request(http, base, outputs, fdict, cursor, 100 + i)
        busy_bytes.append(len(b))
        busy_s.append(sec)

    def q(values, pct):
        return float(np.percentile(values, pct))

    print(
        f"refresh, full resync (first call / filter change): {full_bytes / 1e3:.1f} kB, "
        f"{full_s * 1000:.0f} ms"
    )
    print(
        f"refresh, idle (nothing new): {max(len(b) for b, _, _ in idle)} B, median "
        f"{statistics.median(s for _, s, _ in idle) * 1000:.1f} ms"
    )
    print(
        f"refresh with {args.new_per_refresh} new incidents ({args.refreshes} runs): "
        f"median {statistics.median(busy_bytes) / 1e3:.2f} kB (p95 {q(busy_bytes, 95) / 1e3:.2f}),"
        f" server+HTTP median {statistics.median(busy_s) * 1000:.0f} ms "
        f"(p95 {q(busy_s, 95) * 1000:.0f} ms)"
    )

    # baseline: re-sending the whole figure with folium (the same layers, whole city)
    t0 = time.perf_counter()
    r = http.get(base + "/export/situation.html?window=24h&lang=zh")
    folium_s = time.perf_counter() - t0
    folium_bytes = len(r.content)
    print(
        f"baseline folium re-render of the same layers: {folium_bytes / 1e6:.2f} MB, "
        f"{folium_s:.1f} s"
    )
    initial = static_bytes + full_bytes
    med = statistics.median(busy_bytes)
    print("ratios:")
    print(
        f"  refresh / initial map data payload: {100 * med / initial:.3f} % "
        f"(goal <= 5 %; initial = static layers {static_bytes / 1e6:.2f} MB + first counts)"
    )
    print(
        f"  refresh / folium re-render: {100 * med / folium_bytes:.4f} % "
        f"({folium_bytes / med:.0f}x smaller)"
    )
    print(
        f"  refresh server time median {statistics.median(busy_s) * 1000:.0f} ms (goal <= 100 ms)"
        f" vs folium {folium_s * 1000:.0f} ms ({folium_s / statistics.median(busy_s):.0f}x)"
    )
    print(json.dumps({"grids": n_grids, "cameras": n_cams, "incidents": n_inc,
                      "first_map_s": secs, "static_bytes": static_bytes,
                      "refresh_full_bytes": full_bytes, "refresh_median_bytes": med,
                      "refresh_median_ms": statistics.median(busy_s) * 1000,
                      "folium_bytes": folium_bytes, "folium_s": folium_s}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
