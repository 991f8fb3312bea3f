"""Intake on a real SQLite fixture city: assignment, routing, SLA, idempotency, group commit."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from bench.incident_city import grid_center
from layers.models import IdempotencyKey, Incident, IncidentEvent, Responder
from layers.services import duplicates, routing
from layers.services import incidents as svc
from layers.services.scope import Scope
from tests.dbs import new_db

CST = dt.timezone(dt.timedelta(hours=8))
# Monday 2026-11-23 10:00 Beijing time: inside working hours
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=CST)


@pytest.fixture
def db(db_backend, tmp_path):
    return new_db(tmp_path / "city.sqlite", db_backend)


def body(i=0, j=0, **kw):
    lon, lat = grid_center(i, j)
    return {"lon": lon, "lat": lat, "category": "ENV", **kw}


def test_create_assigns_grid_center_and_grid_worker(db):
    with db.session() as s:
        row = svc.create_incident(s, body(3, 1), now=MONDAY_10)
        assert row.grid_id == db.city["grids"][(3, 1)]
        assert row.assignee_id == db.city["workers"][(3, 1)]
        # ENV is grid-level work: the grid's community center owns it
        assert row.center_id == db.city["centers"][("community", 3)]
        assert row.escalation_level == "grid"
        # 48 working hours from Monday 10:00 = 6 working days of 8 h -> next Tuesday 10:00
        assert row.due_at == dt.datetime(2026, 12, 1, 10, 0, tzinfo=CST)
        assert row.escalate_at == row.due_at
        ev = s.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == row.id)).one()
        assert (ev.from_status, ev.to_status, ev.action) == (None, "collected", "create")


def test_owner_level_routes_to_street_center_staff(db):
    with db.session() as s:
        row = svc.create_incident(s, body(5, 0, category="SAFETY.FIRE"), now=MONDAY_10)
        assert row.escalation_level == "street"
        assert row.center_id == db.city["centers"][("street", 2)]
        assert row.assignee_id == db.city["staff"][("street", 2)]


def test_unavailable_worker_goes_to_nearest_available_with_id_tiebreak(db):
    with db.session() as s:
        s.get(Responder, db.city["workers"][(2, 0)]).available = False
    with db.session() as s:
        # halfway between grid (1,0) and (3,0) workers' positions, same latitude: a tie
        lon, lat = grid_center(2, 0)
        row = svc.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"}, now=MONDAY_10)
        expected = routing.nearest_available(s, lon, lat)[0][0]
        assert row.assignee_id == expected
        w1, w3 = db.city["workers"][(1, 0)], db.city["workers"][(3, 0)]
        assert expected == min(w1, w3)  # equal distance: the lower id wins


def test_outside_city_and_unknown_category_name_the_field(db):
    with db.session() as s:
        with pytest.raises(svc.IncidentInputError) as e:
            svc.create_incident(s, {"lon": 100.0, "lat": 25.0, "category": "ENV"})
        assert e.value.errors[0]["field"] == "lon/lat" and "WGS-84" in e.value.errors[0]["message"]
        with pytest.raises(svc.IncidentInputError) as e:
            svc.create_incident(s, body(category="NOPE"))
        assert e.value.errors[0]["field"] == "category"
        with pytest.raises(svc.IncidentInputError) as e:
            svc.create_incident(s, body(priority=9, extra=1))
        fields = {x["field"] for x in e.value.errors}
        assert {"priority", "extra"} <= fields


def test_external_id_is_unique_with_a_clear_error(db):
    with db.session() as s:
        first = svc.create_incident(s, body(external_id="12345-001"))
    with db.session() as s, pytest.raises(svc.DuplicateExternalIdError, match=str(first.id)):
        svc.create_incident(s, body(external_id="12345-001"))


def test_idempotency_key_returns_the_first_incident(db):
    with db.session() as s:
        a, created_a = svc.create_idempotent(s, body(description="x"), "key-1")
    with db.session() as s:
        b, created_b = svc.create_idempotent(s, body(description="x"), "key-1")
    assert created_a and not created_b and a.id == b.id
    with db.session() as s, pytest.raises(svc.IdempotencyConflictError):
        svc.create_idempotent(s, body(description="different"), "key-1")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


def test_group_commit_writer_acknowledges_only_committed_rows(db):
    writer = svc.IntakeWriter(db).start()
    results, errors = [], []

    def post(k):
        try:
            results.append(writer.create(body(k % 150 % 8, k % 2), idempotency_key=f"k{k % 150}"))
        except svc.IncidentInputError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = writer.submit({"lon": 0.0, "lat": 0.0, "category": "ENV"})
    with pytest.raises(svc.IncidentInputError):
        bad.result(timeout=10)
    writer.stop()
    assert not errors and len(results) == 200
    ids = {r[0]["id"] for r in results}
    assert len(ids) == 150  # 50 retries with a reused key got the first incident back
    assert sum(created for _, created in results) == 150
    with db.session() as s:
        stored = set(s.scalars(select(Incident.id)))
    assert ids == stored


def test_list_filters_and_paging(db):
    with db.session() as s:
        for k in range(30):
            svc.create_incident(s, body(k % 8, 0, category="ENV" if k % 3 else "SECURITY"),
                                now=MONDAY_10 + dt.timedelta(minutes=k))  # fmt: skip
    with db.session() as s:
        rows, total = svc.list_incidents(s, category="SECURITY", limit=4, scope=Scope.ALL)
        assert total == 10 and len(rows) == 4
        assert all(r.category_code == "SECURITY" for r in rows)
        west = (102.70, 25.0, 102.72, 25.04)  # columns 0-1
        rows, total = svc.list_incidents(s, bbox=west, limit=100, scope=Scope.ALL)
        assert total == sum(1 for k in range(30) if k % 8 < 2)
        rows, total = svc.list_incidents(
            s, start=MONDAY_10 + dt.timedelta(minutes=25), scope=Scope.ALL
        )
        assert total == 5
        page2, _ = svc.list_incidents(s, limit=10, offset=10, scope=Scope.ALL)
        page1, _ = svc.list_incidents(s, limit=10, offset=0, scope=Scope.ALL)
        assert not {r.id for r in page1} & {r.id for r in page2}
        cats = {c["code"] for c in svc.list_categories(s)}
        assert {"ENV", "SECURITY", "DISPUTE.NEIGHBOR"} <= cats


def test_duplicate_candidates_within_50m_and_2h(db):
    lon, lat = grid_center(4, 1)
    with db.session() as s:
        a = svc.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"}, now=MONDAY_10)
        near = svc.create_incident(
            s,
            {"lon": lon + 0.0003, "lat": lat, "category": "ENV"},  # ~30 m east
            now=MONDAY_10 + dt.timedelta(minutes=30),
        )
        far = svc.create_incident(
            s,
            {"lon": lon + 0.0008, "lat": lat, "category": "ENV"},  # ~80 m
            now=MONDAY_10 + dt.timedelta(minutes=30),
        )
        late = svc.create_incident(
            s, {"lon": lon, "lat": lat, "category": "ENV"}, now=MONDAY_10 + dt.timedelta(hours=3)
        )
        other = svc.create_incident(
            s, {"lon": lon, "lat": lat, "category": "SECURITY"}, now=MONDAY_10
        )
    with db.session() as s:
        got = [c["id"] for c in duplicates.candidates(s, near.id, scope=Scope.ALL)]
        assert got == [a.id]
        assert far.id not in [c["id"] for c in duplicates.candidates(s, a.id, scope=Scope.ALL)]
        assert late.id not in [c["id"] for c in duplicates.candidates(s, a.id, scope=Scope.ALL)]
        assert other.id not in [c["id"] for c in duplicates.candidates(s, a.id, scope=Scope.ALL)]
        wide = duplicates.candidates(
            s, a.id, radius_m=100, window=dt.timedelta(hours=4), scope=Scope.ALL
        )
        assert {c["id"] for c in wide} == {near.id, far.id, late.id}
        sugg = duplicates.suggest_merges(s)
        assert {"duplicate": near.id, "primary": a.id} == {
            k: v for k, v in sugg[0].items() if k != "distance_m"
        }


def test_cameras_that_see_the_spot(db):
    lon, lat = grid_center(0, 0)
    with db.session() as s:
        seen = routing.cameras_seeing_point(s, lon, lat, scope=Scope.ALL)
    assert [c["id"] for c in seen] == [db.city["cameras"][0]]
    assert 25 < seen[0]["distance_m"] < 35
