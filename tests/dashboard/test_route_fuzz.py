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
