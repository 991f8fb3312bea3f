"""The redaction-rule API (dashboard/routes/rules.py): versions and precedence, the privacy
floor (a rule below it is refused, naming it), and the two-person rule for changes that lower
protection, on a real app with real logins and a real SQLite database."""

from __future__ import annotations

import json
from types import SimpleNamespace

import flask
import pytest
import shapely

from dashboard.app import create_app
from dashboard.context import AccessHooks, AppContext
from dashboard.routes import rules
from layers.db import Database
from layers.models import AdminArea, Camera, Grid, geometry_columns
from layers.services import audit
from layers.services import rules as rule_service
from layers.settings import load_settings
from tests.helpers_auth import csrf_headers, login

FLOOR = ["faces", "persons", "plates"]


def _cameras(db) -> None:
    box = shapely.box(102.70, 25.03, 102.71, 25.04)
    with db.session() as s:
        district = AdminArea(
            level="district", code="530102", name="五华区", **geometry_columns(box)
        )
        s.add(district)
        s.flush()
        community = AdminArea(level="community", code="530102001001", name="社区",
                              parent_id=district.id, **geometry_columns(box))  # fmt: skip
        s.add(community)
        s.flush()
        s.add(Grid(id=7, code="53010200100101", name="一格", community_id=community.id,
                   **geometry_columns(box)))  # fmt: skip
        s.flush()
        for cid, cls, grid in ((1, 1, 7), (2, 2, 7), (3, 3, None)):
            s.add(Camera(id=cid, gb_id=f"5301020000132000000{cid}", name=f"cam {cid}", cls=cls,
                         lon=102.705, lat=25.035, grid_id=grid))  # fmt: skip


# -- plain Flask app with the access hooks (who is asking comes from a header) -----------------
@pytest.fixture
def plain(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'rules.sqlite'}")
    db.migrate()
    _cameras(db)
    ctx = AppContext(
        settings=load_settings({}, unmask_requires_second_approver=True),  # built-in floor
        db=db,
        hooks=AccessHooks(authorize_rules=lambda request, action: True),
    )
    server = flask.Flask("rules-test")

    @server.before_request
    def who():
        name = flask.request.headers.get("X-User", "po-a")
        flask.g.principal = SimpleNamespace(name=name, actor=name, role="privacy_officer")

    rules.register(server, ctx)
    server.testing = True
    yield server.test_client(), ctx
    db.dispose()


def test_versions_and_precedence(plain):
    client, _ctx = plain
    r = client.put("/api/v1/rules/default", json={"targets": FLOOR})
    assert r.status_code == 201 and r.json["version"] == 1 and r.json["status"] == "applied"
    r = client.put("/api/v1/rules/default", json={"targets": FLOOR, "method": "fill"})
    assert r.json["version"] == 2
    r = client.put("/api/v1/rules/camera_class/2", json={"targets": FLOOR, "method": "fill",
                                                         "margin": 0.5})  # fmt: skip
    assert r.status_code == 201
    r = client.put("/api/v1/rules/camera/1", json={"targets": FLOOR, "method": "fill",
                                                   "strength": 1.0})  # fmt: skip
    assert r.status_code == 201
    eff1 = client.get("/api/v1/cameras/1/rules").json
    assert eff1["scope"] == {"kind": "camera", "value": "1"} and eff1["config"]["strength"] == 1.0
    eff2 = client.get("/api/v1/cameras/2/rules").json
    assert eff2["scope"]["kind"] == "camera_class" and eff2["config"]["margin"] == 0.5
    eff3 = client.get("/api/v1/cameras/3/rules").json
    assert eff3["scope"]["kind"] == "default" and eff3["version"] == 2
    assert eff3["raised_to_floor"] == [] and eff3["floor"]["targets"] == FLOOR
    versions = client.get("/api/v1/rules?kind=default").json["rules"]
    assert [(v["version"], v["active"]) for v in versions] == [(2, True), (1, False)]
    # removing camera 1's stronger rule lowers its protection (strength 1.0 -> 0.6): pending
    r = client.delete("/api/v1/rules/camera/1")
    assert r.status_code == 202 and r.json["status"] == "pending"
    assert any("strength" in why for why in r.json["lowers"])
    assert client.get("/api/v1/cameras/1/rules").json["scope"]["kind"] == "camera"
    r = client.post(f"/api/v1/rules/changes/{r.json['change']['id']}/approve",
                    headers={"X-User": "po-b"})  # fmt: skip
    assert r.status_code == 200 and r.json["deactivated"] == 1
    # camera 1 is class 1 (the class rule is for class 2): back to the default rule
    assert client.get("/api/v1/cameras/1/rules").json["scope"]["kind"] == "default"


@pytest.mark.parametrize(
    "url, body",
    [
        ("/api/v1/rules/default", {"targets": ["everything"]}),
        ("/api/v1/rules/default", {"surprise": 1}),
        ("/api/v1/rules/camera_class/9", {"targets": FLOOR}),
        ("/api/v1/rules/street/1", {"targets": FLOOR}),
        ("/api/v1/rules/default", [1, 2]),
    ],
)
def test_invalid_rules_are_refused(plain, url, body):
    client, _ctx = plain
    r = client.put(url, json=body)
    assert r.status_code in (400, 422) and "error" in r.json


@pytest.mark.parametrize(
    "body, named",
    [
        ({"targets": []}, "faces, persons, plates"),
        ({"targets": ["faces", "plates"]}, "persons"),
        # the face detector swapped for the plate cascade
        ({"targets": FLOOR, "detectors": {"faces": {"type": "haar_plate"}}}, "faces must be"),
        # the face detector kept but asked for a score it never reaches: face detection off
        (
            {"targets": FLOOR, "detectors": {"faces": {"type": "centerface", "threshold": 0.9999}}},
            "faces: centerface.threshold 0.9999 is above the floor's 0.3",
        ),
        ({"targets": FLOOR, "min_face_px": 256}, "min_face_px 256 is above the floor's 16"),
    ],
)
def test_rule_below_the_floor_is_refused_naming_the_floor(plain, body, named):
    client, _ctx = plain
    r = client.put("/api/v1/rules/camera/1", json=body)
    assert r.status_code == 422, r.json
    assert "privacy floor" in r.json["error"] and named in r.json["error"]
    assert r.json["floor"]["targets"] == FLOOR
    assert client.get("/api/v1/rules").json["rules"] == []  # nothing stored


def test_hook_can_forbid_writes_and_missing_hook_fails_closed(plain):
    client, ctx = plain
    ctx.hooks.authorize_rules = lambda request, action: action == "read"
    assert client.get("/api/v1/rules").status_code == 200
    assert client.put("/api/v1/rules/default", json={"targets": FLOOR}).status_code == 403
    assert client.post("/api/v1/rules/changes/1/approve").status_code == 403
    ctx.hooks.authorize_rules = None
    assert client.put("/api/v1/rules/default", json={"targets": []}).status_code == 403
    assert client.get("/api/v1/rules").status_code == 403
    assert client.get("/api/v1/rules/floor").status_code == 403


def test_lowering_waits_for_a_different_officer_raising_applies_at_once(plain):
    client, ctx = plain
    strong = {"targets": FLOOR, "method": "fill", "strength": 0.9, "detect_every": 1}
    assert client.put("/api/v1/rules/camera/1", json=strong).status_code == 201
    stronger = dict(strong, margin=0.6)  # raising: applies at once, no approval
    r = client.put("/api/v1/rules/camera/1", json=stronger)
    assert r.status_code == 201 and r.json["lowers"] == []
    weak = dict(stronger, method="blur", strength=0.2, detect_every=5)
    r = client.put("/api/v1/rules/camera/1?reason=night+glare", json=weak)
    assert r.status_code == 202, r.json
    change = r.json["change"]
    assert change["status"] == "pending" and change["requested_by"] == "po-a"
    assert len(r.json["lowers"]) == 3  # method, strength, detect_every
    # the old rule stays in force, for the API and for the streams
    assert client.get("/api/v1/cameras/1/rules").json["config"]["method"] == "fill"
    assert rule_service.rules_for_camera(ctx.db, 1).method == "fill"
    listed = client.get("/api/v1/rules/changes").json["changes"]
    assert [c["id"] for c in listed] == [change["id"]]
    # the one who asked cannot approve it
    r = client.post(f"/api/v1/rules/changes/{change['id']}/approve")
    assert r.status_code == 403 and "different privacy officer" in r.json["error"]
    r = client.post(f"/api/v1/rules/changes/{change['id']}/approve", headers={"X-User": "po-b"})
    assert r.status_code == 200 and r.json["status"] == "applied"
    assert r.json["rule"]["approved_by"] == "po-b" and r.json["rule"]["created_by"] == "po-a"
    assert rule_service.rules_for_camera(ctx.db, 1).method == "blur"
    r = client.post(f"/api/v1/rules/changes/{change['id']}/approve", headers={"X-User": "po-c"})
    assert r.status_code == 409  # decided already
    assert client.post("/api/v1/rules/changes/999/approve").status_code == 404
    with ctx.db.session() as s:
        entries = {e.action: json.loads(e.detail) for e in audit.search(s, action="rules.")}
    assert entries["rules.pending"]["requested_by"] == "po-a"
    assert entries["rules.approve"]["requested_by"] == "po-a"
    assert entries["rules.approve"]["approved_by"] == "po-b"
    assert entries["rules.approve"]["reason"] == "night glare"
    assert audit.verify(ctx.db).ok


def test_rejected_and_stale_changes_never_apply(plain):
    client, ctx = plain
    base = {"targets": FLOOR, "method": "fill"}
    assert client.put("/api/v1/rules/district/530102", json=base).status_code == 201
    pend = client.put("/api/v1/rules/district/530102", json=dict(base, method="blur")).json
    r = client.post(f"/api/v1/rules/changes/{pend['change']['id']}/reject?reason=no",
                    headers={"X-User": "po-b"})  # fmt: skip
    assert r.status_code == 200 and r.json["change"]["decided_by"] == "po-b"
    assert rule_service.rules_for_camera(ctx.db, 1).method == "fill"
    pend = client.put("/api/v1/rules/district/530102", json=dict(base, method="blur")).json
    # meanwhile somebody raises the same scope: the pending change is now stale
    assert client.put("/api/v1/rules/district/530102",
                      json=dict(base, margin=0.9)).status_code == 201  # fmt: skip
    r = client.post(f"/api/v1/rules/changes/{pend['change']['id']}/approve",
                    headers={"X-User": "po-b"})  # fmt: skip
    assert r.status_code == 409 and "changed since" in r.json["error"]
    assert rule_service.rules_for_camera(ctx.db, 2).method == "fill"
    with ctx.db.session() as s:
        (rejected,) = audit.search(s, action="rules.reject")
    assert json.loads(rejected.detail)["requested_by"] == "po-a"
    assert json.loads(rejected.detail)["rejected_by"] == "po-b"


# -- the real app: logins, CSRF, settings --------------------------------------------------
def _app(tmp_path, **kw):
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path,
                             seed_on_start=False, simulator=False, **kw)  # fmt: skip
    app = create_app(settings, start_background=False)
    _cameras(app.server.config["GRIDSIGHT"].db)
    return app


def test_one_officer_cannot_switch_redaction_off(tmp_path):
    """``PUT {"targets": []}`` used to answer 201 and every viewer then saw raw faces."""
    app = _app(tmp_path)
    client = app.server.test_client()
    login(client, app, "privacy_officer")
    r = client.put("/api/v1/rules/camera/1", json={"targets": []}, headers=csrf_headers(client))
    assert r.status_code == 422
    assert "privacy floor" in r.json["error"] and "faces, persons, plates" in r.json["error"]
    eff = client.get("/api/v1/cameras/1/rules").json
    assert set(FLOOR) <= set(eff["config"]["targets"])


def test_one_officer_cannot_switch_face_detection_off_by_threshold(tmp_path):
    """With the two-person rule off (the default), ``faces.threshold`` 0.9999 answered 201."""
    app = _app(tmp_path)
    client = app.server.test_client()
    login(client, app, "privacy_officer")
    body = {"targets": FLOOR, "detectors": {"faces": {"type": "centerface", "threshold": 0.9999}}}
    r = client.put("/api/v1/rules/camera/3", json=body, headers=csrf_headers(client))
    assert r.status_code == 422
    assert "privacy floor" in r.json["error"] and "centerface.threshold" in r.json["error"]
    assert r.json["floor"]["limits"]["centerface.threshold"] == 0.3
    eff = client.get("/api/v1/cameras/3/rules").json
    assert eff["config"]["detectors"]["faces"]["threshold"] == 0.3


def test_a_stored_rule_over_a_limit_is_served_at_the_floor(plain):
    """A row edited around the API (SQL) with a face threshold that finds nothing is served
    with the floor's threshold, and the answer says what was raised."""
    from sqlalchemy import text

    client, ctx = plain
    assert client.put("/api/v1/rules/camera/3", json={"targets": FLOOR}).status_code == 201
    weak = {"targets": FLOOR, "detectors": {"faces": {"type": "centerface", "threshold": 0.9999}},
            "min_face_px": 128}  # fmt: skip
    with ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE redaction_rules SET config = :c"), {"c": json.dumps(weak)})
    eff = client.get("/api/v1/cameras/3/rules").json
    assert eff["scope"] == {"kind": "camera", "value": "3"}
    assert eff["config"]["detectors"]["faces"]["threshold"] == 0.3
    assert eff["config"]["min_face_px"] == 16
    assert any("centerface.threshold 0.9999" in why for why in eff["raised_to_floor"])
    assert rule_service.rules_for_camera(ctx.db, 3).detector_config("faces").threshold == 0.3


def test_a_deployment_sets_the_limits(tmp_path):
    app = _app(tmp_path, privacy_floor_limits={"centerface.threshold": 0.5, "method": "pixelate"})
    client = app.server.test_client()
    login(client, app, "privacy_officer")
    ok = {"targets": FLOOR, "detectors": {"faces": {"type": "centerface", "threshold": 0.45}}}
    assert (
        client.put("/api/v1/rules/camera/3", json=ok, headers=csrf_headers(client)).status_code
        == 201
    )
    r = client.put("/api/v1/rules/camera/3", json=dict(ok, method="blur"),
                   headers=csrf_headers(client))  # fmt: skip
    assert (
        r.status_code == 422
        and "method blur is weaker than the floor's pixelate" in r.json["error"]
    )


@pytest.mark.parametrize("two_person", [True, False])
def test_lowering_needs_a_second_officer_only_when_configured(tmp_path, two_person):
    app = _app(tmp_path, unmask_requires_second_approver=two_person)
    ctx = app.server.config["GRIDSIGHT"]
    alice, bob = app.server.test_client(), app.server.test_client()
    a_name = login(alice, app, "privacy_officer")
    b_name = login(bob, app, "privacy_officer")
    strong = {"targets": FLOOR, "method": "fill", "masks": [
        {"name": "window", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]}]}  # fmt: skip
    r = alice.put("/api/v1/rules/camera/2", json=strong, headers=csrf_headers(alice))
    assert r.status_code == 201
    weak = dict(strong, masks=[])  # the mask removed
    r = alice.put("/api/v1/rules/camera/2", json=weak, headers=csrf_headers(alice))
    if not two_person:
        assert r.status_code == 201 and r.json["lowers"] == ["'window' removed, shrunk, "
                                                              "made liftable or weakened"]  # fmt: skip
        with ctx.db.session() as s:
            (e,) = audit.search(s, action="rules.save.lowering")
        assert e.actor == a_name and json.loads(e.detail)["approved_by"] is None
        return
    assert r.status_code == 202
    change_id = r.json["change"]["id"]
    assert len(rule_service.rules_for_camera(ctx.db, 2).masks) == 1  # still in force
    r = alice.post(f"/api/v1/rules/changes/{change_id}/approve", headers=csrf_headers(alice))
    assert r.status_code == 403
    r = bob.post(f"/api/v1/rules/changes/{change_id}/approve", headers=csrf_headers(bob))
    assert r.status_code == 200, r.json
    assert rule_service.rules_for_camera(ctx.db, 2).masks == ()
    with ctx.db.session() as s:
        (e,) = audit.search(s, action="rules.approve")
    assert e.actor == b_name and json.loads(e.detail)["requested_by"] == a_name
