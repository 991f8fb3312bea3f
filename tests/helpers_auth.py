"""Log Flask test clients in, for tests of routes behind ``dashboard.auth`` (default deny).

Every route but ``/healthz``, ``/login`` and static assets needs a signed-in user with the
right role (see README "Access control"). Use these helpers in route tests::

    from tests.helpers_auth import bearer, csrf_headers, login

    app = create_app(settings, start_background=False)
    client = app.server.test_client()
    login(client, app, "operator")                  # a new operator, signed in via /login
    client.get("/layers/grids.geojson")             # 200 now
    client.post("/_dash-update-component", json=..., headers=csrf_headers(client))
    client.post("/api/v1/incidents", json=..., headers=bearer(app, "intake"))

``login`` goes through the real login form (CSRF token, argon2 check, audit entry), so a
broken login breaks these tests too. Users get a random password; pass ``scopes`` to test
per-district/per-camera restrictions.
"""

from __future__ import annotations

import itertools
import re
import secrets

from dash import Dash

_counter = itertools.count(1)
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _ctx(app):
    server = app.server if isinstance(app, Dash) else app
    return server.config["GRIDSIGHT"]


def make_user(
    app,
    role: str,
    username: str | None = None,
    *,
    scopes: dict | None = None,
    password: str | None = None,
) -> tuple[str, str]:
    """Return (username, password) of a new active user of ``role`` in ``app``'s database."""
    from layers.services import users

    username = username or f"{role.replace('_', '-')}-{next(_counter)}"
    password = password or secrets.token_urlsafe(12)
    with _ctx(app).db.session() as s:
        users.create_user(s, username, role, password, scopes=scopes, actor="tests")
    return username, password


def form_csrf(client, path: str = "/login") -> str:
    """Return the CSRF token of the form served at ``path`` (GET)."""
    r = client.get(path)
    m = _CSRF_INPUT.search(r.get_data(as_text=True))
    assert m, f"no csrf_token field in {path} (status {r.status_code})"
    return m.group(1)


def login_as(client, username: str, password: str, *, expect: int = 302):
    """Return the response of posting the login form for ``username`` (asserts ``expect``)."""
    token = form_csrf(client)
    r = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    assert r.status_code == expect, (r.status_code, r.get_data(as_text=True)[:300])
    return r


def login(
    client, app, role: str = "operator", *, username: str | None = None, scopes: dict | None = None
) -> str:
    """Return the username of a new ``role`` user after signing ``client`` in as that user."""
    name, password = make_user(app, role, username, scopes=scopes)
    login_as(client, name, password)
    return name


def csrf_headers(client) -> dict[str, str]:
    """Return the ``X-CSRFToken`` header for POSTs (Dash callbacks) of a signed-in client."""
    cookie = client.get_cookie("_csrf_token")
    assert cookie is not None, "no _csrf_token cookie: sign the client in first"
    return {"X-CSRFToken": cookie.value}


def bearer(app, role: str, name: str | None = None) -> dict[str, str]:
    """Return an ``Authorization: Bearer`` header with a fresh API token of ``role``."""
    from layers.services import users

    name = name or f"token-{role}-{next(_counter)}"
    with _ctx(app).db.session() as s:
        _row, plaintext = users.create_token(s, name, role, actor="tests")
    return {"Authorization": f"Bearer {plaintext}"}
