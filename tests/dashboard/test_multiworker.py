"""Several web workers for real: ``python -m dashboard`` with ``GRIDSIGHT_WORKERS=3`` (gunicorn,
gthread) on a SQLite file and on PostgreSQL (``db_backend``), live events through a private
redis-server on a free port.

Requests are pinned to a worker by keeping their HTTP connection open (``/healthz`` says which
process answered), so each check runs on every worker: a session cookie made by one worker
is accepted by the others (one secret key), an incident posted to one worker reaches the SSE
streams and the operator refresh of all of them exactly once, a camera status published by
another process reaches an open map, a password change ends HTTP Basic on every worker, the
background services run in exactly one worker, and another takes over when it is killed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from bench.operator_city import build_city, cell_center, refresh_body
from layers.db import Database
from layers.leader import read_holder, sqlite_lock_path
from layers.models import Incident, IncidentEvent
from layers.services.audit_key import AuditKey, default_key_path
from tests import dbs
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WORKERS = 3
SIM_INTERVAL_S = 0.5


class Worker:
    """An HTTP connection kept open to one worker process, with a cookie jar."""

    def __init__(self, port: int, jar: dict | None = None) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.jar: dict[str, str] = jar if jar is not None else {}
        self.pid = self.json("/healthz")["pid"]

    def request(self, method: str, path: str, body=None, headers=None):
        headers = dict(headers or {})
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if isinstance(body, dict) and headers.get("Content-Type") == "application/json":
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        for header in resp.headers.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                self.jar[key] = morsel.value
        return resp.status, resp.headers, data

    def json(self, path: str, headers=None) -> dict:
        status, _h, data = self.request("GET", path, headers=headers)
        assert status == 200, (path, status, data[:200])
        return json.loads(data)

    def close(self) -> None:
        self.conn.close()


class NotAllWorkers(AssertionError):
    """Fewer worker processes answered than expected (one may still be booting)."""


def each_worker(port: int, n: int = WORKERS, jar: dict | None = None, tries: int = 300):
    """Return {pid: Worker} with one open connection to each of ``n`` worker processes."""
    found: dict[int, Worker] = {}
    for _ in range(tries):
        w = Worker(port, dict(jar or {}))
        if w.pid in found:
            w.close()
        else:
            found[w.pid] = w
        if len(found) == n:
            return found
    for w in found.values():
        w.close()
    raise NotAllWorkers(f"reached only {len(found)} of {n} workers in {tries} connections")


def login(w: Worker, username: str, password: str) -> None:
    status, _h, page = w.request("GET", "/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
    form = urlencode({"username": username, "password": password, "csrf_token": token})
    status, _h, _ = w.request("POST", "/login", form,
                              {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 302


class Stream(threading.Thread):
    """An SSE stream read on its own connection to one worker."""

    def __init__(self, port: int, pid: int, headers: dict) -> None:
        super().__init__(daemon=True)
        self.messages: list[dict] = []
        for _ in range(300):  # a connection to worker ``pid``
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            self.conn.request("GET", "/healthz")
            resp = self.conn.getresponse()
            if json.loads(resp.read())["pid"] == pid:
                break
            self.conn.close()
        else:
            pytest.fail(f"no connection to worker {pid}")
        self.pid = pid
        self.conn.request("GET", "/api/v1/events?heartbeat=1", headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.stop = False
        self.start()

    def run(self) -> None:
        buf = ""
        try:
            while not self.stop:
                chunk = self.resp.read1(65536)
                if not chunk:
                    return
                buf += chunk.decode()
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    msg = dict(ln.split(": ", 1) for ln in block.splitlines()
                               if ": " in ln and not ln.startswith(":"))  # fmt: skip
                    if "data" in msg:
                        msg["data"] = json.loads(msg["data"])
                        self.messages.append(msg)
        except (OSError, http.client.HTTPException):
            return  # we shut the socket down (close): the chunked body ends mid-way

    def ids(self, kind: str = "incident.created") -> list[int]:
        return [m["data"]["id"] for m in list(self.messages) if m.get("event") == kind]

    def close(self) -> None:
        import socket

        self.stop = True
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader: read1 -> b""
            except OSError:
                pass  # already gone
        self.join(10)
        self.conn.close()


def wait_for(pred, timeout: float = 20.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, db_backend):
    from layers.services import users

    tmp = tmp_path_factory.mktemp("cluster")
    redis_server = RedisServer(tmp / "redis", persistent=False).start()
    db_url = dbs.db_url(tmp / "gs.sqlite", db_backend)
    # the servers seal the audit log with the key beside their data folder; writes from here
    # (users changed while they run) need it too
    db = Database(db_url, audit_key=AuditKey(default_key_path(tmp)))
    db.migrate()
    ids = build_city(db, incidents=5)
    passwords = {"op": "operator-pw-1234", "gis": "gis-user-pw-1234"}
    with db.session() as s:
        users.create_user(s, "op", "operator", passwords["op"], actor="tests")
        users.create_user(s, "gisuser", "operator", passwords["gis"], actor="tests")
        _row, intake = users.create_token(s, "intake-1", "intake", actor="tests")
        _row, wall = users.create_token(s, "wall-1", "gis", actor="tests")
    port = free_port()
    stream = f"gridsight-test:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "GRIDSIGHT_DB_URL": db_url, "GRIDSIGHT_DATA_DIR": str(tmp),
           "GRIDSIGHT_HOST": "127.0.0.1", "GRIDSIGHT_PORT": str(port),
           "GRIDSIGHT_WORKERS": str(WORKERS), "GRIDSIGHT_THREADS": "8",
           "GRIDSIGHT_REDIS_URL": redis_server.url, "GRIDSIGHT_REDIS_STREAM": stream,
           "GRIDSIGHT_SEED_ON_START": "false", "GRIDSIGHT_SIMULATOR": "true",
           "GRIDSIGHT_SIMULATOR_INTERVAL_S": str(SIM_INTERVAL_S),
           "GRIDSIGHT_LEADER_RETRY_S": "1"}  # fmt: skip
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip

    def all_up():
        if proc.poll() is not None:
            pytest.fail(f"server exited: {(tmp / 'server.log').read_text()[-3000:]}")
        try:
            ws = each_worker(port, tries=60)
        except (OSError, http.client.HTTPException, NotAllWorkers):
            return None
        ok = all(w.json("/healthz")["events"]["complete"] for w in ws.values())
        for w in ws.values():
            w.close()
        return ok

    try:
        assert wait_for(all_up, timeout=120, step=1), (tmp / "server.log").read_text()[-3000:]
        yield {"port": port, "db": db, "ids": ids, "passwords": passwords, "tmp": tmp,
               "intake": {"Authorization": f"Bearer {intake}"},
               "wall": {"Authorization": f"Bearer {wall}"}, "redis": redis_server,
               "stream": stream, "proc": proc}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        redis_server.stop()


def test_a_session_cookie_from_one_worker_works_on_all(cluster):
    port = cluster["port"]
    first = Worker(port)
    login(first, "op", cluster["passwords"]["op"])
    assert "gridsight_session" in first.jar
    workers = each_worker(port, jar=first.jar)
    try:
        for pid, w in workers.items():
            status, headers, _ = w.request("GET", "/", headers={"Accept": "text/html"})
            assert status == 200, (pid, status, headers.get("Location"))
        secret = (cluster["tmp"] / "secret_key").read_text()
        assert len(secret) == 64 and not list(cluster["tmp"].glob(".secret_key.*"))
    finally:
        first.close()
        for w in workers.values():
            w.close()


def _refresh_outputs() -> list[str]:
    return ["operator-grids.hideout", "operator-live.data", "operator-feed.children",
            "operator-cursor.data", "operator-kpi-open.children",
            "operator-kpi-new_today.children", "operator-cameras.hideout"]  # fmt: skip


def refresh(w: Worker, cursor: dict | None, n: int = 1) -> dict:
    body = refresh_body(_refresh_outputs(), cursor, n)
    status, _h, data = w.request("POST", "/_dash-update-component", body, {
        "Content-Type": "application/json", "X-CSRFToken": w.jar["_csrf_token"]})  # fmt: skip
    assert status == 200, data[:300]
    return json.loads(data)["response"]


def _live_ids(resp: dict) -> list[int]:
    live = resp.get("operator-live", {}).get("data")
    if not live:
        return []
    if "operations" in live:  # a Patch: features extended
        return [f["id"] for op in live["operations"] for f in op["params"]["value"]]
    return [f["id"] for f in live["features"]]


def test_a_posted_incident_reaches_every_workers_sse_and_refresh_once(cluster):
    port = cluster["port"]
    first = Worker(port)
    login(first, "op", cluster["passwords"]["op"])
    workers = each_worker(port, jar=first.jar)
    streams = [Stream(port, pid, cluster["wall"]) for pid in workers]
    try:
        cursors = {pid: refresh(w, None)["operator-cursor"]["data"] for pid, w in workers.items()}
        pids = list(workers)
        poster = workers[pids[0]]
        lon, lat = cell_center(5, 2)
        status, _h, data = poster.request(
            "POST", "/api/v1/incidents", {"lon": lon, "lat": lat, "category": "SECURITY"},
            {**cluster["intake"], "Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 201, data
        inc = json.loads(data)["id"]
        for s in streams:
            assert wait_for(lambda s=s: inc in s.ids(), timeout=15), f"worker {s.pid} missed {inc}"
        # the operator refresh of every worker (cursors made by another worker) shows it once
        for k, pid in enumerate(pids):
            w = workers[pid]
            cursor = cursors[pids[(k + 1) % len(pids)]]
            seen: list[int] = []
            for tick in range(2, 12):
                resp = refresh(w, cursor, tick)
                cursor = resp.get("operator-cursor", {}).get("data", cursor)
                seen += _live_ids(resp)
                if inc in seen:
                    break
                time.sleep(0.3)
            assert seen.count(inc) == 1, (pid, seen)
        time.sleep(1.5)  # simulated incidents keep coming: no stream repeats or skips one
        with cluster["db"].session() as s:
            created = set(s.scalars(select(Incident.id).where(Incident.id >= inc)))
        for s in streams:
            got = s.ids()
            assert len(got) == len(set(got)), f"duplicates on worker {s.pid}"
            assert created - set(got) <= {max(created)}, f"worker {s.pid} missed events"
    finally:
        for s in streams:
            s.close()
        first.close()
        for w in workers.values():
            w.close()


def test_camera_status_from_another_process_reaches_an_open_map(cluster):
    """A video worker elsewhere writes a camera's status: every open map shows it."""
    from layers import events
    from layers.services import cameras
    from streams.events import RedisEventBus

    port = cluster["port"]
    first = Worker(port)
    login(first, "op", cluster["passwords"]["op"])
    workers = each_worker(port, jar=first.jar)
    cam = cluster["ids"]["cameras"][0]
    bus = RedisEventBus(cluster["redis"].url, cluster["stream"]).start()
    db = Database(cluster["db"].url)
    detach = events.attach(db, bus.publish)
    try:
        cursors = {pid: refresh(w, None)["operator-cursor"]["data"] for pid, w in workers.items()}
        before = cameras.get_camera(db, cam).status
        new = "offline" if before != "offline" else "online"
        cameras.set_status(db, cam, new)
        for pid, w in workers.items():
            cursor, patches = cursors[pid], []
            for tick in range(2, 20):
                resp = refresh(w, cursor, tick)
                cursor = resp.get("operator-cursor", {}).get("data", cursor)
                hide = resp.get("operator-cameras", {}).get("hideout")
                if hide and "operations" in hide:
                    patches += [(o["location"], o["params"]["value"]) for o in hide["operations"]]
                if patches:
                    break
                time.sleep(0.3)
            assert patches == [(["st", str(cam)], new)], (pid, patches)
    finally:
        detach()
        bus.close()
        first.close()
        for w in workers.values():
            w.close()


def _basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_a_password_change_ends_basic_auth_on_every_worker(cluster):
    from layers.services import users

    port = cluster["port"]
    old = cluster["passwords"]["gis"]
    workers = each_worker(port)
    try:
        for w in workers.values():  # each worker verifies and caches the credentials
            for _ in range(2):
                status, _h, _ = w.request("GET", "/ogc/collections", headers=_basic("gisuser", old))
                assert status == 200
        new = "gis-user-pw-5678"
        with cluster["db"].session() as s:
            users.set_password(s, "gisuser", new, actor="tests", actor_role="admin")
        for pid, w in workers.items():
            status, _h, _ = w.request("GET", "/ogc/collections", headers=_basic("gisuser", old))
            assert status == 401, f"worker {pid} still accepts the old password"
            status, _h, _ = w.request("GET", "/ogc/collections", headers=_basic("gisuser", new))
            assert status == 200
        with cluster["db"].session() as s:
            users.set_active(s, "gisuser", False, actor="tests", actor_role="admin")
        for pid, w in workers.items():
            status, _h, _ = w.request("GET", "/ogc/collections", headers=_basic("gisuser", new))
            assert status == 401, f"worker {pid} still accepts a disabled account"
    finally:
        for w in workers.values():
            w.close()


def _simulated_since(db: Database, after_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(IncidentEvent).where(
            IncidentEvent.id > after_id, IncidentEvent.actor == "simulator")) or 0)  # fmt: skip


def _last_event(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.max(IncidentEvent.id))) or 0)


def _advisory_holders(db: Database, name: str) -> int:
    """Return how many sessions hold GridSight's PostgreSQL advisory lock ``name``."""
    from sqlalchemy import text

    from layers.db import advisory_key

    key = advisory_key(name) & 0xFFFFFFFFFFFFFFFF  # a bigint key: classid high, objid low
    with db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"),
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar())  # fmt: skip


def _leaders(port: int) -> tuple[list[int], dict] | None:
    try:
        workers = each_worker(port, tries=300)
    except NotAllWorkers:
        return None  # the replacement of a killed worker is still booting
    try:
        docs = {pid: w.json("/healthz") for pid, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    return [pid for pid, d in docs.items() if d["leader"]], docs


def test_background_services_run_in_exactly_one_worker_and_move_when_it_dies(cluster):
    db, port = cluster["db"], cluster["port"]
    leaders, docs = wait_for(lambda: _leaders(port), timeout=30)
    assert len(leaders) == 1, docs
    leader = leaders[0]
    assert docs[leader]["simulator"] == "running"
    assert all(d["simulator"] == "standby" for p, d in docs.items() if p != leader)
    lock = sqlite_lock_path(db, "leader")
    if lock is not None:  # SQLite: the flock file names its holder
        assert read_holder(lock)["pid"] == str(leader)
    else:  # PostgreSQL: exactly one session holds the advisory lock
        assert _advisory_holders(db, "leader") == 1
    # one simulator at 0.5 s, not three: count the incidents it adds over a window
    mark = _last_event(db)
    window = 6.0
    time.sleep(window)
    n = _simulated_since(db, mark)
    assert 2 <= n <= window / SIM_INTERVAL_S + 2, f"{n} simulated incidents in {window} s"
    # the leader dies without cleaning up; another worker takes the lease over (its next try
    # comes within GRIDSIGHT_LEADER_RETRY_S; the deadline is generous for a busy machine)
    os.kill(leader, signal.SIGKILL)

    def new_holder():
        if lock is not None:
            pid = read_holder(lock).get("pid")
        else:
            found = _leaders(port)
            pid = str(found[0][0]) if found is not None and len(found[0]) == 1 else None
        return pid if pid not in (None, str(leader)) else None

    holder = wait_for(new_holder, timeout=120)
    assert holder is not None, "nobody took the lease over"
    mark = _last_event(db)
    assert wait_for(lambda: _simulated_since(db, mark) >= 2, timeout=120), (
        "simulator did not resume"
    )

    def one_leader():
        found = _leaders(port)
        return found if found is not None and len(found[0]) == 1 else None

    leaders, docs = wait_for(one_leader, timeout=40)
    assert leaders == [int(holder)] and leader not in docs
    mark = _last_event(db)
    time.sleep(window)
    assert _simulated_since(db, mark) <= window / SIM_INTERVAL_S + 2  # still only one


def test_a_logout_on_one_worker_ends_the_session_on_every_worker(cluster):
    """The session is revoked in the database: the worker that logged out refuses the copied
    cookie at once, every other worker once its principal cache's 5 s are over."""
    from dashboard.auth import PRINCIPAL_RECHECK_S

    port = cluster["port"]
    first = Worker(port)
    login(first, "op", cluster["passwords"]["op"])
    copied = dict(first.jar)
    workers = each_worker(port, jar=copied)
    try:
        for pid, w in workers.items():  # every worker caches the live session
            status, _h, _ = w.request("GET", "/api/v1/incidents?limit=1")
            assert status == 200, pid
        pids = list(workers)
        w0 = workers[pids[0]]
        _s, _h, page = w0.request("GET", "/logout")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        status, _h, _ = w0.request("POST", "/logout", urlencode({"csrf_token": token}),
                                   {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert status == 302
        logged_out = time.monotonic()
        w0.jar = dict(copied)  # the copied cookie, replayed on the same worker
        status, _h, _ = w0.request("GET", "/api/v1/incidents?limit=1")
        assert status == 401, "the worker that logged out still accepts the session"
        while time.monotonic() - logged_out < PRINCIPAL_RECHECK_S + 0.5:
            for w in workers.values():  # keep each pinned connection open (keepalive 5 s)
                w.request("GET", "/healthz")
            time.sleep(1.0)
        for pid, w in workers.items():
            status, _h, _ = w.request("GET", "/api/v1/incidents?limit=1")
            assert status == 401, f"worker {pid} accepted a logged-out session after 5 s"
            status, headers, _ = w.request("GET", "/", headers={"Accept": "text/html"})
            assert status == 302 and headers["Location"].startswith("/login"), pid
    finally:
        first.close()
        for w in workers.values():
            w.close()
