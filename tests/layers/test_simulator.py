"""The live incident simulator against a real SQLite city (the tiny seed)."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select

from layers.db import Database
from layers.models import Category, Grid, Incident, IncidentEvent
from layers.seed import seed_city
from layers.simulator import IncidentSimulator, SimulatorError
from tests.dbs import copy_database, db_url

NOW = dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def city_file(db_backend, tmp_path_factory):
    """Return the path of a seeded tiny city (copy it before writing to it)."""
    path = tmp_path_factory.mktemp("sim") / "city.sqlite"
    db = Database(db_url(path, db_backend))
    seed_city(db, scale="tiny", seed=11, now=NOW, progress=False)
    db.dispose()  # checkpoints the WAL into the file, so a plain copy is complete
    return path


@pytest.fixture
def city(db_backend, city_file, tmp_path):
    path = tmp_path / "city.sqlite"
    db = Database(copy_database(city_file, path, db_backend))
    yield db
    db.dispose()


def _max_id(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.max(Incident.id))) or 0


def test_step_inserts_a_routed_collected_incident(city):
    before = _max_id(city)
    sim = IncidentSimulator(city, seed=1)
    now = NOW + dt.timedelta(minutes=5)
    new_id = sim.step(now=now)
    assert new_id == before + 1
    with city.session() as s:
        inc = s.get(Incident, new_id)
        grid = s.get(Grid, inc.grid_id)
        known = set(s.scalars(select(Category.code)))
        events = s.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == new_id)).all()
    assert inc.status == "collected" and inc.created_at == now
    assert inc.category_code in known and 1 <= inc.priority <= 4
    assert shapely.contains_xy(grid.geometry, inc.lon, inc.lat)
    assert inc.center_id is not None and inc.assignee_id is not None
    assert inc.due_at > inc.created_at and inc.description
    assert [(e.action, e.actor, e.role) for e in events] == [("create", "simulator", "system")]


def test_same_seed_same_incidents(db_backend, city_file, tmp_path):
    rows = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.sqlite"
        db = Database(copy_database(city_file, path, db_backend))
        sim = IncidentSimulator(db, seed=5)
        ids = [sim.step(now=NOW + dt.timedelta(seconds=i)) for i in range(5)]
        with db.session() as s:
            got = s.execute(
                select(Incident.lon, Incident.lat, Incident.category_code, Incident.source,
                       Incident.description, Incident.reporter_name).where(Incident.id.in_(ids))
            ).all()  # fmt: skip
        rows.append([tuple(r) for r in got])
        db.dispose()
    assert rows[0] == rows[1]


def test_locations_follow_the_hotspots(city):
    with city.session() as s:
        old = np.array(s.execute(select(Incident.lon, Incident.lat)).all())
    sim = IncidentSimulator(city, seed=2)
    ids = [sim.step(now=NOW + dt.timedelta(seconds=i)) for i in range(40)]
    with city.session() as s:
        new = np.array(
            s.execute(select(Incident.lon, Incident.lat).where(Incident.id.in_(ids))).all()
        )
    # metres to the nearest older incident: mostly a few hundred metres at most
    d = np.hypot(
        (new[:, None, 0] - old[None, :, 0]) * 101_000, (new[:, None, 1] - old[None, :, 1]) * 111_000
    ).min(axis=1)
    assert np.mean(d < 600) > 0.6


def test_background_thread_adds_incidents_and_stops(city):
    before = _max_id(city)
    sim = IncidentSimulator(city, seed=3, interval_s=0.05)
    sim.start()
    assert sim.running
    deadline = time.monotonic() + 30
    while _max_id(city) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sim.stop()
    assert not sim.running
    assert _max_id(city) >= before + 2
    settled = _max_id(city)
    time.sleep(0.2)
    assert _max_id(city) == settled


def test_empty_database_is_a_clear_error(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "empty.sqlite", db_backend))
    db.migrate()
    with pytest.raises(SimulatorError, match="seed a city first"):
        IncidentSimulator(db, seed=1).step()


def test_interval_must_be_positive(city):
    with pytest.raises(ValueError, match="interval_s"):
        IncidentSimulator(city, interval_s=0)
