"""Settings that shape privacy: automatic retention purge and the two-person unmask rule."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely

from dashboard.app import create_app
from layers.models import AdminArea, Camera, Incident
from layers.services.retention import RetentionLoop
from layers.settings import Settings, load_settings
from tests.helpers_auth import make_user


def _settings(tmp_path, **kw) -> Settings:
    return load_settings(db_url=f"sqlite:///{tmp_path/'gs.sqlite'}", data_dir=tmp_path,
                         seed_on_start=False, simulator=False, **kw)  # fmt: skip


def test_retention_purges_old_reporter_data_and_snapshots(tmp_path):
    app = create_app(_settings(tmp_path, personal_data_retention_days=30), start_background=False)
    ctx = app.server.config["GRIDSIGHT"]
    now = dt.datetime.now(dt.UTC)
    with ctx.db.session() as s:
        for age_days, name in ((40, "张三"), (5, "李四")):
            s.add(Incident(lon=102.7, lat=25.0, category_code="ENV", reporter_name=name,
                           reporter_phone="13812345678",
                           created_at=now - dt.timedelta(days=age_days)))  # fmt: skip
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    old, new = snaps / "old.jpg", snaps / "new.jpg"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    import os

    past = (now - dt.timedelta(days=31)).timestamp()
    os.utime(old, (past, past))
    report = RetentionLoop(ctx.db, days=30, snapshots_dir=snaps).run_once()
    with ctx.db.session() as s:
        rows = {i.reporter_phone: i for i in s.query(Incident)}
    names = sorted(i.reporter_name for i in rows.values())
    assert names == ["", "李四"]
    assert not old.exists() and new.exists()
    assert report.incidents_blanked == 1


@pytest.mark.parametrize("two_person", [False, True])
def test_unmask_needs_second_approver_only_when_configured(tmp_path, two_person):
    from layers.services import grants

    app = create_app(
        _settings(tmp_path, unmask_requires_second_approver=two_person), start_background=False
    )
    ctx = app.server.config["GRIDSIGHT"]
    with ctx.db.session() as s:
        a = AdminArea(level="district", code="530102", name="五华区")
        a.geometry = shapely.box(102.6, 25.0, 102.8, 25.1)
        s.add(a)
        cam = Camera(gb_id="53010200001320000001", name="c", cls=1, lon=102.7, lat=25.05)
        s.add(cam)
        s.flush()
        cam_id = cam.id
    viewer, _ = make_user(app, "operator")
    officer, _ = make_user(app, "privacy_officer")
    with ctx.db.session() as s:
        grants.create_grant(s, grantee=viewer, camera_ids=[cam_id], reason="警情核查 case 42",
                            minutes=30, granted_by=officer, granted_by_role="privacy_officer")  # fmt: skip
    unmask_for = ctx.hooks.unmask_grant_for
    watermark = unmask_for(viewer, cam_id)
    if two_person:
        assert watermark is None  # not approved yet: still redacted
    else:
        assert watermark and viewer in watermark
