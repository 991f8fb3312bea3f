"""``python -m layers migrate-db``: a seeded SQLite deployment moved to SQLite and to PostGIS.

Real databases on both sides (the target runs once per backend); the source keeps being
written during the copy, as a running deployment's would be.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, text, update

from layers.__main__ import main
from layers.db import Database
from layers.migrate_db import MigrateDbError, copy_database
from layers.models import AuditEntry, Incident, IncidentEvent
from layers.seed import seed_city
from layers.services import audit, incidents
from layers.spatial_sql import geom_of
from tests.dbs import db_url

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    """Return the path of a seeded tiny SQLite city with audit entries and a user."""
    from layers.services import users

    path = tmp_path_factory.mktemp("mdb") / "src.sqlite"
    db = Database(db_url(path))
    seed_city(db, scale="tiny", seed=5, now=NOW, progress=False)
    with db.session() as s:
        users.create_user(s, "amy", "dispatcher", "correct-horse-9", actor="tests",
                          must_change_password=False)  # fmt: skip
        for i in range(5):
            audit.record(s, actor="amy", role="dispatcher", action="login.ok", target=str(i))
    db.dispose()
    return path


@pytest.fixture
def source(source_file, tmp_path):
    import shutil

    path = tmp_path / "src.sqlite"
    shutil.copy(source_file, path)
    db = Database(db_url(path))
    yield db
    db.dispose()


def _counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Incident, IncidentEvent, AuditEntry)}  # fmt: skip


def test_copy_is_complete_and_verified(source, tmp_path, db_backend):
    target = Database(db_url(tmp_path / "dst.sqlite", db_backend))
    report = copy_database(source, target)
    assert report.ok, report.summary()
    by_name = {t.name: t for t in report.tables}
    assert by_name["incidents"].source_rows == 2000 and by_name["incidents"].copied == 2000
    assert _counts(target) == _counts(source)
    # the chain moved byte for byte: it verifies on the target
    assert audit.verify(target).ok and audit.verify(target).count == _counts(source)["audit_log"]
    # the target's id sequences continue after the copied ids
    lon, lat = _some_incident_lonlat(source)
    with target.session() as s:
        new = incidents.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"})
        assert new.id > 2000 and new.grid_id is not None
    if db_backend == "postgis":  # generated PostGIS geometry matches the copied coordinates
        with target.session() as s:
            bad = s.scalar(
                select(func.count())
                .select_from(Incident)
                .where(func.ST_X(geom_of(Incident)) != Incident.lon)
            )
        assert bad == 0
    target.dispose()


def _some_incident_lonlat(db: Database) -> tuple[float, float]:
    with db.session() as s:
        row = s.execute(select(Incident.lon, Incident.lat).order_by(Incident.id)).first()
    return float(row.lon), float(row.lat)


def test_copy_while_the_source_is_written_then_sync_catches_up(source, tmp_path, db_backend):
    target_url = db_url(tmp_path / "dst.sqlite", db_backend)
    lon, lat = _some_incident_lonlat(source)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        while not stop.is_set():
            with source.session() as s:
                written.append(incidents.create_incident(
                    s, {"lon": lon, "lat": lat, "category": "ENV"}).id)  # fmt: skip

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(written) < 3:  # the copy starts while the "app" commits
            threading.Event().wait(0.01)
        report = copy_database(source, Database(target_url))
    finally:
        stop.set()
        t.join()
    # one consistent snapshot: whatever it holds verified exactly, mid-write
    assert report.ok, report.summary()
    assert written, "the writer should have committed during the copy"
    # the app is "stopped"; changes of every kind since the snapshot
    with source.session() as s:
        s.execute(update(Incident).where(Incident.id == 7).values(description="改过了"))
        s.execute(text("DELETE FROM incident_events WHERE incident_id = 9"))
        s.execute(text("DELETE FROM incidents WHERE id = 9"))
    assert main(["migrate-db", db_url(tmp_path / "src.sqlite"), target_url, "--no-progress"]) == 1
    assert main(["migrate-db", db_url(tmp_path / "src.sqlite"), target_url, "--sync",
                 "--no-progress"]) == 0  # fmt: skip
    target = Database(target_url)
    assert _counts(target) == _counts(source)
    with target.session() as s:
        assert s.get(Incident, 7).description == "改过了"
        assert s.get(Incident, 9) is None
        assert s.get(Incident, max(written)) is not None
    target.dispose()


def test_a_target_that_alters_rows_fails_verification(source, tmp_path):
    """A copy that does not read back identically is reported, never called verified."""
    target = Database(db_url(tmp_path / "dst.sqlite"))
    target.migrate()
    with target.session() as s:
        s.execute(text("CREATE TRIGGER meddle AFTER INSERT ON incidents WHEN NEW.id = 5 BEGIN "
                       "UPDATE incidents SET description = 'x' WHERE id = 5; END"))  # fmt: skip
    report = copy_database(source, target)
    assert not report.ok
    assert [t.name for t in report.tables if not t.ok] == ["incidents"]
    assert "MISMATCH" in report.summary()
    target.dispose()


def test_refusals_name_the_problem(source, tmp_path, capsys, db_backend):
    src_url = db_url(tmp_path / "src.sqlite")
    dst_url = db_url(tmp_path / "dst.sqlite", db_backend)
    with pytest.raises(MigrateDbError, match="same database"):
        copy_database(source, Database(src_url))
    unmigrated = Database(db_url(tmp_path / "empty.sqlite"))
    with unmigrated.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(MigrateDbError, match="upgrade it first"):
        copy_database(unmigrated, Database(dst_url))
    assert main(["migrate-db", src_url, dst_url, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["migrate-db", src_url, dst_url, "--no-progress"]) == 1
    assert "already holds data" in capsys.readouterr().err
    assert main(["migrate-db", "nonsense", dst_url]) == 2
    assert "not valid" in capsys.readouterr().err


def test_too_long_value_is_named_on_postgis(source, tmp_path):
    """SQLite keeps over-long strings, PostgreSQL refuses them: the row is named, nothing lands."""
    from tests.dbs import require_postgis

    require_postgis()
    with source.session() as s:
        s.execute(update(Incident).where(Incident.id == 3).values(reporter_name="名" * 80))
    target = Database(db_url(tmp_path / "dst.sqlite", "postgis"))
    with pytest.raises(MigrateDbError, match=r"table incidents, id=3: the target refuses it"):
        copy_database(source, target)
    with target.session() as s:  # one transaction: nothing half-copied stays behind
        assert s.scalar(select(func.count()).select_from(Incident)) == 0
    target.dispose()
