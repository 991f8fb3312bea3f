"""Login, sessions, CSRF, lockout, tokens and Basic auth against a real app on SQLite."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from dashboard.app import create_app
from layers.services import audit
from layers.services import users as user_service
from layers.settings import load_settings
from tests.helpers_auth import bearer, csrf_headers, form_csrf, login, login_as, make_user

ECHO_CALLBACK = {
    "output": "test-echo.children",
    "outputs": {"id": "test-echo", "property": "children"},
    "inputs": [{"id": "test-in", "property": "value", "value": "hello"}],
    "changedPropIds": ["test-in.value"],
    "state": [],
}


def _add_echo_callback(app):
    """Register an app-bound callback (``@dash.callback`` ones are global and only the first
    app built in a process receives them, so tests bind their own)."""
    from dash import Input, Output

    @app.callback(Output("test-echo", "children"), Input("test-in", "value"))
    def _echo(value):
        return f"echo {value}"


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}",
        data_dir=tmp_path,
        seed_on_start=False,
        simulator=False,
        session_minutes=5,
    )


@pytest.fixture
def app(settings):
    return create_app(settings, start_background=False)


@pytest.fixture
def client(app):
    return app.server.test_client()


def _db(app):
    return app.server.config["GRIDSIGHT"].db


def _actions(app, actor):
    with _db(app).session() as s:
        return [e.action for e in audit.search(s, actor=actor)][::-1]


def test_anonymous_browser_is_sent_to_the_login_form(client):
    r = client.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/"
    page = client.get("/login").get_data(as_text=True)
    for label in ("用户名", "Username", "密码", "Password", 'name="csrf_token"'):
        assert label in page


def test_login_logout_round_trip_is_audited(app, client):
    name, pw = make_user(app, "operator")
    r = login_as(client, name, pw)
    assert r.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/logout").status_code == 200  # confirmation form, nothing happens
    assert client.get("/").status_code == 200
    token = form_csrf(client, "/logout")
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/login?msg=logged_out"
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302
    assert _actions(app, name) == ["login.ok", "logout"]
    assert audit.verify(_db(app)).ok


def test_wrong_passwords_then_the_pair_waits_through_the_form(app, client):
    """Five wrong passwords from one client: that (account, client) pair gets 429, even with
    the right password; the account is not locked for anyone else (tests/dashboard/
    test_auth_throttle.py covers the other limits)."""
    name, pw = make_user(app, "dispatcher")
    for _ in range(5):
        r = login_as(client, name, "wrong password", expect=401)
        assert "用户名或密码错误" in r.get_data(as_text=True)
    r = login_as(client, name, pw, expect=429)  # right password, this client waits
    assert "登录尝试过多" in r.get_data(as_text=True) and int(r.headers["Retry-After"]) > 0
    assert _actions(app, name).count("login.failed") == 5  # the refused try cost no argon2
    with _db(app).session() as s:
        assert user_service.get_user(s, name).locked_until is None


def test_login_without_csrf_token_is_refused(app, client):
    name, pw = make_user(app, "operator")
    client.get("/login")
    r = client.post("/login", data={"username": name, "password": pw})
    assert r.status_code == 400 and "表单已失效" in r.get_data(as_text=True)
    r = client.post("/login", data={"username": name, "password": pw, "csrf_token": "forged"})
    assert r.status_code == 400
    assert _actions(app, name) == []  # refused before any password check


def test_dash_callbacks_need_the_csrf_header(app, client):
    _add_echo_callback(app)
    login(client, app, "operator")
    r = client.post("/_dash-update-component", json=ECHO_CALLBACK)
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]
    r = client.post("/_dash-update-component", json=ECHO_CALLBACK, headers={"X-CSRFToken": "x"})
    assert r.status_code == 400
    r = client.post("/_dash-update-component", json=ECHO_CALLBACK, headers=csrf_headers(client))
    assert r.status_code == 200 and "echo hello" in r.get_data(as_text=True)


def test_session_expires_after_inactivity(app, client):
    login(client, app, "operator")
    assert client.get("/").status_code == 200
    with client.session_transaction() as sess:
        sess["last"] = stale = time.time() - 4 * 60  # 4 of 5 minutes idle: still valid
    assert client.get("/").status_code == 200
    with client.session_transaction() as sess:
        assert sess["last"] > stale + 60  # the request refreshed the idle clock
        sess["last"] = time.time() - 5 * 60 - 1
    r = client.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 302 and "msg=expired" in r.headers["Location"]
    assert client.get("/_dash-layout").status_code == 401
    assert "会话已过期" in client.get("/login?msg=expired").get_data(as_text=True)


def test_disabling_a_user_ends_their_session(app, client):
    name = login(client, app, "operator")
    assert client.get("/").status_code == 200
    with _db(app).session() as s:
        user_service.set_active(s, name, False, actor="admin")
    assert client.get("/_dash-layout").status_code == 401


def test_password_change_ends_other_sessions(app):
    name, pw = make_user(app, "operator")
    a, b = app.server.test_client(), app.server.test_client()
    login_as(a, name, pw)
    login_as(b, name, pw)
    token = form_csrf(a, "/account/password")
    r = a.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current": pw,
            "new": "a brand new secret",
            "confirm": "a brand new secret",
        },
    )
    assert r.status_code == 302
    assert a.get("/").status_code == 200  # the changer keeps a fresh session
    assert b.get("/_dash-layout").status_code == 401  # the other one is over


def test_first_start_admin_password_is_printed_once_and_must_be_changed(settings, capsys):
    app = create_app(settings, start_background=False)
    out = capsys.readouterr().out
    password = re.search(r"one-time password\n\n\s+(\S+)", out).group(1)
    assert out.count(password) == 1
    create_app(settings, start_background=False)  # second start: no new admin, no password
    assert "one-time password" not in capsys.readouterr().out
    db_file = Path(settings.data_dir / "gs.sqlite")
    blob = db_file.read_bytes() + (
        db_file.with_name("gs.sqlite-wal").read_bytes()
        if db_file.with_name("gs.sqlite-wal").exists()
        else b""
    )
    assert password.encode() not in blob
    client = app.server.test_client()
    r = login_as(client, "admin", password)
    assert r.headers["Location"] == "/account/password"
    assert client.get("/admin", headers={"Accept": "text/html"}).headers["Location"] == (
        "/account/password"
    )
    assert client.get("/_dash-layout").status_code == 403
    token = form_csrf(client, "/account/password")
    bad = client.post(
        "/account/password",
        data={"csrf_token": token, "current": password, "new": "short", "confirm": "short"},
    )
    assert bad.status_code == 400 and "10" in bad.get_data(as_text=True)
    r = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current": password,
            "new": "admin's new secret",
            "confirm": "admin's new secret",
        },
    )
    assert r.status_code == 302
    assert client.get("/admin").status_code == 200
    assert _actions(app, "admin")[-2:] == ["login.ok", "user.password"]


def test_open_redirects_are_refused(app, client):
    name, pw = make_user(app, "operator")
    token = form_csrf(client)
    r = client.post(
        "/login",
        data={"username": name, "password": pw, "csrf_token": token, "next": "//evil.example/x"},
    )
    assert r.headers["Location"] == "/"


def test_tokens_open_the_api_only_and_stop_when_revoked(app, client):
    headers = bearer(app, "gis", name="qgis")
    r = client.get("/ogc", headers=headers)
    assert r.status_code not in (401, 403)  # passes the guard (404/200 from the OGC route)
    assert client.get("/", headers=headers).status_code == 403  # tokens never open pages
    assert client.get("/layers/grids.geojson", headers=headers).status_code == 403
    assert client.get("/api/v1/incidents", headers=headers).status_code == 403  # wrong role
    with _db(app).session() as s:
        user_service.revoke_token(s, "qgis", actor="admin")
    r = client.get("/ogc", headers=headers)
    assert r.status_code == 401 and "revoked" in r.get_json()["error"]
    r = client.get("/ogc", headers={"Authorization": "Bearer gst_made-up"})
    assert r.status_code == 401


def test_token_posts_need_no_csrf(app, client):
    r = client.post("/api/v1/incidents", json={}, headers=bearer(app, "intake"))
    assert r.status_code not in (400, 401, 403) or "CSRF" not in r.get_data(as_text=True)
    assert r.status_code not in (401, 403)


def test_basic_auth_only_on_ogc(app, client):
    name, pw = make_user(app, "operator")
    good = {"Authorization": "Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(f"{name}:nope".encode()).decode()}
    assert client.get("/ogc", headers=good).status_code not in (401, 403)
    r = client.get("/ogc", headers=bad)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = client.get("/layers/grids.geojson", headers=good)
    assert r.status_code == 401  # Basic never authenticates outside /ogc
    login_as(client, name, pw)  # ... and a browser resending it does not break the session
    assert client.get("/layers/grids.geojson", headers=good).status_code not in (401, 403)
    r = client.get("/ogc", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401
    assert "login.failed" in _actions(app, name)


def test_security_headers_and_cookie_flags(app, client):
    name, pw = make_user(app, "operator")
    token = form_csrf(client)
    r = client.post("/login", data={"username": name, "password": pw, "csrf_token": token})
    cookies = r.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("gridsight_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert client.get("/login").headers["Cache-Control"] == "no-store"


def _page_callback(output_id):
    return {
        "output": f"{output_id}.children",
        "outputs": {"id": output_id, "property": "children"},
        "inputs": [{"id": "test-in", "property": "value", "value": "x"}],
        "changedPropIds": ["test-in.value"],
        "state": [],
    }


@pytest.mark.parametrize(
    "role,output_id,allowed",
    [
        ("auditor", "operator-kpis", False),
        ("operator", "admin-users", False),
        ("admin", "audit-results", False),
        ("operator", "privacy-message", False),
        ("dispatcher", "dispatch-queue", True),
        ("privacy_officer", "privacy-message", True),
        ("auditor", "app-title", True),
    ],
)
def test_page_callbacks_are_refused_to_roles_that_cannot_open_the_page(
    app, client, role, output_id, allowed
):
    """Even a hand-made POST to a page's callback is refused (ids start with the page name)."""
    login(client, app, role)
    r = client.post("/_dash-update-component", json=_page_callback(output_id),
                    headers=csrf_headers(client))  # fmt: skip
    if allowed:
        assert r.status_code != 403  # past the guard (Dash then answers for the callback)
    else:
        assert r.status_code == 403 and "callbacks" in r.get_json()["error"]


def test_only_dispatchers_see_reporters_in_clear():
    from dashboard.auth import Principal, may_see_personal_data

    assert may_see_personal_data(Principal("d", "dispatcher"))
    for role in ("operator", "privacy_officer", "auditor", "admin"):
        assert not may_see_personal_data(Principal("x", role))
    assert not may_see_personal_data(Principal("t", "dispatcher", kind="token", via="bearer"))
    assert not may_see_personal_data(None)


def test_basic_auth_is_cached_briefly_and_follows_password_changes(app, client, monkeypatch):
    from dashboard import principal

    name, pw = make_user(app, "operator")
    good = {"Authorization": "Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode()}
    checks = []
    verify = principal.verify_password
    monkeypatch.setattr(principal, "verify_password", lambda *a: checks.append(a[0]) or verify(*a))
    assert client.get("/ogc", headers=good).status_code not in (401, 403)
    assert checks == [name]  # the first request checks the password (argon2)
    for _ in range(5):
        assert client.get("/ogc", headers=good).status_code not in (401, 403)
    assert checks == [name]  # the cached pair is not checked again
    cache = app.server.config["GRIDSIGHT"].basic_auth_cache.entries
    assert pw not in str(cache) and name not in str(cache)  # keyed hashes only
    with _db(app).session() as s:
        user_service.set_password(s, name, "a changed password", actor="admin")
    assert client.get("/ogc", headers=good).status_code == 401  # the old pair stops at once


def test_changes_made_elsewhere_are_seen_within_the_recheck_time(app, client, monkeypatch):
    """A token revoked or an account disabled by another process (plain SQL here: nothing in
    this process knows) stops working once the principal cache's short lifetime ends."""
    from sqlalchemy import text

    from dashboard import principal

    monkeypatch.setattr(principal, "PRINCIPAL_RECHECK_S", 0.5)
    headers = bearer(app, "gis", name="qgis2")
    name = login(client, app, "operator")
    token_client = app.server.test_client()
    assert token_client.get("/ogc", headers=headers).status_code not in (401, 403)
    assert client.get("/_dash-layout").status_code == 200
    with _db(app).session() as s:
        s.execute(text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'qgis2'"))
        s.execute(text("UPDATE users SET active = false WHERE username = :n"), {"n": name})
    # inside the recheck time the cached answer stands (that is the trade: one database read
    # per user or token per 0.5 s here, per 5 s by default, instead of one per request) ...
    assert token_client.get("/ogc", headers=headers).status_code not in (401, 403)
    time.sleep(0.6)
    # ... after it, the database is asked again and says no
    r = token_client.get("/ogc", headers=headers)
    assert r.status_code == 401 and "revoked" in r.get_json()["error"]
    assert client.get("/_dash-layout").status_code == 401


def test_a_change_through_this_process_is_seen_at_once_despite_the_cache(app, client):
    """set_active / set_role_and_scopes / revoke_token bump the epoch the cache checks."""
    headers = bearer(app, "gis", name="qgis3")
    token_client = app.server.test_client()
    name = login(client, app, "operator")
    for _ in range(3):  # warm the cache
        assert token_client.get("/ogc", headers=headers).status_code not in (401, 403)
        assert client.get("/_dash-layout").status_code == 200
    with _db(app).session() as s:
        user_service.set_role_and_scopes(s, name, role="dispatcher", actor="admin")
    assert client.get("/_dash-layout").status_code == 401  # a role change ends the session
    login_as(client, name, _new_password(app, name))
    assert client.get("/_dash-layout").status_code == 200
    from dashboard.principal import _principal_cache

    epoch = user_service.auth_epoch()
    cached = [(ep, p) for _e, ep, p in _principal_cache(app.server.config["GRIDSIGHT"]).values()]
    assert any(p.name == name and p.role == "dispatcher" for ep, p in cached if ep == epoch)
    assert not any(p.name == name and p.role == "operator" for ep, p in cached if ep == epoch)
    with _db(app).session() as s:
        user_service.revoke_token(s, "qgis3", actor="admin")
    assert token_client.get("/ogc", headers=headers).status_code == 401


def _new_password(app, name: str) -> str:
    with _db(app).session() as s:
        user_service.set_password(s, name, "a fresh password 1", actor="tests")
    return "a fresh password 1"
