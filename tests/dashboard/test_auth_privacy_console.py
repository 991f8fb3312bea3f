"""Privacy officer's console (dashboard/pages/privacy.py) and the access hooks the video
routes use: mask drawing → 0-1 polygons, rule saves (versioned, audited, in force for the
camera), unmask grants (reason, expiry, second approver, revoke), camera scopes."""

from __future__ import annotations

import datetime as dt
import json
import sys
from contextlib import contextmanager

import flask
import pytest
from dash.exceptions import PreventUpdate

from dashboard.app import create_app
from dashboard.auth import Principal
from layers.models import Camera
from layers.services import audit, grants
from layers.services import rules as rule_service
from layers.settings import load_settings
from tests.helpers_auth import make_user


@pytest.fixture
def app(tmp_path):
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    with app.server.config["GRIDSIGHT"].db.session() as s:
        s.add(
            Camera(id=7, gb_id="53010200001310000007", name="翠湖东门", cls=1, lon=102.7, lat=25.05)
        )
        s.add(Camera(id=8, gb_id="53011200001310000008", name="西山", cls=2, lon=102.6, lat=25.0))
    return app


@pytest.fixture
def page(app):
    import dash

    entry = next(p for p in dash.page_registry.values() if p["path"] == "/privacy")
    return sys.modules[entry["module"]]


@contextmanager
def as_user(app, role, name, scopes=None):
    with app.server.test_request_context("/"):
        flask.g.principal = Principal(name=name, role=role,
                                      scopes=scopes or {"districts": [], "cameras": []})  # fmt: skip
        yield


def _db(app):
    return app.server.config["GRIDSIGHT"].db


def test_path_and_shape_parsing(page):
    assert page.path_to_points("M0.1,0.2L0.5,0.2L0.5,0.6Z") == [(0.1, 0.2), (0.5, 0.2), (0.5, 0.6)]
    assert page.path_to_points("M-0.2,0.5L1.4,0.5L0.5,2e-1Z") == [
        (0.0, 0.5),
        (1.0, 0.5),
        (0.5, 0.2),
    ]
    rect = {"type": "rect", "x0": 0.8, "x1": 0.2, "y0": 0.1, "y1": 0.3}
    assert page.shape_to_points(rect) == [(0.2, 0.1), (0.8, 0.1), (0.8, 0.3), (0.2, 0.3)]
    tiny = {"type": "path", "path": "M0.1,0.1L0.2,0.2Z"}
    masks = page.masks_from_shapes([rect, tiny], permanent=False)
    assert len(masks) == 1 and masks[0]["permanent"] is False
    shapes = page.shapes_from_masks(masks)
    assert page.masks_from_shapes(shapes, permanent=False)[0]["points"] == masks[0]["points"]
    edited = page.shapes_from_relayout({"shapes[0].path": "M0,0L1,0L1,1Z"}, shapes)
    assert page.shape_to_points(edited[0]) == [(0, 0), (1, 0), (1, 1)]
    assert page.shapes_from_relayout({"shapes": []}, shapes) == []
    assert page.shapes_from_relayout({"xaxis.range": [0, 1]}, shapes) == shapes


def test_build_rules_names_the_bad_field(page):
    assert page.build_rules(["faces"], "blur", 0.4, [])["method"] == "blur"
    with pytest.raises(ValueError, match="strength"):
        page.build_rules(["faces"], "blur", 3, [])
    with pytest.raises(ValueError, match="method"):
        page.build_rules(["faces"], "smudge", 0.5, [])


@pytest.mark.parametrize("role", ["operator", "dispatcher", "auditor", "admin"])
def test_console_is_forbidden_to_other_roles(app, page, role):
    with as_user(app, role, "someone"):
        assert "forbidden-panel" in str(page.layout().to_plotly_json())
        with pytest.raises(PreventUpdate):
            page.save_rule(7, "camera", "", ["faces"], "pixelate", 0.5, ["yes"], [])
        with pytest.raises(PreventUpdate):
            page.grant_action("privacy-grant", "x", "7", 10, "reason here", None)


FLOOR = ["faces", "persons", "plates"]


def test_officer_saves_a_masked_rule_that_the_camera_then_uses(app, page):
    drawn = [{"type": "path", "path": "M0.1,0.1L0.4,0.1L0.4,0.5L0.1,0.5Z"}]
    with as_user(app, "privacy_officer", "po-1"):
        layout = str(page.layout().to_plotly_json())
        assert "privacy-canvas" in layout and "privacy floor: faces (centerface)" in layout
        message, versions = page.save_rule(7, "camera", "", FLOOR, "fill", 0.8, ["yes"], drawn)
        assert "v1" in message and "1 masks" in message and "lowers" not in message
        # liftable masks lower protection: with the two-person rule off it applies, audited
        message, _ = page.save_rule(7, "camera", "", FLOOR, "fill", 0.8, [], drawn)
        assert "v2" in message and "lowers protection" in message
        bad, _ = page.save_rule(7, "district", "5301", FLOOR, "blur", 0.8, [], [])
        assert bad.startswith("错误 error") and "district" in bad
        below, _ = page.save_rule(7, "camera", "", ["faces"], "blur", 0.8, [], drawn)
        assert below.startswith("错误 error") and "privacy floor" in below
        fig, shapes, live, targets, method, strength, _v = page.load_camera(7)
    assert live == "/video/7.mjpg" and targets == FLOOR and method == "fill"
    assert fig["layout"]["images"][0]["source"].startswith("/video/7.jpg")
    rules = rule_service.rules_for_camera(_db(app), 7)
    assert rules.masks[0].points[2] == (0.4, 0.5) and rules.masks[0].permanent is False
    assert rule_service.rules_for_camera(_db(app), 8).masks == ()  # other cameras untouched
    with _db(app).session() as s:
        entries = audit.search(s, action="rules.save")
        (lowered,) = audit.search(s, action="rules.save.lowering")
    assert [json.loads(e.detail)["version"] for e in entries] == [1]
    assert entries[0].actor == "po-1" and entries[0].target == "rules:camera/7"
    assert json.loads(lowered.detail)["lowers"] == ["'mask 1' removed, shrunk, made liftable "
                                                    "or weakened"]  # fmt: skip


def test_console_lowering_waits_for_a_second_officer(tmp_path, page):
    tmp_path = tmp_path / "two-person"  # the page fixture's app uses tmp_path itself
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False,
                             unmask_requires_second_approver=True)  # fmt: skip
    app = create_app(settings, start_background=False)
    with _db(app).session() as s:
        s.add(Camera(id=7, gb_id="53010200001310000007", name="翠湖东门", cls=1, lon=102.7,
                     lat=25.05))  # fmt: skip
    with as_user(app, "privacy_officer", "po-1"):
        message, _ = page.save_rule(7, "camera", "", FLOOR, "fill", 0.8, ["yes"], [])
        assert "v1" in message
        message, _ = page.save_rule(7, "camera", "", FLOOR, "blur", 0.8, ["yes"], [])
        assert "awaiting a second privacy officer" in message and "change #1" in message
        msg, table = page.change_action("privacy-change-approve", 1, None)
        assert "different privacy officer" in msg and "#1" in str(table.to_plotly_json())
    assert rule_service.rules_for_camera(_db(app), 7).method == "fill"  # old rule in force
    with as_user(app, "privacy_officer", "po-2"):
        msg, table = page.change_action("privacy-change-approve", 1, None)
        assert "approved #1" in msg and "#1" not in str(table.to_plotly_json())
    assert rule_service.rules_for_camera(_db(app), 7).method == "blur"
    with _db(app).session() as s:
        (approved,) = audit.search(s, action="rules.approve")
    assert approved.actor == "po-2" and json.loads(approved.detail)["requested_by"] == "po-1"


def test_grants_need_reason_expire_and_can_need_a_second_officer(app, page):
    make_user(app, "operator", "op-zhang")
    with as_user(app, "privacy_officer", "po-1"):
        msg, _ = page.grant_action("privacy-grant", "op-zhang", "7", 30, "no", None)
        assert "reason" in msg
        msg, _ = page.grant_action("privacy-grant", "po-1", "7", 30, "looking at it", None)
        assert "error" in msg  # not to yourself (and po-1 is no user in this database)
        msg, table = page.grant_action("privacy-grant", "op-zhang", "7, 8", 30,
                                       "police request 2026-118", None)  # fmt: skip
        assert "#1" in msg and "op-zhang" in str(table.to_plotly_json())
        msg, _ = page.grant_action("privacy-approve", None, None, None, None, 1)
        assert "approver must be a different" in msg
    with as_user(app, "privacy_officer", "po-2"):
        msg, _ = page.grant_action("privacy-approve", None, None, None, None, 1)
        assert "approved #1" in msg
    db = _db(app)
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        g = grants.active_grant(s, "op-zhang", 8, require_approval=True)
        assert g is not None and g.approved_by == "po-2"
        assert grants.active_grant(s, "op-zhang", 9) is None
        assert grants.active_grant(s, "op-zhang", 7, now=now + dt.timedelta(minutes=31)) is None
    hooks = app.server.config["GRIDSIGHT"].hooks
    with as_user(app, "operator", "op-zhang"):
        mark = hooks.unmask_grant(flask.request, 7)
        assert mark.startswith("UNMASKED op-zhang ") and mark.endswith("grant#1")
    with as_user(app, "operator", "op-li"):
        assert hooks.unmask_grant(flask.request, 7) is None
    assert hooks.unmask_grant_for("op-zhang", 7).endswith("grant#1")  # no request needed
    assert hooks.unmask_grant_for("op-zhang", 9) is None
    with as_user(app, "privacy_officer", "po-1"):
        msg, _ = page.grant_action("privacy-revoke", None, None, None, None, 1)
        assert "revoked #1" in msg
    with as_user(app, "operator", "op-zhang"):
        assert hooks.unmask_grant(flask.request, 7) is None
    assert hooks.unmask_grant_for("op-zhang", 7) is None
    with db.session() as s:
        actions = [e.action for e in audit.search(s, action="grant.")][::-1]
    assert actions == ["grant.create", "grant.approve", "grant.revoke"]


def test_video_hooks_enforce_role_and_camera_scopes(app):
    hooks = app.server.config["GRIDSIGHT"].hooks
    allow = hooks.authorize_video
    with as_user(app, "operator", "op-a"):
        assert allow(flask.request, 7) and allow(flask.request, 8)
    with as_user(app, "operator", "op-b", {"districts": ["530102"], "cameras": []}):
        assert allow(flask.request, 7) and not allow(flask.request, 8)
    with as_user(app, "dispatcher", "d", {"districts": [], "cameras": ["53011200001310000008"]}):
        assert not allow(flask.request, 7) and allow(flask.request, 8)
    for role in ("auditor", "admin"):
        with as_user(app, role, "x"):
            assert not allow(flask.request, 7)
    with as_user(app, "auditor", "aud"):
        assert hooks.authorize_rules(flask.request, "read")
        assert not hooks.authorize_rules(flask.request, "write")
    with as_user(app, "operator", "op-a"):
        hooks.audit("video.view.start", user="op-a", camera_id=7, redacted=True)
    with _db(app).session() as s:
        (e,) = audit.search(s, action="video.view.start")
    assert (e.actor, e.role, e.target) == ("op-a", "operator", "camera:7")
    assert json.loads(e.detail) == {"camera_id": 7, "redacted": True}
