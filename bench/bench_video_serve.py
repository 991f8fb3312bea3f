"""Benchmark page latency while viewers hang on a dead camera: stream pool vs one shared pool.

Starts the real app (``create_app``, SQLite in a temp folder) behind waitress in this process,
once per server layout, and measures ``/healthz`` and ``/login`` latency (median, p95, max
over ``--probes`` requests each):

1. baseline: no stream open;
2. ``--views`` MJPEG views of a camera that never delivers a frame, held open by clients that
   read nothing more (caps set high enough that every view is served: the pool layout alone
   is measured), on the server as built (``dashboard.server.create_waitress_server``: a
   stream pool of its own);
3. the same on waitress's single shared pool (``threads`` = 32, how GridSight served before),
   where each held view takes a page thread.

A probe that gets no answer within ``--timeout`` counts as that timeout. Ratios are printed
against the baseline of the same run. Usage::

    python bench/bench_video_serve.py [--views 100] [--probes 40]
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEAD_URL = "rtsp://127.0.0.1:9/never"


def start(tmp: Path, views: int, routed: bool):
    """Return (app, waitress server, base url) serving in a daemon thread."""
    from waitress import create_server

    from dashboard.app import create_app
    from dashboard.server import create_waitress_server
    from layers.models import Camera
    from layers.settings import load_settings

    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False, host="127.0.0.1",
                             stream_threads=views + 16, video_max_streams=views + 8,
                             video_max_streams_per_user=views + 8)  # fmt: skip
    app = create_app(settings, start_background=False)
    with app.server.config["GRIDSIGHT"].db.session() as s:
        s.add(Camera(id=1, gb_id="53010200001320000001", name="dead", cls=1, lon=102.7, lat=25.0,
                     stream_url=DEAD_URL))  # fmt: skip
    if routed:
        srv = create_waitress_server(app.server, settings, port=0)
    else:
        srv = create_server(app.server, host="127.0.0.1", port=0, threads=settings.web.threads,
                            channel_timeout=120, connection_limit=views + 100)  # fmt: skip
    threading.Thread(target=_run, args=(srv,), daemon=True).start()
    return app, srv, f"http://127.0.0.1:{srv.effective_port}"


def _run(srv) -> None:
    try:
        srv.run()
    except OSError:  # closed under the loop at the end of a phase
        pass


def login_cookie(app, base: str) -> str:
    """Return the session cookie header of a fresh operator signed in over HTTP."""
    import requests

    from layers.services import users

    with app.server.config["GRIDSIGHT"].db.session() as s:
        users.create_user(s, "bench-op", "operator", "bench-Passw0rd!", actor="bench")
    sess = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', sess.get(f"{base}/login").text)
    sess.post(f"{base}/login", data={"username": "bench-op", "password": "bench-Passw0rd!",
              "csrf_token": token.group(1)}, allow_redirects=False)  # fmt: skip
    return "; ".join(f"{k}={v}" for k, v in sess.cookies.get_dict().items())


def hold_views(port: int, cookie: str, n: int) -> list[socket.socket]:
    """Return ``n`` sockets with an MJPEG view of the dead camera requested (never read)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET /video/1.mjpg HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        socks.append(s)
    time.sleep(2.0)  # let every view reach its thread
    return socks


def probe(base: str, path: str, n: int, timeout: float) -> list[float]:
    """Return the latency (ms) of ``n`` GETs of ``path``; a timeout counts as ``timeout``."""
    import requests

    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            requests.get(base + path, timeout=timeout)
            out.append((time.perf_counter() - t0) * 1000)
        except requests.RequestException:
            out.append(timeout * 1000)
    return out


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"median {statistics.median(ms):7.1f} ms  p95 {q[18]:7.1f} ms  max {max(ms):7.1f} ms"


def phase(label: str, views: int, routed: bool, probes: int, timeout: float, base_ms=None):
    with tempfile.TemporaryDirectory() as tmp:
        app, srv, base = start(Path(tmp), views, routed)
        ctx = app.server.config["GRIDSIGHT"]
        try:
            cookie = login_cookie(app, base)
            socks = hold_views(srv.effective_port, cookie, views) if views else []
            result = {path: probe(base, path, probes, timeout) for path in ("/healthz", "/login")}
            for s in socks:
                s.close()
            deadline = time.monotonic() + 30  # let the abandoned views end before closing
            while ctx.video_streams.open_streams() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            ctx.stream_hub.close()
            srv.close()
            time.sleep(0.5)
    for path, ms in result.items():
        ratio = ""
        if base_ms is not None:
            ratio = f"  x{statistics.median(ms) / statistics.median(base_ms[path]):.2f} of baseline"
        print(f"{label:44s} {path:9s} {summary(ms)}{ratio}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=100)
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # camera reconnect and teardown noise
    base = phase("baseline: no stream", 0, True, args.probes, args.timeout)
    phase(f"stream pool: {args.views} held dead-camera views", args.views, True, args.probes,
          args.timeout, base)  # fmt: skip
    # every probe here may wait the whole timeout: a few are enough to show it
    phase(f"one shared pool (32): {args.views} held views", args.views, False,
          min(args.probes, 6), args.timeout, base)  # fmt: skip


if __name__ == "__main__":
    main()
