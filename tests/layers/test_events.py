"""Live events of committed writes (``layers.events``): published after the outermost
commit only, never for a rolled-back write, savepoints followed; real SQLite fixture city."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bench.incident_city import grid_center
from layers import events
from layers.models import Incident, IncidentEvent
from layers.services import cameras, workflow
from layers.services import incidents as svc
from tests.dbs import new_db


class Recorder:
    """A publisher that keeps what it was handed, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, dict]]] = []

    def __call__(self, items):
        self.batches.append(list(items))

    @property
    def events(self) -> list[tuple[str, dict]]:
        return [e for b in self.batches for e in b]


@pytest.fixture
def db(tmp_path):
    return new_db(tmp_path / "city.sqlite")


@pytest.fixture
def published(db):
    rec = Recorder()
    detach = events.attach(db, rec)
    yield rec
    detach()


def _incident(i=0, j=0, category="ENV") -> dict:
    lon, lat = grid_center(i, j)
    return {"lon": lon, "lat": lat, "category": category, "reporter_name": "张三",
            "reporter_phone": "13800138000", "description": "路灯不亮"}  # fmt: skip


def test_created_event_only_after_commit(db, published):
    with db.session() as s:
        row = svc.create_incident(s, _incident(2, 1))
        s.flush()
        assert published.events == []  # flushed, not committed: nobody may hear of it yet
        assert events.pending(s)[0][0] == "incident.created"
        iid, gid = row.id, row.grid_id
    assert published.batches == [[("incident.created", published.events[0][1])]]
    data = published.events[0][1]
    assert data["id"] == iid and data["grid_id"] == gid and data["category"] == "ENV"
    assert data["status"] == "collected" and data["created_at"]
    # no personal data travels on the bus
    text = repr(data)
    assert "张三" not in text and "13800138000" not in text and "路灯" not in text


def test_rolled_back_write_publishes_nothing(db, published):
    with pytest.raises(RuntimeError), db.session() as s:
        svc.create_incident(s, _incident())
        s.flush()
        raise RuntimeError("the request failed after the insert")
    with db.session() as s:  # a later, successful transaction on a new session
        svc.create_incident(s, _incident(1, 0))
    assert [k for k, _ in published.events] == ["incident.created"]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1


def test_same_session_rollback_then_commit(db, published):
    s = db.new_session()
    try:
        svc.create_incident(s, _incident())
        s.rollback()
        second = svc.create_incident(s, _incident(3, 1))
        s.commit()
        assert [d["id"] for _, d in published.events] == [second.id]
    finally:
        s.close()


def test_workflow_event_waits_for_the_outer_commit_not_the_audit_savepoint(db, published):
    """``workflow.apply`` writes its audit record in a savepoint (begin_nested): releasing
    that savepoint fires SQLAlchemy's after_commit, which must not publish anything."""
    with db.session() as s:
        iid = svc.create_incident(s, _incident()).id
    published.batches.clear()
    with db.session() as s:
        workflow.apply(s, iid, "register", actor="li", role="dispatcher")
        assert published.events == []
        assert [k for k, _ in events.pending(s)] == ["incident.updated"]
    assert len(published.events) == 1
    kind, data = published.events[0]
    assert kind == "incident.updated"
    assert (data["id"], data["action"], data["from_status"], data["to_status"]) == (
        iid, "register", "collected", "registered"
    )  # fmt: skip


def test_workflow_rolled_back_with_its_audit_savepoint(db, published):
    with db.session() as s:
        iid = svc.create_incident(s, _incident()).id
    published.batches.clear()
    with pytest.raises(RuntimeError), db.session() as s:
        workflow.apply(s, iid, "register", actor="li", role="dispatcher")
        raise RuntimeError("later step of the request failed")
    assert published.events == []
    with db.session() as s:
        assert s.get(Incident, iid).status == "collected"


def test_savepoint_rollback_drops_only_its_own_events(db, published):
    with db.session() as s:
        keep = svc.create_incident(s, _incident(0, 0)).id
        with pytest.raises(RuntimeError), s.begin_nested():
            svc.create_incident(s, _incident(1, 1))
            raise RuntimeError("inner step refused")
        with s.begin_nested():  # a released savepoint keeps its event for the outer commit
            inner_kept = svc.create_incident(s, _incident(2, 0)).id
        assert published.events == []
    assert [d["id"] for _, d in published.events] == [keep, inner_kept]


def test_released_savepoint_then_outer_rollback_publishes_nothing(db, published):
    with pytest.raises(RuntimeError), db.session() as s:
        with s.begin_nested():
            svc.create_incident(s, _incident())
        raise RuntimeError("outer failure")
    assert published.events == []


def test_a_failing_publisher_never_breaks_the_commit(db):
    def broken(_items):
        raise ConnectionError("Redis is down")

    detach = events.attach(db, broken)
    try:
        with db.session() as s:
            iid = svc.create_incident(s, _incident()).id
        with db.session() as s:
            assert s.get(Incident, iid) is not None
    finally:
        detach()


def test_group_commit_intake_publishes_each_created_incident_once(db, published):
    writer = svc.IntakeWriter(db).start()
    try:
        futs = [writer.submit(_incident(i % 8, i % 2), idempotency_key=f"k{i % 5}")
                for i in range(5)]  # fmt: skip
        docs = [f.result(timeout=30)[0] for f in futs]
        replay, created = writer.create(_incident(0, 0), idempotency_key="k0")
    finally:
        writer.stop()
    assert created is False
    ids = [d["id"] for k, d in published.events if k == "incident.created"]
    assert sorted(ids) == sorted(d["id"] for d in docs) and replay["id"] in ids
    assert len(ids) == len(set(ids)) == 5


def test_camera_status_event_only_on_a_change(db, published):
    cam = db.city["cameras"][0]
    cameras.set_status(db, cam, "offline")
    cameras.set_status(db, cam, "offline")  # the hub's heartbeat re-reports it
    cameras.set_status(db, cam, "online")
    kinds = [(k, d["id"], d["status"], d["before"]) for k, d in published.events]
    assert kinds == [("camera.status", cam, "offline", "online"),
                     ("camera.status", cam, "online", "offline")]  # fmt: skip


def test_detach_stops_publishing(db):
    rec = Recorder()
    detach = events.attach(db, rec)
    detach()
    with db.session() as s:
        svc.create_incident(s, _incident())
        assert s.scalar(select(func.count()).select_from(IncidentEvent)) >= 1
    assert rec.events == []


def test_unknown_kind_is_refused(db):
    with db.session() as s, pytest.raises(events.EventKindError, match="incident.created"):
        events.emit(s, "incident.deleted", {})
