"""The whole role × route matrix on a real app: every URL rule has a declared policy, and each
role (and anonymous, and API tokens) gets the expected answer, including direct URL access to
video and API routes. The expected table below is written out by hand on purpose: it is the
access matrix of README "Access control", checked against what the app actually does."""

from __future__ import annotations

import re

import dash
import pytest

from dashboard.app import create_app
from dashboard.auth import resolve_policy
from layers.models import ROLES
from layers.settings import load_settings
from tests.helpers_auth import bearer, csrf_headers, login

ALL = frozenset(ROLES)
MAP = frozenset({"operator", "dispatcher", "privacy_officer", "admin"})
VIDEO = frozenset({"operator", "dispatcher", "privacy_officer"})
NONE: frozenset[str] = frozenset()
PUBLIC = "public"
PAGE, API = "page", "api"  # anonymous: page -> 302 to /login, api -> 401

# (method, path, roles allowed, token roles allowed, kind)
EXPECTED = [
    ("GET", "/healthz", PUBLIC, PUBLIC, API),
    ("GET", "/login", PUBLIC, PUBLIC, PAGE),
    ("GET", "/assets/gridsight.css", PUBLIC, PUBLIC, API),
    # pages (direct URL access; the page layouts check again)
    ("GET", "/", MAP, NONE, PAGE),
    ("GET", "/dispatch", {"dispatcher", "admin"}, NONE, PAGE),
    ("GET", "/privacy", {"privacy_officer"}, NONE, PAGE),
    ("GET", "/audit", {"auditor"}, NONE, PAGE),
    ("GET", "/admin", {"admin"}, NONE, PAGE),
    ("GET", "/no-such-page", NONE, NONE, PAGE),
    ("GET", "/account/password", ALL, NONE, PAGE),
    # Dash plumbing: any signed-in person, never tokens
    ("GET", "/_dash-layout", ALL, NONE, API),
    ("GET", "/_dash-dependencies", ALL, NONE, API),
    # map data
    ("GET", "/layers/grids.geojson", MAP, NONE, API),
    # video, by direct URL
    ("GET", "/video/1.mjpg", VIDEO, NONE, API),
    ("GET", "/video/1.jpg", VIDEO, NONE, API),
    ("GET", "/api/v1/cameras/1/rules", {"privacy_officer", "auditor"}, NONE, API),
    # redaction rules: the privacy officer writes, the auditor reads
    ("GET", "/api/v1/rules", {"privacy_officer", "auditor"}, NONE, API),
    ("PUT", "/api/v1/rules/global", {"privacy_officer"}, NONE, API),
    ("DELETE", "/api/v1/rules/camera/1", {"privacy_officer"}, NONE, API),
    ("GET", "/api/v1/rules/floor", {"privacy_officer", "auditor"}, NONE, API),
    ("GET", "/api/v1/rules/changes", {"privacy_officer", "auditor"}, NONE, API),
    # a second privacy officer approves (or anyone of them rejects) a lowering rule change
    ("POST", "/api/v1/rules/changes/1/approve", {"privacy_officer"}, NONE, API),
    ("POST", "/api/v1/rules/changes/1/reject", {"privacy_officer"}, NONE, API),
    # incidents API
    # (tokens of a human role get that role's access, on machine paths only)
    ("POST", "/api/v1/incidents", {"dispatcher", "admin"}, {"intake", "admin"}, API),
    ("GET", "/api/v1/incidents", {"operator", "dispatcher", "admin"}, {"operator", "admin"}, API),
    # live events (SSE) for video walls and machine clients
    (
        "GET",
        "/api/v1/events",
        {"operator", "dispatcher", "admin"},
        {"gis", "operator", "admin"},
        API,
    ),  # fmt: skip
    # OGC API - Features for GIS clients
    (
        "GET",
        "/ogc/collections",
        {"operator", "dispatcher", "admin"},
        {"gis", "operator", "admin"},
        API,
    ),
    ("POST", "/ogc/collections", NONE, NONE, API),
    # nothing undeclared gets through
    ("GET", "/api/v2/anything", NONE, NONE, API),
    ("DELETE", "/layers/grids.geojson", NONE, NONE, API),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    settings = load_settings(db_url=f"sqlite:///{tmp / 'gs.sqlite'}", data_dir=tmp,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    clients = {}
    for role in ROLES:
        c = app.server.test_client()
        login(c, app, role)
        clients[role] = c
    tokens = {r: bearer(app, r) for r in ("intake", "gis", "operator", "admin")}
    return app, clients, tokens


def _sample(rule) -> str:
    def value(m: re.Match) -> str:
        conv, _name = (m.group(1) or "default"), m.group(2)
        return {"int": "1", "path": "x/y", "float": "1.0"}.get(conv, "x")

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", value, rule.rule)


def test_every_url_rule_has_a_declared_policy(built):
    app, _clients, _tokens = built
    server = app.server
    missing = []
    for rule in server.url_map.iter_rules():
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        if rule.rule == "/<path:path>":  # Dash's page router: every registered page instead
            paths = [p["path"] for p in dash.page_registry.values()]
        else:
            paths = [_sample(rule)]
        for path in paths:
            for method in methods:
                if resolve_policy(server, path, method) is None:
                    missing.append(f"{method} {rule.rule} (as {path})")
    assert not missing, "routes without a declared policy (declare_policy in register()):\n" + (
        "\n".join(missing)
    )


def _call(client, method, path, headers=None):
    headers = dict(headers or {})
    headers.setdefault("Accept", "text/html,application/json;q=0.9")
    kwargs = {"headers": headers}
    if method in ("POST", "PUT", "DELETE"):
        kwargs["json"] = {}
    return client.open(path, method=method, **kwargs)


def _denied_as_anonymous(r, kind):
    if kind == PAGE:
        return r.status_code == 302 and r.headers["Location"].startswith("/login?next=")
    return r.status_code == 401


@pytest.mark.parametrize("method,path,roles,token_roles,kind", EXPECTED,
                         ids=[f"{m} {p}" for m, p, *_ in EXPECTED])  # fmt: skip
def test_role_matrix(built, method, path, roles, token_roles, kind):
    app, clients, tokens = built
    anon = app.server.test_client()
    r = _call(anon, method, path)
    if roles == PUBLIC:
        assert r.status_code not in (401, 403), (path, r.status_code)
    else:
        assert _denied_as_anonymous(r, kind), ("anonymous", method, path, r.status_code)
    problems = []
    for role, client in clients.items():
        headers = csrf_headers(client) if method != "GET" else None
        r = _call(client, method, path, headers)
        allowed = roles == PUBLIC or role in roles
        got_in = r.status_code not in (401, 403) and not (
            r.status_code == 302 and r.headers.get("Location", "").startswith("/login")
        )
        if allowed != got_in or (not allowed and r.status_code != 403):
            problems.append(f"{role}: {r.status_code} (expected {'in' if allowed else 403})")
    for role, headers in tokens.items():
        r = _call(anon, method, path, headers)
        allowed = token_roles == PUBLIC or role in token_roles
        got_in = r.status_code not in (401, 403)
        if allowed != got_in:
            problems.append(f"token {role}: {r.status_code}")
    assert not problems, f"{method} {path}: " + "; ".join(problems)


def test_admin_is_not_auditor_and_auditor_changes_nothing(built):
    """GB/T 35273 separation of duties, spelled out."""
    app, clients, _tokens = built
    assert clients["admin"].get("/audit").status_code == 403
    assert clients["auditor"].get("/admin").status_code == 403
    h = csrf_headers(clients["auditor"])
    assert clients["auditor"].put("/api/v1/rules/global", json={}, headers=h).status_code == 403
    assert clients["auditor"].post("/api/v1/incidents", json={}, headers=h).status_code == 403
