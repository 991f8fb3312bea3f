"""The live refresh protocol as a pure planner: what one tick of an open map must read."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from layers.services.refresh import (
    DB_PROBE_TICKS,
    RESYNC_TICKS,
    BusRead,
    Step,
    camera_changes,
    plan,
)
from layers.services.scope import Scope

TODAY = "2026-12-01"
IN_STEP = {"fkey": "f", "n": 3, "day": TODAY}


@dataclass
class Ev:
    kind: str
    data: dict = field(default_factory=dict)


@pytest.mark.parametrize(
    "cursor",
    [{}, {**IN_STEP, "fkey": "other"}, {**IN_STEP, "n": RESYNC_TICKS}],
    ids=["first tick", "filter changed", "resync due"],
)
def test_a_full_resync(cursor):
    assert plan(cursor, "f", BusRead([]), TODAY) is Step.FULL


def test_a_quiet_bus_means_no_database_read_but_every_probe_tick():
    assert plan(IN_STEP, "f", BusRead([]), TODAY) is Step.IDLE
    assert plan(IN_STEP, "f", BusRead([Ev("camera.status")]), TODAY) is Step.IDLE
    probe = {**IN_STEP, "n": DB_PROBE_TICKS - 1}  # this tick is the DB_PROBE_TICKS-th
    assert plan(probe, "f", BusRead([]), TODAY) is Step.CHANGES


def test_incident_events_a_bus_that_cannot_vouch_or_a_new_day_read_the_changes():
    assert plan(IN_STEP, "f", BusRead([Ev("incident.created")]), TODAY) is Step.CHANGES
    assert plan(IN_STEP, "f", BusRead(None), TODAY) is Step.CHANGES
    assert plan(IN_STEP, "f", BusRead([]), "2026-12-02") is Step.CHANGES


def test_camera_changes_keep_the_scope_and_skip_malformed_events():
    events = [
        Ev("camera.status", {"id": 1, "gb_id": "53010200001310000001", "status": "offline"}),
        Ev("camera.status", {"id": 2, "gb_id": "53010300001310000002", "status": "online"}),
        Ev("camera.status", {"gb_id": "53010200001310000003"}),  # no id: nothing to patch
        Ev("incident.created", {"id": 9}),
        Ev("camera.status", {"id": 4, "gb_id": "53010200001310000004", "status": None}),
    ]
    assert camera_changes(events, Scope.ALL) == {"1": "offline", "2": "online", "4": "unknown"}
    scoped = Scope(districts=frozenset({"530102"}))
    assert camera_changes(events, scoped) == {"1": "offline", "4": "unknown"}
    assert camera_changes(events, Scope.NONE) == {}
