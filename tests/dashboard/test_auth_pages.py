"""Admin and auditor pages: layouts refuse other roles, callbacks refuse to return data, and
the actions (users, tokens, search, export, verify) work against a real SQLite app.

Callbacks are called as plain functions inside a request context whose principal is set the
way ``dashboard.auth`` sets it; the HTTP guard in front of them is tested in test_auth.py and
test_route_matrix.py."""

from __future__ import annotations

import csv
import io
import sys
from contextlib import contextmanager

import flask
import pytest
from dash.exceptions import PreventUpdate

from dashboard.app import create_app
from dashboard.auth import Principal, forbidden_panel
from layers.services import audit
from layers.services import users as user_service
from layers.settings import load_settings


@pytest.fixture
def app(tmp_path):
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False)  # fmt: skip
    return create_app(settings, start_background=False)


def _page_module(name):
    """Return the page module as Dash's page loader imported it (not a second copy)."""
    import dash

    for page in dash.page_registry.values():
        if page["module"].split(".")[-1] == name:
            return sys.modules[page["module"]]
    raise AssertionError(f"page {name} not registered")


@pytest.fixture
def admin_page(app):
    return _page_module("admin")


@pytest.fixture
def audit_page(app):
    return _page_module("audit")


@contextmanager
def as_role(app, role, name=None):
    name = name or f"the-{role}"
    with app.server.test_request_context("/"):
        flask.g.principal = Principal(name=name, role=role)
        yield


def _text(component) -> str:
    if isinstance(component, list):
        return " ".join(_text(c) for c in component)
    return str(component.to_plotly_json())


@pytest.mark.parametrize("role", ["operator", "dispatcher", "privacy_officer", "auditor"])
def test_admin_page_is_forbidden_to_other_roles(app, admin_page, audit_page, role):
    with as_role(app, role):
        assert _text(admin_page.layout()) == _text(forbidden_panel())
        with pytest.raises(PreventUpdate):
            admin_page.user_action("admin-create-user", "eve", "admin", "", "", None)
        with pytest.raises(PreventUpdate):
            admin_page.token_action("admin-create-token", "t", "intake")


@pytest.mark.parametrize("role", ["operator", "dispatcher", "privacy_officer", "admin"])
def test_audit_page_is_forbidden_to_other_roles(app, admin_page, audit_page, role):
    with as_role(app, role):
        assert "forbidden-panel" in _text(audit_page.layout())
        with pytest.raises(PreventUpdate):
            audit_page.on_search(1, None, None, None, None)
        with pytest.raises(PreventUpdate):
            audit_page.on_export(1, None, None, None, None)
        with pytest.raises(PreventUpdate):
            audit_page.on_verify(1)


def test_anonymous_gets_nothing(app, admin_page, audit_page):
    with app.server.test_request_context("/"):
        assert "forbidden-panel" in _text(admin_page.layout())
        with pytest.raises(PreventUpdate):
            audit_page.on_search(1, None, None, None, None)


def test_admin_creates_and_disables_users_and_tokens(app, admin_page, audit_page):
    db = app.server.config["GRIDSIGHT"].db
    with as_role(app, "admin", "root-admin"):
        assert "admin-users-table" in _text(admin_page.layout())
        msg, table = admin_page.user_action(
            "admin-create-user", "wang.wei", "operator", "530102, 530103", "", None
        )
        assert "wang.wei" in msg and "one-time password" in msg
        password = msg.rsplit(": ", 1)[1]
        assert "wang.wei" in _text(table) and password not in _text(table)
        msg, _ = admin_page.user_action("admin-create-user", "x", "operator", "", "", None)
        assert msg.startswith("错误 error") and "username" in msg
        msg, _ = admin_page.user_action("admin-create-user", "li.na", "operator", "5301", "", None)
        assert "scopes.districts" in msg
        admin_page.user_action("admin-disable-user", None, None, None, None, "wang.wei")
        msg, tokens = admin_page.token_action("admin-create-token", "hotline-12345", "intake")
        token = msg.rsplit(": ", 1)[1]
        assert token.startswith("gst_") and token not in _text(tokens)
        msg, tokens = admin_page.token_action("admin-revoke-token", "hotline-12345", None)
        assert "revoked" in _text(tokens)
    with db.session() as s:
        user = user_service.get_user(s, "wang.wei")
        assert not user.active and user.must_change_password
        assert user_service.parse_scopes(user.scopes)["districts"] == ["530102", "530103"]
        assert user_service.check_password(user.password_hash, password)
        assert user_service.find_token(s, token) is None
        actions = [e.action for e in audit.search(s, actor="root-admin")][::-1]
    assert actions == ["user.create", "user.disable", "token.create", "token.revoke"]


def test_auditor_searches_exports_and_verifies(app, admin_page, audit_page):
    db = app.server.config["GRIDSIGHT"].db
    with db.session() as s:
        for i in range(3):
            audit.record(
                s, actor="zhang", role="operator", action="video.view.start", target=f"camera:{i}"
            )
        audit.record(s, actor="li", role="dispatcher", action="login.ok")
    with as_role(app, "auditor", "auditor-1"):
        assert "audit-results" in _text(audit_page.layout())
        table, note = audit_page.on_search(1, "zhang", None, None, None)
        assert note.startswith("3 ")
        table, note = audit_page.on_search(1, None, "login.", None, None)
        assert "li" in _text(table)
        table, note = audit_page.on_search(1, None, None, "2000-01-01", "2000-01-02")
        assert note.startswith("0 ")
        download = audit_page.on_export(1, None, "video.", None, None)
        rows = list(csv.DictReader(io.StringIO(download["content"].lstrip("\ufeff"))))
        assert len(rows) == 3 and download["filename"].endswith(".csv")
        result = audit_page.on_verify(1)
        assert "intact" in _text(result)
    with db.session() as s:
        (last,) = audit.search(s, limit=1)
    assert last.action == "audit.export" and last.actor == "auditor-1"
