"""Live events through the app factory (one process): the operator refresh reads the
worker-local bus (quiet ticks without a database query, camera status patches, the database
still exact when the bus cannot vouch), the ``/api/v1/events`` SSE route (format, resume,
scopes, validation), intake with Redis down, and the secret key made once by racing
processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from dash import Patch, no_update
from sqlalchemy import event

from bench.operator_city import build_city, cell_center
from dashboard.app import create_app
from layers.services import cameras as camera_service
from layers.services import mapdata, refresh
from layers.services.scope import Scope
from layers.settings import Settings, load_settings
from tests.helpers_auth import bearer, login

REPO = Path(__file__).resolve().parents[2]
F = {"window": "24h"}


def _settings(tmp_path, **kw) -> Settings:
    kw = {"seed_on_start": False, "simulator": False, **kw}
    return load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path, **kw)


@pytest.fixture
def app_city(tmp_path):
    app = create_app(_settings(tmp_path), start_background=False)
    ids = build_city(app.server.config["GRIDSIGHT"].db, incidents=30)
    return app, ids


def _operator():
    """Return the operator map's live refresh module (``op.live_refresh``)."""
    from dashboard.operator import live

    return live


@contextmanager
def count_queries(db):
    n = {"sql": 0}

    def before(*_args, **_kw):
        n["sql"] += 1

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield n
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def _new_incident(db, col=3, row=1, category="ENV") -> int:
    from layers.services.incidents import create_incident

    lon, lat = cell_center(col, row)
    with db.session() as s:
        return create_incident(s, {"lon": lon, "lat": lat, "category": category}).id


def _ops(patch) -> list[tuple[list, object]]:
    return [(o["location"], o["params"].get("value")) for o in patch.to_plotly_json()["operations"]]


# -- the operator refresh on the bus -------------------------------------------------------


def test_quiet_ticks_ask_the_bus_not_the_database(app_city):
    app, _ = app_city
    op = _operator()
    db = app.server.config["GRIDSIGHT"].db
    with app.server.test_request_context():
        first = op.live_refresh(F, None, None, "zh", Scope.ALL)
        cursor = first.cursor
        assert cursor["bep"] == app.server.config["GRIDSIGHT"].events.epoch
        sql_per_tick = []
        for _ in range(refresh.DB_PROBE_TICKS):
            with count_queries(db) as n:
                out = op.live_refresh(F, cursor, "operator-tick", "zh", Scope.ALL)
            sql_per_tick.append(n["sql"])
            assert out.grids is no_update and out.live is no_update
            cursor = out.cursor
        # every tick but the probe tick (for writers outside the bus) is database-free
        assert sql_per_tick[:-1] == [0] * (refresh.DB_PROBE_TICKS - 1) and sql_per_tick[-1] > 0
        inc = _new_incident(db)
        with count_queries(db) as n:
            out = op.live_refresh(F, cursor, "operator-tick", "zh", Scope.ALL)
        assert n["sql"] > 0  # an incident event: the database gives the exact counts
        feats = out.live.to_plotly_json()["operations"][0]["params"]["value"]
        assert [f["id"] for f in feats] == [inc]
        assert out.cursor["bus"] != cursor["bus"]


def test_writer_outside_the_bus_shows_at_the_probe_tick(app_city):
    """The layers CLI writes without the app's bus: the map still sees it within 10 ticks."""
    from layers.db import Database

    app, _ = app_city
    op = _operator()
    ctx = app.server.config["GRIDSIGHT"]
    cli_db = Database(ctx.db.url)  # another process's Database: no publisher attached
    with app.server.test_request_context():
        cursor = op.live_refresh(F, None, None, "zh", Scope.ALL).cursor
        inc = _new_incident(cli_db)
        seen_at = None
        for tick in range(1, refresh.DB_PROBE_TICKS + 1):
            out = op.live_refresh(F, cursor, "operator-tick", "zh", Scope.ALL)
            cursor = out.cursor
            if out.live is not no_update:
                seen_at = tick
                feats = out.live.to_plotly_json()["operations"][0]["params"]["value"]
                assert [f["id"] for f in feats] == [inc]
                break
        assert seen_at == refresh.DB_PROBE_TICKS


def test_camera_status_reaches_an_open_map(app_city):
    app, ids = app_city
    op = _operator()
    db = app.server.config["GRIDSIGHT"].db
    cam = ids["cameras"][0]
    with app.server.test_request_context():
        first = op.live_refresh(F, None, None, "zh", Scope.ALL)
        # the first tick sends every camera's status (the cached layer may be older)
        statuses = mapdata.camera_statuses(db, scope=Scope.ALL)
        full = first.cameras
        assert {int(k): v for k, v in full["st"].items()} == {
            k: v for k, v in statuses.items() if v != full["base"]
        }
        cursor = first.cursor
        camera_service.set_status(db, cam, "offline")
        with count_queries(db) as n:
            out = op.live_refresh(F, cursor, "operator-tick", "zh", Scope.ALL)
        assert isinstance(out.cameras, Patch)
        assert _ops(out.cameras) == [(["st", str(cam)], "offline")]
        assert n["sql"] == 0 and out.grids is no_update  # a camera event needs no DB query
        out2 = op.live_refresh(F, out.cursor, "operator-tick", "zh", Scope.ALL)
        assert out2.cameras is no_update  # delivered once


def test_refresh_falls_back_to_the_database_when_the_bus_cannot_vouch(app_city):
    app, _ = app_city
    op = _operator()
    ctx = app.server.config["GRIDSIGHT"]
    with app.server.test_request_context():
        cursor = op.live_refresh(F, None, None, "zh", Scope.ALL).cursor
        # a cursor from another process's in-process bus (or tampered with): database path
        for bad in ({**cursor, "bep": "elsewhere"}, {**cursor, "bus": "x; DROP"},
                    {**cursor, "bus": None, "bgen": "7"}):  # fmt: skip
            with count_queries(ctx.db) as n:
                out = op.live_refresh(F, bad, "operator-tick", "zh", Scope.ALL)
            assert n["sql"] > 0 and out.cursor["bep"] == ctx.events.epoch
            assert out.cursor["cams"] is False  # the camera overlay is resent at the resync
        inc = _new_incident(ctx.db)
        ctx.events.ring.mark_gap()  # events may have been lost
        out = op.live_refresh(F, cursor, "operator-tick", "zh", Scope.ALL)
        feats = out.live.to_plotly_json()["operations"][0]["params"]["value"]
        assert [f["id"] for f in feats] == [inc]
        full = op.live_refresh(
            F, {**out.cursor, "n": refresh.RESYNC_TICKS}, "operator-tick", "zh", Scope.ALL
        )
        assert isinstance(full.cameras, dict) and "base" in full.cameras


def test_refresh_callback_over_http_patches_the_camera_layer(app_city):
    from tests.dashboard.test_operator_app import _refresh_body
    from tests.helpers_auth import csrf_headers

    app, ids = app_city
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.post("/_dash-update-component", json=_refresh_body(app), headers=csrf_headers(c))
    assert r.status_code == 200
    resp = r.get_json()["response"]
    assert "base" in resp["operator-cameras"]["hideout"]
    cursor = resp["operator-cursor"]["data"]
    camera_service.set_status(app.server.config["GRIDSIGHT"].db, ids["cameras"][1], "stale")
    r = c.post("/_dash-update-component", json=_refresh_body(app, cursor),
               headers=csrf_headers(c))  # fmt: skip
    hideout = r.get_json()["response"]["operator-cameras"]["hideout"]
    assert hideout["__dash_patch_update"] == "__dash_patch_update"
    assert hideout["operations"][0]["location"] == ["st", str(ids["cameras"][1])]


# -- SSE ----------------------------------------------------------------------------------------


class SSE:
    """Read a streaming test-client response message by message (in a thread)."""

    def __init__(self, response) -> None:
        self.response = response
        self.messages: list[dict] = []
        self.comments: list[str] = []
        self._buf = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.response.response:
                self._parse(chunk.decode() if isinstance(chunk, bytes) else chunk)
                if self._stop.is_set():
                    break
        finally:
            self.response.close()  # from this thread: the generator is not running now

    def _parse(self, text: str) -> None:
        self._buf += text
        while "\n\n" in self._buf:
            block, self._buf = self._buf.split("\n\n", 1)
            msg: dict = {}
            for line in block.splitlines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    key, _, value = line.partition(": ")
                    msg[key] = value
            if "data" in msg:
                msg["data"] = json.loads(msg["data"])
                self.messages.append(msg)

    def wait(self, pred, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(0.02)
        return pred(self)

    def close(self) -> None:
        self._stop.set()  # the reader stops after the next message or heartbeat
        self._thread.join(10)


def _sse(client, query: str = "heartbeat=1", headers=None) -> SSE:
    r = client.get(f"/api/v1/events?{query}", headers=headers or {}, buffered=False)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "text/event-stream" and r.headers["Cache-Control"] == "no-cache"
    return SSE(r)


def test_sse_streams_committed_events_with_ids_and_heartbeats(app_city):
    app, ids = app_city
    db = app.server.config["GRIDSIGHT"].db
    c = app.server.test_client()
    login(c, app, "operator")
    stream = _sse(c)
    try:
        assert stream.wait(lambda s: any("GridSight live events" in x for x in s.comments))
        inc = _new_incident(db)
        camera_service.set_status(db, ids["cameras"][0], "offline")
        assert stream.wait(lambda s: len(s.messages) >= 2)
        created, cam = stream.messages[:2]
        assert created["event"] == "incident.created" and created["data"]["id"] == inc
        assert cam["event"] == "camera.status" and cam["data"]["status"] == "offline"
        bus = app.server.config["GRIDSIGHT"].events
        assert [created["id"], cam["id"]] == [e.id for e in bus.read("0-0").events[-2:]]
        assert stream.wait(lambda s: "keepalive" in s.comments, timeout=3)
    finally:
        stream.close()


def test_sse_resumes_after_last_event_id_and_filters_kinds(app_city):
    app, ids = app_city
    db = app.server.config["GRIDSIGHT"].db
    bus = app.server.config["GRIDSIGHT"].events
    c = app.server.test_client()
    login(c, app, "dispatcher")
    mark = bus.last_id
    first = _new_incident(db)
    camera_service.set_status(db, ids["cameras"][0], "offline")
    second = _new_incident(db, 1, 1)
    stream = _sse(c, "heartbeat=1&kinds=incident.created", {"Last-Event-ID": mark})
    try:
        assert stream.wait(lambda s: len(s.messages) >= 2)
        assert [m["data"]["id"] for m in stream.messages] == [first, second]
        assert {m["event"] for m in stream.messages} == {"incident.created"}
    finally:
        stream.close()
    # the same via the query parameter, for clients that cannot set headers
    stream = _sse(c, f"heartbeat=1&kinds=camera.status&last_event_id={mark}")
    try:
        assert stream.wait(lambda s: len(s.messages) >= 1)
        assert stream.messages[0]["data"]["id"] == ids["cameras"][0]
    finally:
        stream.close()


def test_sse_says_resync_when_events_may_be_lost(app_city):
    app, _ = app_city
    c = app.server.test_client()
    login(c, app, "operator")
    stream = _sse(c, "heartbeat=1", {"Last-Event-ID": "99999999999999-0"})  # not ours
    try:
        assert stream.wait(lambda s: any(m.get("event") == "resync" for m in s.messages))
    finally:
        stream.close()


def test_sse_respects_district_scopes(app_city):
    app, ids = app_city
    db = app.server.config["GRIDSIGHT"].db
    c = app.server.test_client()
    login(c, app, "operator", scopes={"districts": ["530102"]})  # the left half (columns 0-3)
    stream = _sse(c)
    try:
        time.sleep(0.2)
        outside = _new_incident(db, 6, 1)  # district 530103
        inside = _new_incident(db, 1, 1)
        camera_service.set_status(db, ids["cameras"][5], "offline")  # gb_id 530102...: in scope
        assert stream.wait(lambda s: len(s.messages) >= 2)
        time.sleep(0.3)
        got = [(m["event"], m["data"]["id"]) for m in stream.messages]
        assert got == [("incident.created", inside), ("camera.status", ids["cameras"][5])]
        assert outside not in [i for _, i in got]
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("kinds=incident.deleted", {}, "kinds"),
        ("heartbeat=0", {}, "heartbeat"),
        ("heartbeat=soon", {}, "heartbeat"),
        ("since=5", {}, "since"),
        ("", {"Last-Event-ID": "yesterday"}, "Last-Event-ID"),
        ("last_event_id=1-2-3", {}, "last_event_id"),
    ],
)
def test_sse_bad_input_names_the_field(app_city, query, headers, field):
    app, _ = app_city
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get(f"/api/v1/events?{query}", headers=headers)
    assert r.status_code == 400
    assert r.get_json()["errors"][0]["field"] == field


def test_sse_access(app_city):
    app, _ = app_city
    anon = app.server.test_client()
    assert anon.get("/api/v1/events").status_code == 401
    for role, expected in (("privacy_officer", 403), ("auditor", 403)):
        c = app.server.test_client()
        login(c, app, role)
        assert c.get("/api/v1/events").status_code == expected
    assert anon.get("/api/v1/events", headers=bearer(app, "intake")).status_code == 403
    r = anon.get("/api/v1/events?heartbeat=1", headers=bearer(app, "gis"), buffered=False)
    assert r.status_code == 200
    r.close()


def test_sse_stream_ends_when_access_is_revoked(app_city, monkeypatch):
    from dashboard.routes import events as sse_route
    from layers.services import users

    monkeypatch.setattr(sse_route, "RECHECK_S", 0.5)
    app, _ = app_city
    c = app.server.test_client()
    name = login(c, app, "operator")
    stream = _sse(c)
    try:
        time.sleep(0.3)
        with app.server.config["GRIDSIGHT"].db.session() as s:
            users.set_active(s, name, False, actor="tests", actor_role="admin")
        stream._thread.join(5)
        assert not stream._thread.is_alive()  # the generator returned: the stream ended
    finally:
        stream.close()


# -- Redis down, /healthz, secret key -------------------------------------------------------------


def test_intake_succeeds_while_redis_is_down(tmp_path):
    from tests.redis_server import free_port

    app = create_app(_settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                     start_background=False)  # fmt: skip
    try:
        ctx = app.server.config["GRIDSIGHT"]
        build_city(ctx.db, incidents=0)
        c = app.server.test_client()
        lon, lat = cell_center(2, 2)
        r = c.post("/api/v1/incidents", json={"lon": lon, "lat": lat, "category": "ENV"},
                   headers=bearer(app, "intake"))  # fmt: skip
        assert r.status_code == 201, r.get_json()
        health = c.get("/healthz").get_json()
        assert health["events"] == {"backend": "redis", "complete": False, "connected": False}
        assert ctx.events.stats()["queued"] >= 1  # kept for when Redis is back
        # the map is still exact: the refresh asks the database
        op = _operator()
        with app.server.test_request_context():
            out = op.live_refresh(F, None, None, "zh", Scope.ALL)
            assert (
                sum(
                    int(v)
                    for v in json.loads(
                        json.dumps(out.grids.to_plotly_json()["operations"][0]["params"]["value"])
                    ).values()
                )
                == 1
            )
    finally:
        from dashboard.server import shutdown_services

        shutdown_services(app.server.config["GRIDSIGHT"])


def test_healthz_reports_the_leader_and_the_bus(tmp_path):
    app = create_app(_settings(tmp_path, simulator=True, simulator_interval_s=3600))
    try:
        doc = app.server.test_client().get("/healthz").get_json()
        assert doc["leader"] is True and doc["simulator"] == "running"
        assert doc["events"]["backend"] == "local" and doc["events"]["complete"] is True
        second = create_app(_settings(tmp_path, simulator=True, simulator_interval_s=3600))
        try:
            doc2 = second.server.test_client().get("/healthz").get_json()
            assert doc2["leader"] is False and doc2["simulator"] == "standby"
        finally:
            from dashboard.server import shutdown_services

            shutdown_services(second.server.config["GRIDSIGHT"])
    finally:
        from dashboard.server import shutdown_services

        shutdown_services(app.server.config["GRIDSIGHT"])


def test_secret_key_is_made_once_by_racing_processes(tmp_path):
    code = ("import sys; from pathlib import Path; from dashboard.app import _secret_key; "
            "from layers.settings import load_settings; "
            "print(_secret_key(load_settings(data_dir=Path(sys.argv[1]))))")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]  # fmt: skip
    keys = {p.communicate(timeout=600)[0].strip() for p in procs}  # six imports on a busy box
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["secret_key"]  # no temp files left


def test_several_workers_without_redis_are_refused(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GRIDSIGHT_WORKERS": "3",
           "GRIDSIGHT_DB_URL": f"sqlite:///{tmp_path / 'gs.sqlite'}"}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "dashboard"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2
    assert "configuration error: GRIDSIGHT_WORKERS=3 needs GRIDSIGHT_REDIS_URL" in r.stderr


def test_open_event_streams_are_capped_per_user_and_in_total(tmp_path):
    """More streams than the caps: the one over a cap answers 429 naming its setting; a
    closed stream frees its place."""
    app = create_app(_settings(tmp_path, events_max_streams=5, events_max_streams_per_user=2),
                     start_background=False)  # fmt: skip
    build_city(app.server.config["GRIDSIGHT"].db, incidents=0)
    limiter = app.server.config["GRIDSIGHT"].event_streams
    alice, bob = app.server.test_client(), app.server.test_client()
    login(alice, app, "operator")
    login(bob, app, "dispatcher")
    token = bearer(app, "gis")
    path = "/api/v1/events?heartbeat=1"
    opened = [alice.get(path, buffered=False) for _ in range(2)]
    assert [r.status_code for r in opened] == [200, 200]
    over = alice.get(path, buffered=False)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
    assert "GRIDSIGHT_EVENTS_MAX_STREAMS_PER_USER" in over.get_json()["error"]
    assert over.get_json()["errors"][0]["field"] == "events"
    opened += [bob.get(path, buffered=False) for _ in range(2)]  # another user: 4 open
    opened.append(bob.application.test_client().get(path, headers=token, buffered=False))
    assert [r.status_code for r in opened] == [200] * 5
    assert sum(limiter.open_streams().values()) == 5
    carol = app.server.test_client()
    login(carol, app, "admin")
    for client, headers in ((app.server.test_client(), bearer(app, "gis")), (carol, {})):
        full = client.get(path, headers=headers, buffered=False)
        assert full.status_code == 429, full.get_data(as_text=True)
        assert "GRIDSIGHT_EVENTS_MAX_STREAMS)" in full.get_json()["error"]
    opened.pop(0).close()  # the server closes the response: its place is free again
    assert sum(limiter.open_streams().values()) == 4
    again = carol.get(path, buffered=False)
    assert again.status_code == 200
    for r in (*opened, again):
        r.close()
    assert limiter.open_streams() == {}


def test_event_stream_cap_settings_are_checked():
    with pytest.raises(ValueError, match="GRIDSIGHT_EVENTS_MAX_STREAMS=70"):
        load_settings({}, stream_threads=64, events_max_streams=70)
