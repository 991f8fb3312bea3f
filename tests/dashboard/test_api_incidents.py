"""The /api/v1 incident API through the real app factory, auth guard and a SQLite fixture city."""

from __future__ import annotations

import csv
import io

import pytest

from bench.incident_city import grid_center
from dashboard.app import create_app
from layers.services.scope import Scope
from layers.settings import load_settings
from tests.dbs import new_db
from tests.helpers_auth import bearer, csrf_headers, login


@pytest.fixture(scope="module")
def app(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    db = new_db(tmp / "gs.sqlite", db_backend)
    settings = load_settings(db_url=db.url, data_dir=tmp, seed_on_start=False, simulator=False)
    return create_app(settings, db=db, start_background=False)


@pytest.fixture(scope="module")
def intake(app):
    return bearer(app, "intake")


@pytest.fixture(scope="module")
def dispatcher(app):
    return bearer(app, "dispatcher")


def post(app, headers, body, **kw):
    return app.server.test_client().post("/api/v1/incidents", json=body, headers=headers, **kw)


def body(i=1, j=0, **kw):
    lon, lat = grid_center(i, j)
    return {"lon": lon, "lat": lat, "category": "ENV", **kw}


def test_post_returns_201_with_assignment_after_commit(app, intake):
    r = post(app, intake, body(2, 1, description="垃圾堆放"))
    assert r.status_code == 201, r.get_json()
    doc = r.get_json()
    city = app.server.config["GRIDSIGHT"].db.city
    assert doc["grid_id"] == city["grids"][(2, 1)]
    assert doc["assignee_id"] == city["workers"][(2, 1)]
    assert doc["center_id"] == city["centers"][("community", 2)]
    assert r.headers["Location"] == f"/api/v1/incidents/{doc['id']}"
    # committed: a fresh session (another connection) sees it
    from layers.models import Incident

    with app.server.config["GRIDSIGHT"].db.session() as s:
        assert s.get(Incident, doc["id"]) is not None


def test_idempotency_key_replays_the_first_answer(app, intake):
    h = {**intake, "Idempotency-Key": "3b1f-retry-1"}
    a = post(app, h, body(3, 0))
    b = post(app, h, body(3, 0))
    assert a.status_code == 201 and b.status_code == 200
    assert b.headers["Idempotent-Replayed"] == "true"
    assert a.get_json()["id"] == b.get_json()["id"]
    c = post(app, h, body(4, 0))
    assert c.status_code == 409 and c.get_json()["errors"][0]["field"] == "Idempotency-Key"
    bad = post(app, {**intake, "Idempotency-Key": "has space"}, body())
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"lat": 25.01, "category": "ENV"}, "lon"),
        ({"lon": 200, "lat": 25.01, "category": "ENV"}, "lon"),
        ({"lon": 100.0, "lat": 25.01, "category": "ENV"}, "lon/lat"),
        ({"lon": 102.71, "lat": 25.01, "category": "NOPE"}, "category"),
        ({"lon": 102.71, "lat": 25.01, "category": "ENV", "priority": 0}, "priority"),
        ({"lon": 102.71, "lat": 25.01, "category": "ENV", "colour": "red"}, "colour"),
        ({"lon": 102.71, "lat": 25.01, "category": "ENV",
          "occurred_at": "2026-11-23T08:00:00"}, "occurred_at"),
        ({"lon": 102.71, "lat": 25.01, "category": "ENV", "source": "pigeon"}, "source"),
        ([1, 2], "body"),
    ],
)  # fmt: skip
def test_bad_input_is_422_naming_the_field(app, intake, payload, field):
    r = post(app, intake, payload)
    assert r.status_code == 422, r.get_data(as_text=True)
    fields = [e["field"] for e in r.get_json()["errors"]]
    assert field in fields
    assert all(e["message"] for e in r.get_json()["errors"])


def test_not_json_is_400(app, intake):
    r = app.server.test_client().post(
        "/api/v1/incidents", data="lon=1", headers={**intake, "Content-Type": "text/plain"}
    )
    assert r.status_code == 400 and "application/json" in r.get_json()["error"]


def test_auth_is_required_and_roles_enforced(app, intake):
    c = app.server.test_client()
    assert c.post("/api/v1/incidents", json=body()).status_code == 401
    assert c.get("/api/v1/incidents").status_code == 401
    # an intake token may file but not read the queue
    assert c.get("/api/v1/incidents", headers=intake).status_code == 403
    assert c.get("/api/v1/openapi.json").status_code == 200


def test_batch_import_reports_each_item(app, intake):
    items = [body(5, 0), {"lon": 0, "lat": 0, "category": "ENV"}, body(5, 1), {"lat": 1}]
    r = app.server.test_client().post(
        "/api/v1/incidents/batch", json={"incidents": items}, headers=intake
    )
    doc = r.get_json()
    assert r.status_code == 200, doc
    assert [c["index"] for c in doc["created"]] == [0, 2]
    assert [e["index"] for e in doc["errors"]] == [1, 3]
    assert doc["errors"][0]["errors"][0]["field"] == "lon/lat"


def test_list_with_filters_and_next_links(app, intake, dispatcher):
    for k in range(12):
        post(app, intake, body(6, 0, category="SECURITY", description=f"n{k}"))
    c = app.server.test_client()
    r = c.get("/api/v1/incidents?category=SECURITY&limit=5", headers=dispatcher)
    doc = r.get_json()
    assert r.status_code == 200 and doc["total"] == 12 and len(doc["items"]) == 5
    seen = {i["id"] for i in doc["items"]}
    while doc["next"]:
        doc = c.get(doc["next"], headers=dispatcher).get_json()
        seen |= {i["id"] for i in doc["items"]}
    assert len(seen) == 12
    lon, lat = grid_center(6, 0)
    r = c.get(f"/api/v1/incidents?bbox={lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}",
              headers=dispatcher)  # fmt: skip
    assert r.get_json()["total"] == 12
    assert r.get_json()["items"][0]["reporter_phone"] == ""
    for q, field in [("bbox=1,2,3", "bbox"), ("start=yesterday", "start"),
                     ("start=2026-11-23T00:00:00", "start"), ("limit=0", "limit"),
                     ("status=lost", "status"), ("colour=red", "colour")]:  # fmt: skip
        r = c.get(f"/api/v1/incidents?{q}", headers=dispatcher)
        assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == field, q


def test_workflow_actions_through_the_api(app, intake):
    iid = post(app, intake, body(7, 1)).get_json()["id"]
    client = app.server.test_client()
    login(client, app, "dispatcher")
    h = csrf_headers(client)

    def act(**kw):
        return client.post(f"/api/v1/incidents/{iid}/actions", json=kw, headers=h)

    assert act(action="close").status_code == 409
    assert act(action="register", reason="valid").status_code == 200
    r = act(action="dispatch")
    assert r.status_code == 200 and r.get_json()["status"] == "dispatched"
    assert act(action="escalate", reason="big").get_json()["escalation_level"] == "community"
    assert act(action="fly").status_code == 422
    assert act(action="reassign", assignee_id=10**6).status_code == 404
    doc = client.get(f"/api/v1/incidents/{iid}").get_json()
    assert [e["action"] for e in doc["history"]] == ["create", "register", "dispatch", "escalate"]
    assert doc["history"][1]["actor"].startswith("dispatcher-")
    assert "accept" in doc["allowed_actions"]
    # every dispatch action is also in the hash-chained audit log, and the chain verifies
    from sqlalchemy import select

    from layers.models import AuditEntry
    from layers.services import audit

    db = app.server.config["GRIDSIGHT"].db
    with db.session() as s:
        logged = s.scalars(select(AuditEntry.action).where(
            AuditEntry.target == f"incident:{iid}")).all()  # fmt: skip
    assert logged == ["incident.register", "incident.dispatch", "incident.escalate"]
    assert audit.verify(db).ok
    assert client.get("/api/v1/incidents/99999999").status_code == 404
    assert client.get(f"/api/v1/incidents/{2**70}").status_code == 404
    # an intake token cannot drive the workflow
    r = app.server.test_client().post(f"/api/v1/incidents/{iid}/actions",
                                      json={"action": "accept"}, headers=intake)  # fmt: skip
    assert r.status_code == 403


def test_kpi_export_csv_and_xlsx(app, dispatcher, intake):
    post(app, intake, body(1, 1))  # at least one case in the window, whatever ran before
    c = app.server.test_client()
    q = "start=2020-01-01T00:00:00%2B08:00&end=2030-01-01T00:00:00%2B08:00&group_by=district"
    r = c.get(f"/api/v1/kpi?{q}", headers=dispatcher)
    assert r.status_code == 200 and r.get_json()["rows"]
    r = c.get(f"/api/v1/kpi?{q}&format=csv&lang=en", headers=dispatcher)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][3] == "cases due"
    r = c.get(f"/api/v1/kpi?{q}&format=xlsx", headers=dispatcher)
    assert r.status_code == 200 and r.data[:2] == b"PK"
    assert c.get("/api/v1/kpi?start=2020-01-01T00:00:00Z", headers=dispatcher).status_code == 400
    # found by schemathesis: a year-1 start with a +00:01 offset overflowed the UTC conversion
    r = c.get("/api/v1/kpi?end=2000-01-01T00:00:00Z&start=0001-01-01T00:00:00%2B00:01",
              headers=dispatcher)  # fmt: skip
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "start"


def test_categories_and_openapi_cover_every_route(app, intake):
    c = app.server.test_client()
    cats = c.get("/api/v1/categories", headers=intake).get_json()["categories"]
    assert any(x["code"] == "ENV" and x["owner_level"] == "grid" for x in cats)
    doc = c.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    rules = {
        str(r.rule).replace("<int:incident_id>", "{incident_id}")
        for r in app.server.url_map.iter_rules()
        if str(r.rule).startswith("/api/v1/")
        and (r.endpoint.startswith("incident_api.") or r.rule == "/api/v1/openapi.json")
    }
    assert rules == set(doc["paths"])


def test_dispatch_page_functions(app, intake):
    """The dispatcher page's data functions (the callbacks are thin wrappers around them)."""
    import sys

    # the module Dash loaded from pages_folder (importing dashboard.pages.dispatch again
    # would register /dispatch twice)
    dispatch = sys.modules["pages.dispatch"]
    db = app.server.config["GRIDSIGHT"].db
    first = post(app, intake, body(0, 0, description="near cameras")).get_json()["id"]
    dup = post(app, intake, body(0, 0, description="same again")).get_json()["id"]
    with app.server.test_request_context():
        rows = {r["id"]: r for r in dispatch.queue_rows(db, lang="en", scope=Scope.ALL)}
        assert rows[first]["sla_state"] == "ok" and rows[first]["sla_hours"] > 0
        assert rows[dup]["duplicate"] and not rows[first]["duplicate"]
        view = dispatch.detail_view(db, dup, "zh", "dispatcher", scope=Scope.ALL)
        assert view["merge"][0]["value"] == first
        assert "register" in view["actions"] and "close" not in view["actions"]
        assert view["assignees"] and len(view["map"]) >= 3
        seen = dispatch.detail_view(db, first, "en", "dispatcher", scope=Scope.ALL)["info"]
        assert "/video/" in str(seen)  # a camera sees grid (0,0)'s centre
        ok, msg = dispatch.perform_action(
            db, dup, "merge", actor="d", role="dispatcher", into=first, scope=Scope.ALL
        )
        assert ok and f"#{dup}" in msg
        ok, msg = dispatch.perform_action(
            db, dup, "dispatch", actor="d", role="dispatcher", lang="en", scope=Scope.ALL
        )
        assert not ok and "Not done" in msg
        assert dup not in {r["id"] for r in dispatch.queue_rows(db, scope=Scope.ALL)}


def test_dispatch_queue_totals_are_not_capped_by_the_rows_shown(app, intake, monkeypatch):
    import sys

    dispatch = sys.modules["pages.dispatch"]
    db = app.server.config["GRIDSIGHT"].db
    for k in range(3):
        post(app, intake, body(k, 2, description=f"case {k}"))
    monkeypatch.setattr(dispatch, "QUEUE_LIMIT", 1)
    with app.server.test_request_context():
        rows = dispatch.queue_rows(db, scope=Scope.ALL)
        totals = dispatch.queue_totals(db, scope=Scope.ALL)
        assert len(rows) == 1 and totals["open"] >= 3
        tiles = str(dispatch.queue_summary(rows, "en", totals))
        assert f"{totals['open']:,}" in tiles


def test_district_scope_limits_what_a_dispatcher_sees(app, intake):
    west = post(app, intake, body(1, 1, description="district 0")).get_json()["id"]
    east = post(app, intake, body(6, 1, description="district 1")).get_json()["id"]
    client = app.server.test_client()
    login(client, app, "dispatcher", scopes={"districts": ["530103"]})  # columns 4-7
    doc = client.get("/api/v1/incidents?limit=1000").get_json()
    city = app.server.config["GRIDSIGHT"].db.city
    east_grids = {gid for (i, _j), gid in city["grids"].items() if i >= 4}
    ids = {x["id"] for x in doc["items"]}
    assert east in ids and west not in ids
    assert all(x["grid_id"] in east_grids for x in doc["items"])
    assert client.get(f"/api/v1/incidents/{west}").status_code == 404
    r = client.post(f"/api/v1/incidents/{west}/actions", json={"action": "register"},
                    headers=csrf_headers(client))  # fmt: skip
    assert r.status_code == 404
    assert client.get(f"/api/v1/incidents/{east}").status_code == 200


def test_dispatch_page_pause_and_resume_the_clock(app, intake):
    import sys

    dispatch = sys.modules["pages.dispatch"]
    db = app.server.config["GRIDSIGHT"].db
    iid = post(app, intake, body(4, 1, description="extension asked")).get_json()["id"]
    with app.server.test_request_context():
        assert (
            "pause" in dispatch.detail_view(db, iid, "en", "dispatcher", scope=Scope.ALL)["actions"]
        )
        ok, _ = dispatch.perform_action(
            db, iid, "pause", actor="d", role="dispatcher", scope=Scope.ALL
        )
        assert ok
        row = {r["id"]: r for r in dispatch.queue_rows(db, scope=Scope.ALL)}[iid]
        assert row["sla_state"] == "paused"
        actions = dispatch.detail_view(db, iid, "en", "dispatcher", scope=Scope.ALL)["actions"]
        assert "resume" in actions and "pause" not in actions
        ok, _ = dispatch.perform_action(
            db, iid, "resume", actor="d", role="dispatcher", scope=Scope.ALL
        )
        assert (
            ok
            and {r["id"]: r for r in dispatch.queue_rows(db, scope=Scope.ALL)}[iid]["sla_state"]
            == "ok"
        )
