"""Reporters in clear for dispatchers and the case's handler, masked for everybody else.

Through the real app: the incident API (one case and the list) and the dispatch page's detail
callback, as the browser calls it. The handler is the user who accepted the case, while it is
still with them (a reassign hands it on: masked again).
"""

from __future__ import annotations

import json

import pytest

from bench.incident_city import grid_center
from dashboard.app import create_app
from dashboard.policy import Principal, may_see_personal_data
from layers.settings import load_settings
from tests.dbs import new_db
from tests.helpers_auth import bearer, csrf_headers, login

PHONE = "13812345678"
MASKED = "138****5678"
NAME = "王小明"


@pytest.fixture(scope="module")
def app(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("personal")
    db = new_db(tmp / "gs.sqlite", db_backend)
    settings = load_settings(db_url=db.url, data_dir=tmp, seed_on_start=False, simulator=False)
    return create_app(settings, db=db, start_background=False)


def _new_case(app) -> int:
    lon, lat = grid_center(1, 1)
    r = app.server.test_client().post(
        "/api/v1/incidents",
        json={"lon": lon, "lat": lat, "category": "ENV", "reporter_name": NAME,
              "reporter_phone": PHONE},
        headers=bearer(app, "intake"),
    )  # fmt: skip
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _client(app, role):
    client = app.server.test_client()
    name = login(client, app, role)
    return client, name


def _act(client, iid, action, **body):
    r = client.post(f"/api/v1/incidents/{iid}/actions", json={"action": action, **body},
                    headers=csrf_headers(client))  # fmt: skip
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_dispatcher_sees_the_reporter_in_clear_an_operator_masked(app):
    iid = _new_case(app)
    dispatcher, _ = _client(app, "dispatcher")
    doc = dispatcher.get(f"/api/v1/incidents/{iid}").get_json()
    assert (doc["reporter_phone"], doc["reporter_name"]) == (PHONE, NAME)
    listed = {
        d["id"]: d for d in dispatcher.get("/api/v1/incidents?limit=1000").get_json()["items"]
    }
    assert listed[iid]["reporter_phone"] == PHONE
    for role in ("operator", "admin"):
        other, _ = _client(app, role)
        doc = other.get(f"/api/v1/incidents/{iid}").get_json()
        assert doc["reporter_phone"] == MASKED and doc["reporter_name"] != NAME
        listed = {d["id"]: d for d in other.get("/api/v1/incidents?limit=1000").get_json()["items"]}
        assert listed[iid]["reporter_phone"] == MASKED


def test_a_dispatcher_token_sees_the_reporter_masked(app):
    iid = _new_case(app)
    r = app.server.test_client().get(f"/api/v1/incidents/{iid}", headers=bearer(app, "dispatcher"))
    assert r.get_json()["reporter_phone"] == MASKED


def test_the_handler_sees_the_reporter_until_the_case_is_handed_on(app):
    iid = _new_case(app)
    dispatcher, _ = _client(app, "dispatcher")
    _act(dispatcher, iid, "register")
    _act(dispatcher, iid, "dispatch", distinct=True)
    handler, _ = _client(app, "admin")  # admins may take a case into handling
    bystander, _ = _client(app, "admin")
    assert handler.get(f"/api/v1/incidents/{iid}").get_json()["reporter_phone"] == MASKED
    accepted = _act(handler, iid, "accept")
    assert accepted["reporter_phone"] == PHONE  # the action's answer already shows it
    assert handler.get(f"/api/v1/incidents/{iid}").get_json()["reporter_phone"] == PHONE
    assert bystander.get(f"/api/v1/incidents/{iid}").get_json()["reporter_phone"] == MASKED
    other = app.server.config["GRIDSIGHT"].db.city["workers"][(2, 1)]
    _act(dispatcher, iid, "reassign", assignee_id=other)
    assert handler.get(f"/api/v1/incidents/{iid}").get_json()["reporter_phone"] == MASKED


def _detail_body(client, iid: int) -> dict:
    deps = client.get("/_dash-dependencies").get_json()
    spec = next(d for d in deps if d["output"].startswith("..dispatch-detail.children..."))
    outputs = spec["output"].strip(".").split("...")
    return {
        "output": spec["output"],
        "outputs": [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in outputs],
        "inputs": [
            {"id": "dispatch-selected", "property": "data", "value": iid},
            {"id": "dispatch-changed", "property": "data", "value": 0},
            {"id": "app-lang", "property": "data", "value": "zh"},
        ],
        "changedPropIds": ["dispatch-selected.data"],
        "state": [],
    }


@pytest.mark.parametrize("role,shown", [("dispatcher", PHONE), ("admin", MASKED)])
def test_the_dispatch_page_detail_shows_the_reporter_by_role(app, role, shown):
    iid = _new_case(app)
    client, _ = _client(app, role)
    assert client.get("/dispatch").status_code == 200
    r = client.post("/_dash-update-component", json=_detail_body(client, iid),
                    headers=csrf_headers(client))  # fmt: skip
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    text = json.dumps(r.get_json(), ensure_ascii=False)
    assert shown in text
    if shown == MASKED:
        assert PHONE not in text and NAME not in text


def test_the_rule_itself():
    assert may_see_personal_data(Principal("d", "dispatcher"))
    assert may_see_personal_data(Principal("a", "admin"), handler="a")
    assert not may_see_personal_data(Principal("a", "admin"), handler="b")
    assert not may_see_personal_data(Principal("a", "admin"))
    token = Principal("a", "dispatcher", kind="token", via="bearer")
    assert not may_see_personal_data(token, handler="a")
    assert not may_see_personal_data(None, handler="a")
