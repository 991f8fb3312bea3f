"""Fuzz every route of the URL map (Dash's included): hostile paths, queries and bodies.

The contract is the README's: bad input gets a 4xx naming the field, never a 5xx and never a
stack trace. Cases are drawn from a fixed seed (the same few hundred requests every run):
for each URL rule, its path converters and the query parameters the app knows get values
such as -1, 20- and 5,000-digit numbers, NaN, ``%``, 100,000 characters, markup and
traversal; POST routes get malformed and deeply nested JSON; ``/_dash-update-component``
gets malformed callback bodies.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from bench.operator_city import build_city
from dashboard.app import create_app
from layers.settings import load_settings
from tests.helpers_auth import bearer, csrf_headers, login

SEED = 20261202
HOSTILE = ["-1", "0", "9" * 20, "9" * 5000, "nan", "inf", "-inf", "1e309", "%", "%25", "_",
           "A" * 100_000, "<img src=x onerror=alert(1)>", "../../etc/passwd", "", " ",
           "nan,nan,nan,nan", "1,2,3", "1,1,0,0", "☃", "null", "[]", "{}", "a,b,c", "true"]  # fmt: skip
PARAMS = ["window", "start", "end", "playback", "categories", "area_id", "bbox", "layers",
          "mode", "lang", "limit", "offset", "category", "status", "grid_id", "group_by",
          "period", "format", "service_request_id", "service_code", "start_date", "end_date",
          "f", "bbox-crs", "kinds", "heartbeat", "since", "v", "next", "msg", "kind", "value"]  # fmt: skip
STREAMING = ("/video/", "/api/v1/events")


def _deep(n: int) -> str:
    return "[" * n + "]" * n


BODIES = [None, "{", "[]", "1", '"x"', json.dumps({"a": "A" * 10000}), _deep(1000),
          '{"lon": NaN, "lat": Infinity, "category": "ENV"}',
          json.dumps({"lon": "9" * 5000, "lat": 25, "category": "%"}),
          json.dumps({"incidents": [{"lon": 1}] * 3}), json.dumps({"action": "close"})]  # fmt: skip
DASH_BODIES = [{}, [], "x", {"output": 5}, {"output": "nope.children"},
               {"output": "operator-playback-label.children", "outputs": "x", "inputs": []},
               {"output": "operator-playback-label.children",
                "outputs": {"id": "operator-playback-label", "property": "children"},
                "inputs": [{"id": "operator-filter", "property": "data", "value": "zz"},
                           {"id": "app-lang", "property": "data", "value": 3}]},
               {"output": "operator-playback-label.children",
                "outputs": {"id": "operator-playback-label", "property": "children"},
                "inputs": [{"id": "operator-filter", "property": "data",
                            "value": {"area_id": "9" * 5000, "window": "custom"}},
                           {"id": "app-lang", "property": "data", "value": "zh"}],
                "changedPropIds": "x"}]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routefuzz")
    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    build_city(app.server.config["GRIDSIGHT"].db, incidents=20)
    clients = {}
    for role in ("admin", "operator", "dispatcher", "privacy_officer", "auditor"):
        c = app.server.test_client()
        login(c, app, role)
        clients[role] = c
    return app, clients, bearer(app, "intake")


def _paths(rule, rnd: random.Random) -> list[str]:
    def fill(m: re.Match) -> str:
        conv = m.group(1) or "default"
        if conv == "int":
            return rnd.choice(["1", "2", "0", "9" * 20, "999999"])
        return rnd.choice(HOSTILE[:12] + ["incidents", "grids", "x.y", "dash", "camera"]) or "x"

    if rule.rule == "/<path:path>":
        return ["/" + rnd.choice(["no-such-page", "dispatch/../admin", "%2e%2e/", "A" * 3000])]
    return [re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", fill, rule.rule) for _ in range(3)]


def test_no_5xx_and_no_traceback_on_any_route(fuzz):
    app, clients, token = fuzz
    rnd = random.Random(SEED)
    problems, n = [], 0
    rules = sorted(app.server.url_map.iter_rules(), key=lambda r: r.rule)
    for rule in rules:
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        for path in _paths(rule, rnd):
            for method in methods:
                for _ in range(4 if method == "GET" else 3):
                    query = {p: rnd.choice(HOSTILE) for p in rnd.sample(PARAMS, 3)}
                    body = rnd.choice(BODIES)
                    client = clients[rnd.choice(list(clients))]
                    headers = {"Accept": "application/json"}
                    if method != "GET":
                        headers.update(csrf_headers(client))
                        headers["Content-Type"] = "application/json"
                    if path.startswith(("/api/", "/open311")) and rnd.random() < 0.3:
                        headers.update(token)
                    if path.startswith(STREAMING) and method == "GET":
                        query["heartbeat"] = "x"  # an open stream would never end
                    r = client.open(path, method=method, query_string=query, data=body,
                                    headers=headers)  # fmt: skip
                    n += 1
                    text = r.get_data() if not path.startswith("/video/") else b""
                    r.close()
                    if r.status_code >= 500 or b"Traceback" in text:
                        problems.append(f"{method} {path[:80]} {query!r:.160} -> {r.status_code}")
    c = app.server.test_client()  # the walk above may have signed its clients out
    login(c, app, "operator")
    for body in DASH_BODIES:
        r = c.post("/_dash-update-component", json=body, headers=csrf_headers(c))
        n += 1
        if r.status_code >= 500 or r.status_code == 200 and body != DASH_BODIES[-1]:
            problems.append(f"dash {json.dumps(body)[:120]} -> {r.status_code}")
        elif r.status_code >= 400:
            assert r.get_json()["errors"][0]["field"], r.get_data(as_text=True)
    assert n >= 300, n
    assert not problems, f"{len(problems)} of {n} requests failed:\n" + "\n".join(problems[:40])


def test_no_stack_trace_reaches_a_client(fuzz):
    """An unexpected error still answers Flask's plain 500 page: no trace, no code."""
    app, _clients, _ = fuzz
    assert not app.server.debug and not app.server.config.get("PROPAGATE_EXCEPTIONS")
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get("/_dash-component-suites/dash/nope.v1m1.js")
    assert r.status_code == 404 and "Traceback" not in r.get_data(as_text=True)


#: a dict where text belongs, a list where a number does, a number where a list does, text
#: where an id does, NaN, a negative count
WRONG_TYPES = [{"a": {"b": 1}}, [1, [2]], 3.5, "x", float("nan"), -1]
PAGE_ROLE = {"operator-": "operator", "dispatch-": "dispatcher", "privacy-": "privacy_officer",
             "audit-": "auditor", "admin-": "admin"}  # fmt: skip


def _callbacks(app) -> dict:
    c = app.server.test_client()
    c.get("/login")  # Dash registers the pages' callbacks with the first request
    return app.callback_map


def _output_spec(cb):
    def one(o):
        return {"id": o.component_id, "property": o.component_property}

    out = cb["output"]
    return [one(o) for o in out] if isinstance(out, list) else one(out)


def _prop_id(dep: dict) -> str:
    cid = dep["id"]
    text = json.dumps(cid, sort_keys=True, separators=(",", ":")) if isinstance(cid, dict) else cid
    return f"{text}.{dep['property']}"


def _role_for(key: str) -> str:
    first = key.lstrip(".")
    return next((r for p, r in PAGE_ROLE.items() if first.startswith(p)), "operator")


def test_every_callback_input_and_state_has_a_type(fuzz):
    from dashboard.callback_types import spec_for

    app, _clients, _ = fuzz
    untyped = sorted({f"{d['id']}.{d['property']}" for cb in _callbacks(app).values()
                      for d in (*cb["inputs"], *cb.get("state", []))
                      if spec_for(d["id"], d["property"]) is None})  # fmt: skip
    assert not untyped, f"give these a type in dashboard/callback_types.py: {untyped}"


def test_wrong_types_in_callback_inputs_answer_400_naming_the_field(fuzz):
    """Every input and state of every callback gets values of the wrong type: 0 x 5xx, and a
    value its type refuses answers 400 naming ``id.property``."""
    from dashboard.callback_types import field_name, value_problem

    app, _clients, _ = fuzz
    clients = {}
    for role in set(PAGE_ROLE.values()):
        clients[role] = app.server.test_client()
        login(clients[role], app, role)
    problems, refused, n = [], 0, 0
    for key, cb in _callbacks(app).items():
        if "callback" not in cb:
            continue  # browser-side: refused as a whole (below)
        client = clients[_role_for(key)]
        deps = [("inputs", i, d) for i, d in enumerate(cb["inputs"])]
        deps += [("state", i, d) for i, d in enumerate(cb.get("state", []))]
        for kind, i, dep in deps:
            for wrong in WRONG_TYPES:
                body = {"output": key, "outputs": _output_spec(cb), "changedPropIds": [],
                        "inputs": [{**d, "value": None} for d in cb["inputs"]],
                        "state": [{**d, "value": None} for d in cb.get("state", [])]}  # fmt: skip
                body[kind][i]["value"] = wrong
                body["changedPropIds"] = [_prop_id(cb["inputs"][0])]
                r = client.post("/_dash-update-component", data=json.dumps(body),
                                headers={**csrf_headers(client),
                                         "Content-Type": "application/json"})  # fmt: skip
                n += 1
                where = f"{key[:50]} {field_name(dep['id'], dep['property'])}={wrong!r}"
                if r.status_code >= 500:
                    problems.append(f"{where} -> {r.status_code}")
                elif value_problem(dep["id"], dep["property"], wrong) is not None:
                    refused += 1
                    field = (r.get_json(silent=True) or {}).get("field")
                    if (r.status_code, field) != (400, field_name(dep["id"], dep["property"])):
                        problems.append(f"{where} -> {r.status_code} field {field!r}")
    assert n > 300 and refused > 200, (n, refused)
    assert not problems, f"{len(problems)} of {n}:\n" + "\n".join(problems[:40])


def test_browser_side_callbacks_are_not_run_by_the_server(fuzz):
    app, _clients, _ = fuzz
    c = app.server.test_client()
    login(c, app, "operator")
    client_side = [(k, cb) for k, cb in _callbacks(app).items() if "callback" not in cb]
    assert client_side
    for key, cb in client_side:
        body = {"output": key, "outputs": _output_spec(cb), "changedPropIds": [],
                "inputs": [{**d, "value": {"a": 1}} for d in cb["inputs"]],
                "state": [{**d, "value": None} for d in cb.get("state", [])]}  # fmt: skip
        r = c.post("/_dash-update-component", json=body, headers=csrf_headers(c))
        assert r.status_code == 400 and r.get_json()["field"] == "output", (key, r.status_code)


@pytest.mark.parametrize("wait", ["nan", "inf", "-inf", "-1", "1e309", "9" * 5000, "16", "x", ""])
def test_snapshot_wait_must_be_seconds_from_0_to_15(fuzz, wait):
    app, _clients, _ = fuzz
    c = app.server.test_client()
    login(c, app, "operator")
    r = c.get(f"/video/1.jpg?wait={wait}")
    assert r.status_code == 400, r.get_data(as_text=True)[:200]
    body = r.get_json()
    assert body["errors"][0]["field"] == "wait" and "between 0 and 15" in body["error"]
