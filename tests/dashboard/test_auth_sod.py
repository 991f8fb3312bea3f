"""Separation of duties: one admin alone cannot create, enable or give the role of an auditor,
privacy officer or admin from the console; a second admin approves, both are named in the
audit log; the shell CLI on the server acts alone. Real SQLite app, callbacks called as
plain functions with the principal set as ``dashboard.auth`` sets it."""

from __future__ import annotations

import json

import pytest

from dashboard.app import create_app
from layers import cli_users
from layers.models import SOD_ROLES
from layers.services import audit, role_requests
from layers.services import users as user_service
from layers.settings import load_settings
from tests.dashboard.test_auth_pages import _page_module, _text, as_role


@pytest.fixture
def app(tmp_path):
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False)  # fmt: skip
    return create_app(settings, start_background=False)


@pytest.fixture
def admin_page(app):
    return _page_module("admin")


def _db(app):
    return app.server.config["GRIDSIGHT"].db


def _user(app, name):
    with _db(app).session() as s:
        return user_service.get_user(s, name)


def _entries(app, action):
    with _db(app).session() as s:
        return [e for e in audit.search(s, action=action)][::-1]


def _request_id(msg: str) -> str:
    return msg.split("request #", 1)[1].split(" ", 1)[0]


@pytest.mark.parametrize("role", SOD_ROLES)
def test_creating_a_privileged_account_needs_a_second_admin(app, admin_page, role):
    with as_role(app, "admin", "admin-a"):
        msg, table = admin_page.user_action("admin-create-user", "new-one", role, "", "", None)
        assert "request #" in msg and "second admin" in msg
        assert "new-one" not in _text(table)  # not created
        rid = _request_id(msg)
        msg, _req, _users = admin_page.request_action("admin-approve-request", rid)
        assert "错误 error" in msg and "second admin" in msg  # not by the requester
    assert _user(app, "new-one") is None
    with as_role(app, "admin", "admin-b"):
        msg, requests, users = admin_page.request_action("admin-approve-request", rid)
    assert "approved" in msg and "one-time password" in msg  # shown to the approver, once
    assert "new-one" in _text(users) and f"#{rid}" not in _text(requests)
    assert _user(app, "new-one").role == role
    (created,) = [e for e in _entries(app, "user.create") if e.target == "new-one"]
    detail = json.loads(created.detail)
    assert (created.actor, detail["requested_by"], detail["approved_by"]) == (
        "admin-a",
        "admin-a",
        "admin-b",
    )
    (approval,) = _entries(app, "user.request.approve")
    assert approval.actor == "admin-b" and json.loads(approval.detail)["requested_by"] == "admin-a"
    assert audit.verify(_db(app)).ok


def test_re_roling_to_privacy_officer_needs_a_second_admin(app, admin_page):
    with as_role(app, "admin", "admin-a"):
        admin_page.user_action("admin-create-user", "zhao", "operator", "", "", None)
        msg, _ = admin_page.user_action(
            "admin-change-role", None, None, None, None, "zhao", "privacy_officer"
        )
        rid = _request_id(msg)
    assert _user(app, "zhao").role == "operator"
    with as_role(app, "admin", "zhao"):  # the account concerned may not approve its own change
        msg, *_ = admin_page.request_action("admin-approve-request", rid)
        assert "错误 error" in msg
    with as_role(app, "admin", "admin-b"):
        msg, *_ = admin_page.request_action("admin-approve-request", rid)
    assert "approved" in msg and _user(app, "zhao").role == "privacy_officer"
    (change,) = _entries(app, "user.role")
    detail = json.loads(change.detail)
    assert detail["role"] == ["operator", "privacy_officer"]
    assert (detail["requested_by"], detail["approved_by"]) == ("admin-a", "admin-b")


def test_re_roling_to_an_ordinary_role_needs_nobody(app, admin_page):
    with as_role(app, "admin", "admin-a"):
        admin_page.user_action("admin-create-user", "qian", "operator", "", "", None)
        msg, _ = admin_page.user_action(
            "admin-change-role", None, None, None, None, "qian", "dispatcher"
        )
    assert "dispatcher" in msg and _user(app, "qian").role == "dispatcher"
    (change,) = _entries(app, "user.role")
    assert change.actor == "admin-a" and "approved_by" not in json.loads(change.detail)


def test_enabling_a_disabled_auditor_needs_a_second_admin(app, admin_page):
    with _db(app).session() as s:
        user_service.create_user(s, "sun", "auditor", "a long password 1", actor="tests")
    with as_role(app, "admin", "admin-a"):
        admin_page.user_action("admin-disable-user", None, None, None, None, "sun")  # alone: ok
        assert not _user(app, "sun").active
        msg, _ = admin_page.user_action("admin-enable-user", None, None, None, None, "sun")
        assert "request #" in msg and not _user(app, "sun").active
        rid = _request_id(msg)
    with as_role(app, "admin", "admin-b"):
        msg, *_ = admin_page.request_action("admin-reject-request", rid)
    assert "rejected" in msg and not _user(app, "sun").active
    with _db(app).session() as s:
        assert role_requests.list_requests(s) == []
        (row,) = role_requests.list_requests(s, state=None)
        assert (row.state, row.requested_by, row.decided_by) == ("rejected", "admin-a", "admin-b")


def test_the_service_refuses_an_app_change_without_a_second_person(app):
    with _db(app).session() as s:
        user_service.create_user(s, "zhou", "operator", "a long password 1", actor="tests")
    for approved_by in (None, "admin-a"):
        with pytest.raises(user_service.ApprovalRequired), _db(app).session() as s:
            user_service.set_role_and_scopes(
                s, "zhou", role="auditor", actor="admin-a", actor_role="admin",
                approved_by=approved_by,
            )  # fmt: skip
        with pytest.raises(user_service.ApprovalRequired), _db(app).session() as s:
            user_service.create_user(
                s, "wu", "privacy_officer", None, actor="admin-a", actor_role="admin",
                approved_by=approved_by,
            )  # fmt: skip
    assert _user(app, "zhou").role == "operator" and _user(app, "wu") is None


def test_tokens_of_privileged_roles_only_from_the_shell(app, admin_page):
    with as_role(app, "admin", "admin-a"):
        for role in SOD_ROLES:
            msg, _ = admin_page.token_action("admin-create-token", f"t-{role}", role)
            assert "错误 error" in msg and "python -m layers tokens create" in msg
        msg, _ = admin_page.token_action("admin-create-token", "t-intake", "intake")
        assert "gst_" in msg


def test_the_shell_cli_acts_alone(app, capsys, monkeypatch):
    # the CLI writes to the app's sealed audit log with the app's key (beside its data dir)
    monkeypatch.setenv("GRIDSIGHT_DATA_DIR", str(app.server.config["GRIDSIGHT"].settings.data_dir))
    url = _db(app).url
    assert cli_users.run_users(_cli("add", "cheng", role="auditor", db=url)) == 0
    assert cli_users.run_users(_cli("add", "feng", role="operator", db=url)) == 0
    assert cli_users.run_users(_cli("role", "feng", role="privacy_officer", db=url)) == 0
    assert _user(app, "cheng").role == "auditor"
    assert _user(app, "feng").role == "privacy_officer"
    (change,) = _entries(app, "user.role")
    assert change.actor.startswith("cli:") and json.loads(change.detail)["role"] == [
        "operator",
        "privacy_officer",
    ]
    capsys.readouterr()


def _cli(action, name, *, role=None, db=None, scopes=None):
    import argparse

    return argparse.Namespace(
        action=action,
        name=name,
        role=role,
        db=db,
        scopes=scopes,
        display_name="",
        password_stdin=False,
    )
