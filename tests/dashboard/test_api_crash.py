"""Crash test: SIGKILL a real server under intake load; no acknowledged incident is lost.

A load generator (8 threads, keep-alive, at most 4,000 requests) posts incidents
with unique Idempotency-Keys to ``python -m dashboard`` on 127.0.0.1 and records every 201.
Mid-run the server gets SIGKILL; it is restarted on the same SQLite file and every
acknowledged id must be there, with the same key still mapping to the same id.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from bench.incident_city import free_port, grid_center, start_server
from tests.dbs import new_db

pytestmark = pytest.mark.slow


def _token(db) -> str:
    from layers.services import users

    with db.session() as s:
        _row, plaintext = users.create_token(s, "crash-intake", "intake", actor="tests")
    return plaintext


def test_sigkill_under_load_loses_no_acknowledged_incident(db_backend, tmp_path):
    path = tmp_path / "crash.sqlite"
    db = new_db(path, db_backend)
    token = _token(db)
    db.dispose()
    port = free_port()
    proc = start_server(db.url, tmp_path, port)
    url = f"http://127.0.0.1:{port}/api/v1/incidents"
    acked: dict[str, int] = {}
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    budget = iter(range(4000))

    def worker(w: int) -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        while not stop.is_set():
            try:
                k = next(budget)
            except StopIteration:
                return
            key = f"crash-{w}-{k}"
            lon, lat = grid_center(k % 8, k % 2)
            with lock:
                sent.append(key)
            try:
                r = s.post(url, json={"lon": lon, "lat": lat, "category": "ENV",
                                      "description": key}, headers={"Idempotency-Key": key},
                           timeout=10)  # fmt: skip
            except requests.RequestException:
                continue
            if r.status_code == 201:
                with lock:
                    acked[key] = r.json()["id"]

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # kill once a good number is acknowledged (well before the budget runs out); how long that
    # takes depends on the machine, so the deadline is only a guard against a dead server
    deadline = t0 + 600
    while len(acked) < 100 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = len(acked)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(20)
    print(f"crash test: {killed_at} acknowledged at the kill after {time.monotonic() - t0:.1f} s, "
          f"{len(acked)} in total, {len(sent)} sent")  # fmt: skip
    assert killed_at >= 100, f"only {killed_at} acknowledged before the kill (server died?)"
    assert len(sent) > len(acked), "the kill should interrupt requests in flight"

    proc = start_server(db.url, tmp_path, port)
    try:
        from sqlalchemy import select

        from layers.db import Database
        from layers.models import IdempotencyKey, Incident

        check = Database(db.url)
        with check.session() as s:
            stored = set(s.scalars(select(Incident.id)))
            keys = dict(s.execute(select(IdempotencyKey.key, IdempotencyKey.incident_id)).all())
        check.dispose()
        lost = {k: i for k, i in acked.items() if i not in stored}
        assert not lost, f"{len(lost)} acknowledged incidents lost, e.g. {list(lost.items())[:3]}"
        assert all(keys[k] == i for k, i in acked.items())
        # a client retrying after the crash gets the same incidents back, never new ones
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        for key in list(acked)[:50]:
            k = int(key.rsplit("-", 1)[1])
            lon, lat = grid_center(k % 8, k % 2)
            r = s.post(url, json={"lon": lon, "lat": lat, "category": "ENV", "description": key},
                       headers={"Idempotency-Key": key}, timeout=10)  # fmt: skip
            assert r.status_code == 200 and r.json()["id"] == acked[key]
    finally:
        proc.kill()
        proc.wait(10)
