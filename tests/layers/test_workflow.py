"""The GB/T 30428 workflow on a real SQLite fixture city, plus hypothesis property tests."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bench.incident_city import grid_center
from layers.models import INCIDENT_STATUSES, Incident, IncidentEvent
from layers.services import NotFoundError, escalation, sla, workflow
from layers.services import incidents as svc
from tests.dbs import new_db

CST = dt.timezone(dt.timedelta(hours=8))
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=CST)
D = {"actor": "li", "role": "dispatcher"}


@pytest.fixture(scope="module")
def db(db_backend, tmp_path_factory):
    return new_db(tmp_path_factory.mktemp("wf") / "city.sqlite", db_backend)


def new_incident(db, i=0, j=0, category="ENV", priority=3, now=MONDAY_10) -> int:
    lon, lat = grid_center(i, j)
    with db.session() as s:
        row = svc.create_incident(
            s, {"lon": lon, "lat": lat, "category": category, "priority": priority}, now=now
        )
        return row.id


def test_full_cycle_with_rework_logs_every_step(db):
    iid = new_incident(db)
    t = MONDAY_10
    steps = ["register", "dispatch", "accept", "report", "rework", "report", "close", "evaluate"]
    with db.session() as s:
        for k, action in enumerate(steps):
            workflow.apply(s, iid, action, now=t + dt.timedelta(minutes=k + 1), reason=f"s{k}", **D)
    with db.session() as s:
        row = s.get(Incident, iid)
        assert row.status == "evaluated" and row.rework_count == 1
        assert row.closed_at == t + dt.timedelta(minutes=7)
        events = workflow.history(s, iid)
    assert [e["action"] for e in events] == ["create", *steps]
    assert [e["to_status"] for e in events] == [
        "collected", "registered", "dispatched", "handling", "reported", "handling", "reported",
        "closed", "evaluated",
    ]  # fmt: skip
    assert all(e["actor"] == "li" and e["role"] == "dispatcher" for e in events[1:])
    assert events[3]["reason"] == "s2"


def test_illegal_transition_says_what_is_possible(db):
    iid = new_incident(db)
    with db.session() as s, pytest.raises(workflow.TransitionError, match="possible now: register"):
        workflow.apply(s, iid, "close", **D)
    with db.session() as s, pytest.raises(workflow.ActionNotPermittedError, match="dispatcher"):
        workflow.apply(s, iid, "register", actor="x", role="auditor")
    with db.session() as s, pytest.raises(NotFoundError):
        workflow.apply(s, 10**9, "register", **D)
    with db.session() as s, pytest.raises(workflow.TransitionError, match="unknown"):
        workflow.apply(s, iid, "teleport", **D)


def test_dispatcher_override_and_reassign(db):
    iid = new_incident(db, 2, 1)
    other = db.city["workers"][(6, 0)]
    with db.session() as s:
        workflow.apply(s, iid, "register", **D)
        row = workflow.apply(s, iid, "dispatch", assignee_id=other, reason="knows the site", **D)
        assert row.assignee_id == other
        row = workflow.apply(s, iid, "reassign", assignee_id=db.city["workers"][(2, 1)], **D)
        assert row.assignee_id == db.city["workers"][(2, 1)] and row.status == "dispatched"
    with db.session() as s, pytest.raises(NotFoundError, match="assignee_id"):
        workflow.apply(s, iid, "reassign", assignee_id=10**6, **D)


def test_merge_links_reports_and_blocks_second_dispatch(db):
    a, b, c = (new_incident(db, 7, 1) for _ in range(3))
    with db.session() as s:
        workflow.apply(s, c, "merge", into=b, **D)  # c -> b
        workflow.apply(s, b, "merge", into=a, **D)  # b -> a: c follows to a
    with db.session() as s:
        assert s.get(Incident, b).duplicate_of == a and s.get(Incident, c).duplicate_of == a
        assert s.get(Incident, b).status == "closed"
        from layers.services import duplicates

        assert duplicates.linked_reports(s, c) == [a, b, c]
    with db.session() as s, pytest.raises(workflow.TransitionError):
        workflow.apply(s, b, "dispatch", **D)  # closed by the merge: never dispatched twice
    with db.session() as s, pytest.raises(workflow.TransitionError, match="itself"):
        workflow.apply(s, a, "merge", into=c, **D)


def test_escalate_overdue_climbs_one_level_per_step(db):
    iid = new_incident(db, 1, 0, category="ENV")  # grid level, 48 working hours
    with db.session() as s:
        due = s.get(Incident, iid).due_at
    assert escalation.escalate_overdue(db, due - dt.timedelta(minutes=1)) == []
    assert iid in escalation.escalate_overdue(db, due + dt.timedelta(minutes=1))
    with db.session() as s:
        row = s.get(Incident, iid)
        assert row.escalation_level == "community"
        assert row.center_id == db.city["centers"][("community", 1)]
        assert row.assignee_id == db.city["staff"][("community", 1)]
        nxt = row.escalate_at
        assert nxt > due
    # running again right away does nothing; after the next step it climbs once more
    assert iid not in escalation.escalate_overdue(db, due + dt.timedelta(minutes=2))
    assert iid in escalation.escalate_overdue(db, nxt + dt.timedelta(seconds=1))
    with db.session() as s:
        row = s.get(Incident, iid)
        assert row.escalation_level == "street"
        assert row.center_id == db.city["centers"][("street", 0)]
        ev = s.scalars(
            select(IncidentEvent).where(
                IncidentEvent.incident_id == iid, IncidentEvent.action == "escalate"
            )
        ).all()
        assert len(ev) == 2 and all(e.actor == "system" for e in ev)


def test_pause_resume_moves_deadline_by_paused_working_time(db):
    iid = new_incident(db, 3, 0)
    with db.session() as s:
        due0 = s.get(Incident, iid).due_at
        workflow.apply(s, iid, "pause", now=MONDAY_10 + dt.timedelta(hours=1), **D)
    # paused clocks never escalate
    assert iid not in escalation.escalate_overdue(db, due0 + dt.timedelta(days=30))
    with db.session() as s:
        # paused Monday 11:00 .. Tuesday 11:00 = 8 working hours
        workflow.apply(s, iid, "resume", now=MONDAY_10 + dt.timedelta(hours=25), **D)
        row = s.get(Incident, iid)
        assert row.due_at == sla.default_calendar().add_working_hours(due0, 8)
        assert row.extension_hours == pytest.approx(8)
        workflow.apply(s, iid, "extend", hours=4, **D)
        assert s.get(Incident, iid).extension_hours == pytest.approx(12)


def test_calendar_skips_weekends_holidays_and_counts_tiaoxiu():
    cal = sla.default_calendar()
    fri_17 = dt.datetime(2026, 11, 27, 17, 0, tzinfo=CST)
    # 2 working hours from Friday 17:00: one on Friday, one on Monday 09:00-10:00
    assert cal.add_working_hours(fri_17, 2) == dt.datetime(2026, 11, 30, 10, 0, tzinfo=CST)
    # National Day 2026-10-01..07 is off; Saturday 2026-10-10 is an adjusted working day
    assert not cal.is_workday(dt.date(2026, 10, 5))
    assert cal.is_workday(dt.date(2026, 10, 10))
    sept_30_17 = dt.datetime(2026, 9, 30, 17, 0, tzinfo=CST)
    assert cal.add_working_hours(sept_30_17, 2) == dt.datetime(2026, 10, 8, 10, 0, tzinfo=CST)
    # urgent cases count round the clock
    assert sla.deadline(fri_17, 24, priority=1) == fri_17 + dt.timedelta(hours=6)


@given(
    start=st.datetimes(
        min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 12, 1),
        timezones=st.just(dt.UTC),
    ),
    hours=st.floats(min_value=0, max_value=400, allow_nan=False),
)  # fmt: skip
def test_working_hours_roundtrip(start, hours):
    cal = sla.default_calendar()
    end = cal.add_working_hours(start, hours)
    assert end >= start
    assert cal.working_hours_between(start, end) == pytest.approx(hours, abs=1e-6)


ACTION_NAMES = sorted(workflow.ACTIONS)
ROLES = ["dispatcher", "operator", "auditor", "system", "admin"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(ACTION_NAMES), st.sampled_from(ROLES),
                  st.sampled_from(["handling", "dispatched"]), st.integers(0, 3)),
        max_size=25,
    )
)  # fmt: skip
def test_no_action_sequence_reaches_an_illegal_state(db, steps):
    """Random actions (most refused): the stored history only ever takes allowed steps."""
    ids = [new_incident(db, 4, 0) for _ in range(2)]
    t = MONDAY_10
    for k, (action, role, rework_to, hours) in enumerate(steps):
        target = ids[k % 2]
        kwargs = {}
        if action == "merge":
            kwargs["into"] = ids[(k + 1) % 2]
        if action in ("reassign",):
            kwargs["assignee_id"] = db.city["workers"][(4, 1)]
        if action == "extend":
            kwargs["hours"] = hours
        try:
            with db.session() as s:
                workflow.apply(s, target, action, actor="p", role=role, rework_to=rework_to,
                               now=t + dt.timedelta(minutes=k), **kwargs)  # fmt: skip
        except (workflow.TransitionError, workflow.ActionNotPermittedError):
            pass
    with db.session() as s:
        for iid in ids:
            row = s.get(Incident, iid)
            events = s.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == iid)
                .order_by(IncidentEvent.id)
            ).all()
            assert row.status in INCIDENT_STATUSES
            assert events[0].action == "create" and events[0].to_status == "collected"
            state = "collected"
            reworks = 0
            for e in events[1:]:
                assert e.from_status == state, (e.action, e.from_status, state)
                assert (e.from_status, e.to_status) in workflow.ALLOWED_TRANSITIONS
                assert e.role in workflow.ACTIONS.get(e.action, workflow.ACTIONS["merge"]).roles
                state = e.to_status
                reworks += e.action == "rework"
            assert state == row.status
            assert row.rework_count == reworks
            if row.status in ("closed", "evaluated"):
                assert row.closed_at is not None
            if row.duplicate_of is not None:
                assert row.status in ("closed", "evaluated")
                assert row.dispatched_at is None or any(
                    e.action == "dispatch"
                    and e.id < max(x.id for x in events if x.action == "merge")
                    for e in events
                )  # a merged report is never dispatched after the merge
            assert row.duplicate_of != row.id


def test_escalation_loop_escalates_in_the_background(db):
    import time

    lon, lat = grid_center(6, 1)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    with db.session() as s:
        iid = svc.create_incident(
            s, {"lon": lon, "lat": lat, "category": "ENV", "occurred_at": old.isoformat()}
        ).id
    loop = escalation.EscalationLoop(db, interval_s=0.1)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        level = "grid"
        while time.monotonic() < deadline and level == "grid":
            time.sleep(0.1)
            with db.session() as s:
                level = s.get(Incident, iid).escalation_level
    finally:
        loop.stop()
    assert level != "grid" and not loop.running


def test_same_problem_is_never_dispatched_twice(db):
    lon, lat = grid_center(5, 1)
    t0 = MONDAY_10 + dt.timedelta(days=1)
    with db.session() as s:
        a = svc.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"}, now=t0).id
        b = svc.create_incident(
            s,
            {"lon": lon + 0.0002, "lat": lat, "category": "ENV"},
            now=t0 + dt.timedelta(minutes=20),
        ).id
        for iid in (a, b):
            workflow.apply(s, iid, "register", **D)
        workflow.apply(s, a, "dispatch", **D)
    with db.session() as s, pytest.raises(workflow.TransitionError, match=f"merge it into {a}"):
        workflow.apply(s, b, "dispatch", **D)
    with db.session() as s:  # the dispatcher judges it a different problem: allowed, logged
        row = workflow.apply(s, b, "dispatch", distinct=True, reason="two different piles", **D)
        assert row.status == "dispatched"


def test_an_action_is_its_table_row_and_handler(db, monkeypatch):
    """``apply`` has no per-action branches: a row added to ACTIONS is a working action."""
    seen = []

    def note(t: workflow.Transition) -> None:
        seen.append((t.row.id, t.options.reason))
        t.explain("(noted)")

    extra = workflow.Action("note", frozenset(workflow.OPEN_STATUSES), None,
                            workflow.DISPATCH_ROLES, "备注", note)  # fmt: skip
    monkeypatch.setitem(workflow.ACTIONS, "note", extra)
    iid = new_incident(db)
    with db.session() as s:
        row = workflow.apply(s, iid, "note", reason="called the reporter", **D)
        assert row.status == "collected"
    assert seen == [(iid, "called the reporter")]
    with db.session() as s:
        assert workflow.history(s, iid)[-1]["reason"] == "called the reporter (noted)"
    with db.session() as s, pytest.raises(workflow.TransitionError, match="assignee_id: only"):
        workflow.apply(s, iid, "note", assignee_id=1, **D)


def test_an_unknown_option_is_refused_by_name(db):
    iid = new_incident(db)
    with db.session() as s, pytest.raises(workflow.TransitionError, match="^hurry: not an action"):
        workflow.apply(s, iid, "register", hurry=True, **D)


def test_workflow_sla_and_duplicates_import_no_circle():
    """The SLA clock and the duplicate search sit below the workflow; escalation above it."""
    import ast
    from pathlib import Path

    folder = Path(workflow.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        deps = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy ones too
            if isinstance(node, ast.ImportFrom) and node.module == "layers.services":
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "layers.services."
            ):
                deps.add(node.module.split(".")[2])
    graph = {k: {d for d in v if d in graph and d != k} for k, v in graph.items()}

    def reaches(start: str, goal: str) -> bool:
        todo, seen = [start], set()
        while todo:
            for d in graph[todo.pop()] - seen:
                if d == goal:
                    return True
                seen.add(d)
                todo.append(d)
        return False

    for module in ("workflow", "sla", "duplicates"):
        assert not reaches(module, module), f"{module} imports itself through a circle"
    assert reaches("escalation", "workflow") and not reaches("sla", "workflow")
