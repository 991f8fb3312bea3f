"""A district-scoped user gets only its districts, on every route and map callback.

The city (``operator_city``) has districts 530102 (columns 0-3) and 530103 (columns 4-7);
cameras of the right half get 530103 GB/T 28181 ids. A user scoped to 530102 asks every
route of the URL map that returns incidents, cameras, grids, areas, centers or responders,
and every data callback of the operator and dispatch pages, and must see nothing of 530103.
The URL map and the callback map are walked: a route or page callback that is in neither
list below fails the test until someone says whether it returns scoped data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bench.operator_city import build_city, cell_center
from dashboard.app import create_app
from layers.models import AdminArea, Camera, Center, Grid, Incident, Responder
from layers.services.scope import Scope
from layers.settings import load_settings
from tests.helpers_auth import csrf_headers, login

SCOPE = {"districts": ["530102"]}

# URL rules that return scoped data: each is exercised by a test below
DATA_RULES = {
    "/api/v1/incidents", "/api/v1/incidents/<int:incident_id>",
    "/api/v1/incidents/<int:incident_id>/actions", "/api/v1/kpi",
    "/ogc/collections/<name>/items", "/ogc/collections/<name>/items/<feature_id>",
    "/open311/v2/requests.json", "/open311/v2/requests/<request_id>.json",
    "/layers/<layer>.geojson", "/map/density.png", "/export/situation.html",
    "/_dash-update-component",
    # live events: tests/dashboard/test_live_events.py::test_sse_respects_district_scopes
    "/api/v1/events",
    # video (camera scopes): tests/dashboard/test_video_routes.py
    "/video/<int:camera_id>.mjpg", "/video/<int:camera_id>.jpg",
}  # fmt: skip
# URL rules that return none of it (plumbing, static files, forms, dictionaries, rules)
NO_DATA_RULES = {
    "/static/<path:filename>", "/assets/<path:filename>",
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>",
    "/_dash-layout", "/_dash-dependencies", "/_reload-hash", "/_favicon.ico", "/",
    "/<path:path>", "/login", "/logout", "/account/password", "/healthz",
    "/api/v1/video/streams", "/api/v1/rules", "/api/v1/rules/<kind>/<value>",
    "/api/v1/rules/<kind>", "/api/v1/cameras/<int:camera_id>/rules",
    "/api/v1/rules/floor", "/api/v1/rules/changes",
    "/api/v1/rules/changes/<int:change_id>/<decision>",
    "/api/v1/incidents/batch", "/api/v1/categories", "/api/v1/openapi.json",
    "/open311/v2/services.json", "/open311/v2/services/<code>.json", "/ogc", "/ogc/api",
    "/ogc/conformance", "/ogc/collections", "/ogc/collections/<name>",
    "/tiles/<int:z>/<int:x>/<int:y>.<ext>",
}  # fmt: skip
# operator/dispatch callbacks (by their outputs) that return scoped data, tested below
DATA_CALLBACKS = {
    "dispatch-queue.rowData", "dispatch-detail.children", "dispatch-message.children",
    "dispatch-kpi-title.children", "operator-crumbs.children", "operator-grids.hideout",
    "operator-trend-wrap.children", "operator-points.data", "operator-selection.data",
    "operator-card.children", "operator-grids.hideout#mode", "operator-area.data",
}  # fmt: skip
NO_DATA_CALLBACKS = {
    "dispatch-queue-title.children", "dispatch-selected.data", "operator-window.options",
    "operator-legend-body.children", "operator-map-wrap.className", "operator-range.style",
    "operator-filter.data", "operator-cats.value", "operator-playback-label.children",
    "operator-play-tick.disabled", "operator-playback.value", "operator-view.data",
    "operator-map.viewport", "operator-card.children#hint", "operator-export.href",
}  # fmt: skip


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoped")
    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    ids = build_city(db, incidents=80)
    with db.session() as s:
        for cam in s.scalars(select(Camera)):
            if cam.lon >= cell_center(4, 0)[0] - 0.002:  # the right half: district 530103
                cam.gb_id = "530103" + cam.gb_id[6:]
        districts = {a.code: a.id for a in s.scalars(select(AdminArea).where(
            AdminArea.level == "district"))}  # fmt: skip
    inside = Scope.of(SCOPE)
    with db.session() as s:
        areas_in = inside.area_ids(s)
        grids_in = inside.grid_ids(s)
        sets = {
            "grids": ({g for g in s.scalars(select(Grid.id))}, grids_in),
            "areas": ({a for a in s.scalars(select(AdminArea.id))}, areas_in),
            "incidents": ({i for i in s.scalars(select(Incident.id))},
                          set(s.scalars(select(Incident.id).where(Incident.grid_id.in_(grids_in))))),
            "cameras": ({c for c in s.scalars(select(Camera.id))},
                        set(s.scalars(select(Camera.id).where(Camera.gb_id.like("530102%"))))),
            "centers": ({c for c in s.scalars(select(Center.id))},
                        set(s.scalars(select(Center.id).where(Center.area_id.in_(areas_in))))),
            "responders": ({r for r in s.scalars(select(Responder.id))},
                           set(s.scalars(select(Responder.id).where(
                               Responder.grid_id.in_(grids_in))))),
        }  # fmt: skip
    for kind, (every, allowed) in sets.items():
        assert allowed and every - allowed, f"the city must have {kind} on both sides"
    scoped = app.server.test_client()
    login(scoped, app, "operator", scopes=SCOPE)
    dispatcher = app.server.test_client()
    login(dispatcher, app, "dispatcher", scopes=SCOPE)
    admin = app.server.test_client()
    login(admin, app, "admin")
    return {"app": app, "db": db, "ids": ids, "sets": sets, "districts": districts,
            "scoped": scoped, "dispatcher": dispatcher, "admin": admin}  # fmt: skip


def allowed(city, kind) -> set:
    return city["sets"][kind][1]


def outside(city, kind) -> set:
    every, ok = city["sets"][kind]
    return every - ok


def _only_inside(city, kind, got) -> None:
    got = {int(g) for g in got}
    assert got, f"no {kind} at all: the test would prove nothing"
    assert not got & outside(city, kind), (
        f"{kind} outside the scope: {sorted(got - allowed(city, kind))}"
    )


# -- the walk ---------------------------------------------------------------------------------
def test_every_url_rule_is_classified(city):
    rules = {r.rule for r in city["app"].server.url_map.iter_rules()}
    unknown = rules - DATA_RULES - NO_DATA_RULES
    assert not unknown, ("classify these routes in test_scope_matrix (scoped data or not): "
                         f"{sorted(unknown)}")  # fmt: skip


def _callback_name(key: str, spec: dict) -> str:
    first = key.strip(".").split("...")[0].split("@")[0]
    name = getattr(spec.get("callback"), "__name__", "")
    if key.startswith("operator-grids.hideout@") and "mode" in name:
        return "operator-grids.hideout#mode"
    if key.startswith("operator-card.children@"):
        return "operator-card.children#hint"
    return first


def test_every_page_callback_is_classified(city):
    city["scoped"].get("/_dash-layout")  # Dash merges the page callbacks on first request
    names = {_callback_name(k, v) for k, v in city["app"].callback_map.items()
             if k.strip(".").startswith(("operator-", "dispatch-"))}  # fmt: skip
    unknown = names - DATA_CALLBACKS - NO_DATA_CALLBACKS
    assert not unknown, f"classify these callbacks in test_scope_matrix: {sorted(unknown)}"
    assert DATA_CALLBACKS <= names, sorted(DATA_CALLBACKS - names)


# -- HTTP routes ------------------------------------------------------------------------------
def test_incident_api(city):
    c, d = city["scoped"], city["dispatcher"]
    items = c.get("/api/v1/incidents?limit=1000").get_json()["items"]
    _only_inside(city, "incidents", [i["id"] for i in items])
    out_id, in_id = min(outside(city, "incidents")), min(allowed(city, "incidents"))
    assert c.get(f"/api/v1/incidents/{out_id}").status_code == 404
    doc = c.get(f"/api/v1/incidents/{in_id}").get_json()
    assert not {p["id"] for p in doc["possible_duplicates"]} & outside(city, "incidents")
    r = d.post(f"/api/v1/incidents/{out_id}/actions", json={"action": "register"},
               headers=csrf_headers(d))  # fmt: skip
    assert r.status_code == 404


def test_kpi_export(city):
    now = dt.datetime.now(dt.UTC)
    q = urlencode({"start": (now - dt.timedelta(days=30)).isoformat(),
                   "end": (now + dt.timedelta(days=30)).isoformat(), "group_by": "district"})  # fmt: skip
    rows = city["scoped"].get(f"/api/v1/kpi?{q}").get_json()["rows"]
    names = {r["name"] for r in rows}
    assert "第1区" in names and "第2区" not in names
    csv_text = city["scoped"].get(f"/api/v1/kpi?{q}&format=csv").get_data(as_text=True)
    assert "第1区" in csv_text and "第2区" not in csv_text


@pytest.mark.parametrize("collection,kind", [
    ("incidents", "incidents"), ("grids", "grids"), ("cameras", "cameras"),
    ("districts", "areas"), ("streets", "areas"), ("communities", "areas"),
    ("centers", "centers"), ("responders", "responders")])  # fmt: skip
def test_ogc_collections(city, collection, kind):
    c = city["scoped"]
    doc = c.get(f"/ogc/collections/{collection}/items?limit=10000").get_json()
    _only_inside(city, kind, [f["id"] for f in doc["features"]])
    assert doc["numberMatched"] == len(doc["features"])
    every = city["sets"][kind][0]
    in_layer = {f["id"] for f in city["admin"].get(
        f"/ogc/collections/{collection}/items?limit=10000").get_json()["features"]} & every  # fmt: skip
    hidden = sorted(set(in_layer) & outside(city, kind))
    assert hidden, "the unscoped admin must see features the scoped user does not"
    assert c.get(f"/ogc/collections/{collection}/items/{hidden[0]}").status_code == 404


def test_open311(city):
    c = city["scoped"]
    docs = c.get("/open311/v2/requests.json").get_json()
    _only_inside(city, "incidents", [d["service_request_id"] for d in docs])
    out_id = min(outside(city, "incidents"))
    assert c.get(f"/open311/v2/requests/{out_id}.json").status_code == 404
    assert c.get(f"/open311/v2/requests.json?service_request_id={out_id}").get_json() == []


@pytest.mark.parametrize("layer,kind", [
    ("grids", "grids"), ("districts", "areas"), ("streets", "areas"), ("communities", "areas"),
    ("centers", "centers"), ("cameras", "cameras")])  # fmt: skip
def test_layer_geojson(city, layer, kind):
    r = city["scoped"].get(f"/layers/{layer}.geojson")
    _only_inside(city, kind, [f["id"] for f in r.get_json()["features"]])
    # the admin's cached copy is another entry: it has the other half too
    full = city["admin"].get(f"/layers/{layer}.geojson").get_json()["features"]
    assert {f["id"] for f in full} & outside(city, kind)
    assert r.headers["ETag"] != city["admin"].get(f"/layers/{layer}.geojson").headers["ETag"]


def test_density_png_is_the_districts_own(city):
    left = city["districts"]["530102"]
    scoped = city["scoped"].get("/map/density.png?window=7d").get_data()
    same = city["admin"].get(f"/map/density.png?window=7d&area_id={left}").get_data()
    whole = city["admin"].get("/map/density.png?window=7d").get_data()
    assert scoped == same and scoped != whole


def test_situation_export(city):
    db = city["db"]
    html_text = (
        city["scoped"]
        .get("/export/situation.html?window=7d&layers=grids,incidents,cameras,centers,areas")
        .get_data(as_text=True)
    )
    with db.session() as s:
        grids = {g.id: g.code for g in s.scalars(select(Grid))}
        cams = {c.id: (c.lat, c.lon) for c in s.scalars(select(Camera))}
        centers = {c.id: c.name for c in s.scalars(select(Center))}
    assert all(grids[g] in html_text for g in allowed(city, "grids"))
    assert not [grids[g] for g in outside(city, "grids") if grids[g] in html_text]
    assert not [c for c in outside(city, "cameras") if f"[{cams[c][0]}, {cams[c][1]}]" in html_text]
    assert any(f"[{cams[c][0]}, {cams[c][1]}]" in html_text for c in allowed(city, "cameras"))
    assert not [centers[c] for c in outside(city, "centers") if centers[c] in html_text]
    assert "第2区" not in html_text


# -- Dash callbacks of the operator and dispatch pages ----------------------------------------
def _call(city, client, key_start: str, values: dict, changed: str | None = None, fn=None):
    """Return the JSON response of the callback whose outputs start with ``key_start``."""
    app = city["app"]
    client.get("/_dash-layout")
    key = next(k for k, v in app.callback_map.items() if k.strip(".").startswith(key_start)
               and (fn is None or getattr(v.get("callback"), "__name__", "") == fn))  # fmt: skip
    spec = app.callback_map[key]
    outs = [o for o in re.split(r"\.\.\.", key.strip(".")) if o]

    def deps(items):
        out = []
        for d in items:
            ident = d["id"] if not d["id"].startswith("{") else json.loads(d["id"])
            if isinstance(ident, dict):  # pattern-matching: no matching components
                out.append([])
                continue
            out.append({"id": ident, "property": d["property"],
                        "value": values.get(f"{ident}.{d['property']}")})  # fmt: skip
        return out

    inputs = deps(spec["inputs"])
    body = {"output": key,
            "outputs": [{"id": o.split("@")[0].rsplit(".", 1)[0],
                         "property": o.split("@")[0].rsplit(".", 1)[1]} for o in outs],
            "inputs": inputs, "state": deps(spec.get("state") or []),
            "changedPropIds": [changed or f"{inputs[0]['id']}.{inputs[0]['property']}"]}  # fmt: skip
    if len(outs) == 1:
        body["outputs"] = body["outputs"][0]
    r = client.post("/_dash-update-component", json=body, headers=csrf_headers(client))
    assert r.status_code in (200, 204), (key_start, r.status_code, r.get_data(as_text=True)[:300])
    return r.get_json() if r.status_code == 200 else None


def _ids_in(text: str, pattern: str) -> set[int]:
    return {int(m) for m in re.findall(pattern, text)}


def test_operator_refresh_feed_and_counts(city):
    out = _call(city, city["scoped"], "operator-grids.hideout", {
        "operator-tick.n_intervals": 0, "operator-filter.data": {"window": "7d"},
        "app-lang.data": "zh"}, fn="refresh")  # fmt: skip
    text = json.dumps(out, ensure_ascii=False)
    counts = json.loads(re.search(r'"counts", "value": \{[^}]*\}|"value": \{("\d+": \d+(, )?)*\}',
                                  text).group(0).split('"value": ', 1)[1])  # fmt: skip
    _only_inside(city, "grids", counts)
    _only_inside(city, "incidents", _ids_in(text, r'"#(\d+)"'))


def test_operator_hotspots_points_cones_coverage(city):
    c = city["scoped"]
    out = _call(city, c, "operator-trend-wrap.children", {
        "operator-slow.n_intervals": 0, "operator-late.n_intervals": 1,
        "operator-filter.data": {"window": "7d"}, "app-lang.data": "zh"})  # fmt: skip
    _only_inside(city, "grids", _ids_in(json.dumps(out), r'"grid": (\d+)'))
    lon0, lat0 = cell_center(0, 0)
    lon1, lat1 = cell_center(7, 3)
    out = _call(city, c, "operator-points.data", {
        "operator-map.bounds": [[lat0 - 0.01, lon0 - 0.01], [lat1 + 0.01, lon1 + 0.01]],
        "operator-map.zoom": 17, "operator-filter.data": {"window": "7d"},
        "operator-layer-toggle.value": ["incidents", "cameras"]})  # fmt: skip
    resp = out["response"]
    _only_inside(city, "incidents", [f["id"] for f in resp["operator-points"]["data"]["features"]])
    _only_inside(city, "cameras", [f["id"] for f in resp["operator-cones"]["data"]["features"]])
    out = _call(city, c, "operator-grids.hideout", {"operator-grid-mode.value": "coverage"},
                fn="grid_mode")  # fmt: skip
    cov = json.dumps(out)
    assert not {g for g in outside(city, "grids") if f'"{g}":' in cov}


def test_operator_labels_cards_and_clicks(city):
    c = city["scoped"]
    out = _call(city, c, "operator-crumbs.children", {"operator-area.data": None,
                                                     "app-lang.data": "zh"})  # fmt: skip
    labels = out["response"]["operator-labels"]["data"]["features"]
    _only_inside(city, "areas", [f["properties"]["area"] for f in labels])
    grid_out = min(outside(city, "grids"))
    cam_out = min(outside(city, "cameras"))
    for sel in ({"kind": "grid", "id": grid_out}, {"kind": "camera", "id": cam_out}):
        out = _call(city, c, "operator-card.children", {"operator-selection.data": sel,
                                                        "app-lang.data": "zh"}, fn="render_card")  # fmt: skip
        text = json.dumps(out["response"]["operator-card"], ensure_ascii=False)
        assert "gs-muted" in text and "gb_id" not in text and "网格员" not in text, text[:300]
    lon, lat = cell_center(6, 1)  # inside district 530103
    out = _call(city, c, "operator-selection.data", {
        "operator-map.clickData": {"latlng": {"lat": lat, "lng": lon}},
        "operator-map.zoom": 13, "operator-layer-toggle.value": []},
        changed="operator-map.clickData")  # fmt: skip
    assert out is None or out["response"]["operator-selection"]["data"] is None
    out = _call(city, c, "operator-area.data", {
        "operator-labels.clickData": {"properties": {"area": city["districts"]["530103"]}}},
        changed="operator-labels.clickData")  # fmt: skip
    assert out is None, "drilling into a district outside the scope must do nothing"


def test_dispatch_queue_detail_action_and_kpi(city):
    d = city["dispatcher"]
    out = _call(city, d, "dispatch-queue.rowData", {"dispatch-tick.n_intervals": 0,
                                                    "app-lang.data": "zh"})  # fmt: skip
    _only_inside(city, "incidents", [r["id"] for r in out["response"]["dispatch-queue"]["rowData"]])
    out_id = min(i for i in outside(city, "incidents"))
    out = _call(city, d, "dispatch-detail.children", {"dispatch-selected.data": out_id,
                                                      "app-lang.data": "zh"})  # fmt: skip
    assert f"#{out_id}" not in json.dumps(out["response"]["dispatch-detail"], ensure_ascii=False)
    out = _call(city, d, "dispatch-message.children", {
        "dispatch-btn-register.n_clicks": 1, "dispatch-selected.data": out_id,
        "app-lang.data": "zh"}, changed="dispatch-btn-register.n_clicks")  # fmt: skip
    with city["db"].session() as s:
        assert s.get(Incident, out_id).registered_at is None
    out = _call(city, d, "dispatch-kpi-title.children", {"dispatch-kpi-tick.n_intervals": 0,
                                                         "app-lang.data": "zh"})  # fmt: skip
    text = json.dumps(out["response"]["dispatch-kpi-chart"], ensure_ascii=False)
    assert "第1区" in text and "第2区" not in text
