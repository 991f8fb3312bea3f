"""layers.services.rules against a real SQLite database: versions and scope precedence."""

from __future__ import annotations

import pytest
import shapely

from layers.db import Database
from layers.models import AdminArea, Camera, Grid, geometry_columns
from layers.services import NotFoundError
from layers.services import rules as svc
from streams.rules import RedactionRules, RuleScope


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
    assert eff.rule_id is None and eff.rules == RedactionRules() and eff.scope.kind == "default"


def test_precedence_camera_grid_district_class_default(db):
    svc.save_rule(db, RuleScope(), {"strength": 0.1}, "officer")
    svc.save_rule(db, RuleScope(kind="camera_class", value="2"), {"strength": 0.2}, "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.2
    svc.save_rule(db, RuleScope(kind="district", value="530102"), {"strength": 0.3}, "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.3
    svc.save_rule(db, RuleScope(kind="grid", value="7"), {"strength": 0.4}, "officer")
    assert svc.rules_for_camera(db, 1).strength == 0.4
    svc.save_rule(db, {"kind": "camera", "value": "1"}, {"strength": 0.5}, "officer")
    assert svc.rules_for_camera(db, "53010200001320000001").strength == 0.5
    assert svc.rules_for_camera(db, 2).strength == 0.1  # no grid, class 3: the default row


def test_versions_kept_and_revision_changes(db):
    rev0 = svc.revision(db)
    a = svc.save_rule(db, RuleScope(), {"targets": ["faces"]}, "alice")
    b = svc.save_rule(db, RuleScope(), {"targets": ["faces", "persons"]}, "bob")
    assert (a["version"], b["version"]) == (1, 2)
    versions = svc.list_versions(db, RuleScope())
    assert [(v["version"], v["active"], v["created_by"]) for v in versions] == [
        (2, True, "bob"),
        (1, False, "alice"),
    ]
    assert svc.revision(db) != rev0
    rev1 = svc.revision(db)
    svc.save_rule(db, RuleScope(kind="camera", value="1"), {}, "bob")
    assert svc.deactivate_scope(db, RuleScope(kind="camera", value="1"), "bob") == 1
    assert svc.revision(db) != rev1
    assert svc.effective_rule(db, 1).scope.kind == "default"


def test_invalid_input_is_refused(db):
    with pytest.raises(svc.RuleConfigError):
        svc.save_rule(db, RuleScope(), {"method": "swirl"}, "alice")
    with pytest.raises(svc.RuleConfigError):
        svc.save_rule(db, RuleScope(), {}, "")
    with pytest.raises(svc.RuleConfigError):
        svc.deactivate_scope(db, RuleScope(), "alice")
    with pytest.raises(NotFoundError):
        svc.effective_rule(db, 99)
