"""Map queries (layers.services.mapdata) on a real SQLite city, checked against plain Python."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

from bench.operator_city import (
    COLS,
    NOW,
    ROWS,
    build_city,
    cell_center,
    open_grid_counts,
)
from dashboard.components.heatmap import density_png
from geo.density import density_image
from layers.db import Database
from layers.models import Incident
from layers.services import mapdata
from layers.services.incidents import create_incident
from layers.services.scope import Scope
from tests.dbs import db_url


@pytest.fixture(scope="module")
def city(db_backend, tmp_path_factory):
    path = tmp_path_factory.mktemp("opcity") / "gs.sqlite"
    db = Database(db_url(path, db_backend))
    db.migrate()
    ids = build_city(db, incidents=90)
    yield db, ids
    db.dispose()


@pytest.fixture
def fresh_city(db_backend, tmp_path):
    db = Database(db_url(tmp_path / "gs.sqlite", db_backend))
    db.migrate()
    ids = build_city(db, incidents=30)
    yield db, ids
    db.dispose()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"window": "2d"}, "window"),
        ({"window": "custom"}, "start/end"),
        ({"window": "custom", "start": "2026-11-02", "end": "2026-11-01"}, "end"),
        ({"window": "custom", "start": "yesterday", "end": "2026-11-01"}, "start"),
        ({"playback": "1.5"}, "playback"),
        ({"playback": "abc"}, "playback"),
        ({"categories": ["NOPE"]}, "categories"),
        ({"area_id": "x"}, "area"),
    ],
)
def test_bad_filter_names_the_field(data, field):
    with pytest.raises(mapdata.MapFilterError, match=f"^{field}"):
        mapdata.parse_filter(data, scope=Scope.ALL)


def test_custom_end_date_includes_the_whole_day():
    f = mapdata.parse_filter(
        {"window": "custom", "start": "2026-11-01", "end": "2026-11-01"}, scope=Scope.ALL
    )
    start, end = f.time_range(NOW)
    assert end - start == dt.timedelta(days=1)
    assert start == dt.datetime(2026, 10, 31, 16, tzinfo=dt.UTC)  # 00:00 China time


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_grid_counts_match_python_oracle(city, window):
    db, _ = city
    now = dt.datetime.now(dt.UTC)
    f = mapdata.parse_filter({"window": window}, scope=Scope.ALL)
    expected = open_grid_counts(db, now - mapdata.WINDOWS[window])
    assert mapdata.grid_counts(db, f, now) == expected


def test_grid_counts_for_some_grids_include_zeros(city):
    db, ids = city
    f = mapdata.parse_filter({"window": "7d"}, scope=Scope.ALL)
    full = mapdata.grid_counts(db, f)
    empty = next(g for g in ids["grids"].values() if g not in full)
    busy = next(iter(full))
    part = mapdata.grid_counts(db, f, grid_ids=[empty, busy])
    assert part == {empty: 0, busy: full[busy]}


def test_district_and_category_filters(city):
    db, ids = city
    full = mapdata.grid_counts(db, mapdata.parse_filter({"window": "7d"}, scope=Scope.ALL))
    left = {g for (col, _row), g in ids["grids"].items() if col < COLS // 2}
    dist = mapdata.grid_counts(
        db, mapdata.parse_filter({"window": "7d", "area_id": ids["districts"][0]}, scope=Scope.ALL)
    )
    assert dist == {g: n for g, n in full.items() if g in left}
    env = mapdata.grid_counts(
        db, mapdata.parse_filter({"window": "7d", "categories": ["SECURITY"]}, scope=Scope.ALL)
    )
    with db.session() as s:
        rows = s.execute(
            select(Incident.grid_id).where(
                Incident.category_code == "SECURITY", Incident.status != "closed",
                Incident.created_at >= dt.datetime.now(dt.UTC) - dt.timedelta(days=7))
        ).scalars().all()  # fmt: skip
    assert sum(env.values()) == len(rows) > 0


def test_playback_counts_open_at_that_instant(city):
    db, _ = city
    now = dt.datetime.now(dt.UTC)
    f = mapdata.parse_filter({"window": "7d", "playback": 0.5}, scope=Scope.ALL)
    t = f.instant(now)
    with db.session() as s:
        rows = s.execute(select(Incident)).scalars().all()
        expected: dict[int, int] = {}
        for r in rows:
            if now - dt.timedelta(days=7) <= r.created_at <= t and (
                r.closed_at is None or r.closed_at > t
            ):
                expected[r.grid_id] = expected.get(r.grid_id, 0) + 1
    assert mapdata.grid_counts(db, f, now) == expected
    assert sum(expected.values()) > 0


def test_changes_since_catches_new_and_closed(fresh_city):
    db, ids = fresh_city
    cursor = mapdata.last_event_id(db)
    assert mapdata.changes_since(db, cursor)["incidents"] == []
    lon, lat = cell_center(7, 3)
    with db.session() as s:
        inc = create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"})
        new_id = inc.id
    ch = mapdata.changes_since(db, cursor)
    assert ch["incidents"] == [new_id] and ch["grids"] == [ids["grids"][(7, 3)]]
    # a closure through the workflow log is a change too
    from layers.models import IncidentEvent

    with db.session() as s:
        old = s.get(Incident, ids["incidents"][1])
        old.status, old.closed_at = "closed", dt.datetime.now(dt.UTC)
        s.add(IncidentEvent(incident_id=old.id, from_status="collected", to_status="closed",
                            action="close", actor="t", role="dispatcher"))  # fmt: skip
        grid = old.grid_id
    ch2 = mapdata.changes_since(db, ch["cursor"])
    assert ch2["incidents"] == [ids["incidents"][1]] and ch2["grids"] == [grid]


def test_cursor_waits_at_an_id_gap_a_transaction_may_still_fill(fresh_city):
    """Writers commit out of id order (PostgreSQL, several workers): no event is skipped."""
    from layers.models import IncidentEvent

    db, ids = fresh_city
    cursor = mapdata.last_event_id(db)
    inc_a, inc_b = ids["incidents"][1], ids["incidents"][2]
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:  # id cursor+2 commits first; cursor+1 is "in flight"
        s.add(IncidentEvent(id=cursor + 2, incident_id=inc_b, from_status="collected",
                            to_status="registered", action="register", actor="t",
                            role="dispatcher", ts=now))  # fmt: skip
    ch = mapdata.changes_since(db, cursor)
    assert ch["incidents"] == [] and ch["cursor"] == cursor
    assert mapdata.last_event_id(db) == cursor  # a fresh map starts before the gap too
    with db.session() as s:  # the slow transaction commits: both are seen, in order
        s.add(IncidentEvent(id=cursor + 1, incident_id=inc_a, from_status="collected",
                            to_status="registered", action="register", actor="t",
                            role="dispatcher", ts=now))  # fmt: skip
    ch = mapdata.changes_since(db, cursor)
    assert ch["incidents"] == sorted([inc_a, inc_b]) and ch["cursor"] == cursor + 2
    # a gap older than the grace period was a rollback: the cursor passes it
    old = now - dt.timedelta(seconds=mapdata.GAP_GRACE_S + 1)
    with db.session() as s:
        s.add(IncidentEvent(id=cursor + 4, incident_id=inc_a, from_status="registered",
                            to_status="dispatched", action="dispatch", actor="t",
                            role="dispatcher", ts=old))  # fmt: skip
    ch = mapdata.changes_since(db, cursor + 2)
    assert ch["incidents"] == [inc_a] and ch["cursor"] == cursor + 4
    assert mapdata.last_event_id(db) == cursor + 4


def test_shared_grid_counts_equal_a_fresh_count_and_are_reused(fresh_city, monkeypatch):
    from sqlalchemy import event

    monkeypatch.setattr(mapdata.live, "TAIL_FRESH_S", 0.0)  # every call sees the newest events
    from layers.models import IncidentEvent

    db, ids = fresh_city
    f = mapdata.parse_filter({"window": "24h"}, scope=Scope.ALL)
    cursor = mapdata.last_event_id(db)
    lon, lat = cell_center(2, 2)
    with db.session() as s:
        new_id = create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"}).id
    ch = mapdata.changes_since(db, cursor)
    first = mapdata.grid_counts_changed(db, f, ch)
    assert first == mapdata.grid_counts(db, f, grid_ids=ch["grids"]) and first
    counted = []
    listen = lambda *a: counted.append(a[2])  # noqa: E731 - statement text of each query
    event.listen(db.engine, "before_cursor_execute", listen)
    try:  # a second open map asking the same: answered from the shared counts
        assert mapdata.grid_counts_changed(db, f, ch) == first
        assert not [q for q in counted if "count(" in q.lower()]
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    # a newer event on that grid: counted again, and right
    grid = ch["grids"][0]
    with db.session() as s:
        row = s.get(Incident, new_id)
        row.status, row.closed_at = "closed", dt.datetime.now(dt.UTC)
        s.add(IncidentEvent(incident_id=row.id, from_status="collected", to_status="closed",
                            action="close", actor="t", role="dispatcher"))  # fmt: skip
    ch2 = mapdata.changes_since(db, cursor)
    again = mapdata.grid_counts_changed(db, f, ch2)
    assert again == mapdata.grid_counts(db, f, grid_ids=ch2["grids"])
    assert again[grid] == first[grid] - 1


def test_shared_event_tail_answers_like_the_database(fresh_city, monkeypatch):
    """Open maps at different cursors get, from the shared tail, what the log itself says."""
    db, _ids = fresh_city
    monkeypatch.setattr(mapdata.live, "TAIL_FRESH_S", 1e9)  # refresh only when a map is at its end
    start = mapdata.last_event_id(db)
    mapdata.changes_since(db, start)  # the first map: the tail starts here
    made = []
    for k in range(12):
        lon, lat = cell_center(k % 8, k % 4)
        with db.session() as s:
            made.append(create_incident(s, {"lon": lon, "lat": lat, "category": "ENV"}).id)
    counted = []
    from sqlalchemy import event

    listen = lambda *a: counted.append(a[2])  # noqa: E731 - statement text of each query
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        first = mapdata.changes_since(db, start)  # catches up: one read of the log
        reads = len(counted)
        for cursor in range(start, first["cursor"]):  # maps at every cursor behind the newest
            got = mapdata.changes_since(db, cursor)
            with db.session() as s:
                rows, _ = mapdata.live._fetch_events(s, cursor, 5000)
            want_incidents = sorted({r[1] for r in rows})
            assert got["incidents"] == want_incidents and got["cursor"] == (
                rows[-1][0] if rows else cursor
            )
            assert got["transitions"] == [(r[1], r[2], r[3]) for r in rows]
        assert set(first["incidents"]) == set(made) and reads > 0
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    # the maps behind the newest event read nothing: the only reads are the oracle's own
    tail_reads = [q for q in counted[reads:] if "incident_events" in q]
    assert len(tail_reads) == first["cursor"] - start


def test_new_incidents_after_id_respect_filter(fresh_city):
    db, ids = fresh_city
    last = mapdata.last_incident_id(db)
    with db.session() as s:
        for col, cat in ((0, "ENV"), (7, "SECURITY")):
            lon, lat = cell_center(col, 0)
            create_incident(s, {"lon": lon, "lat": lat, "category": cat})
    feats = mapdata.new_incidents(db, last, mapdata.parse_filter(None, Scope.ALL))
    assert [f["properties"]["cat"] for f in feats] == ["ENV", "SECURITY"]
    only_env = mapdata.new_incidents(
        db, last, mapdata.parse_filter({"categories": ["ENV"]}, scope=Scope.ALL)
    )
    assert [f["properties"]["cat"] for f in only_env] == ["ENV"]
    left = mapdata.new_incidents(
        db, last, mapdata.parse_filter({"area_id": ids["districts"][0]}, scope=Scope.ALL)
    )
    assert len(left) == 1 and left[0]["geometry"]["coordinates"][0] < cell_center(4, 0)[0]


def test_kpis_against_manual_count(city):
    db, _ = city
    now = dt.datetime.now(dt.UTC)
    k = mapdata.kpis(db, mapdata.parse_filter({"window": "7d"}, scope=Scope.ALL), now)
    with db.session() as s:
        rows = s.execute(select(Incident)).scalars().all()
    open_ = [r for r in rows if r.status != "closed"]
    assert k["open"] == len(open_)
    assert k["overdue"] == sum(1 for r in open_ if r.due_at < now)
    due = [r for r in rows if now - dt.timedelta(days=7) <= r.due_at <= now]
    closed = [r for r in due if r.closed_at is not None and r.closed_at <= now]
    ontime = [r for r in closed if r.closed_at <= r.due_at]
    assert (k["due"], k["closed"], k["closed_on_time"]) == (len(due), len(closed), len(ontime))
    assert k["closure_rate"] == pytest.approx(len(closed) / len(due))
    assert k["ontime_rate"] == pytest.approx(len(ontime) / len(due))
    assert due and 0 <= k["ontime_rate"] <= k["closure_rate"] <= 1


def test_the_map_panel_and_the_kpi_table_give_one_closure_rate(city):
    """结案率 and 按期结案率 come from ``kpi.closure_rates`` on the map and in the KPI table."""
    from fractions import Fraction

    from layers.services import kpi

    db, _ = city
    now = dt.datetime.now(dt.UTC)
    panel = mapdata.kpis(db, mapdata.parse_filter({"window": "7d"}, scope=Scope.ALL), now)
    with db.session() as s:  # the same cases: due in the last 7 days, closed by now
        (row,) = kpi.compute_kpis(s, now - dt.timedelta(days=7), now + dt.timedelta(microseconds=1),
                                  scope=Scope.ALL)  # fmt: skip
    assert (row["due"], row["closed"], row["closed_on_time"]) == (
        panel["due"], panel["closed"], panel["closed_on_time"])  # fmt: skip
    assert row["closure_rate"] == kpi.as_percent(Fraction(panel["closure_rate"]).limit_denominator(
        panel["due"]))  # fmt: skip
    assert panel["closure_rate"] == float(Fraction(row["closed"], row["due"]))
    assert panel["ontime_rate"] == float(Fraction(row["closed_on_time"], row["due"]))


def test_trend_and_hotspots(city):
    db, _ = city
    f = mapdata.parse_filter({"window": "7d"}, scope=Scope.ALL)
    tr = mapdata.trend(db, f, buckets=7)
    total = sum(sum(v) for v in tr["series"].values())
    with db.session() as s:
        n = s.query(Incident).filter(
            Incident.created_at >= dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).count()  # fmt: skip
    assert total == n and len(tr["edges"]) == 7
    hot = mapdata.top_hotspots(db, f, n=3)
    assert [h["count"] for h in hot] == sorted((h["count"] for h in hot), reverse=True)
    assert len(hot[0]["code"]) == 14


def test_hotspots_carry_the_gi_star_z_of_their_grid(city):
    """z is geo.hotspots' Gi* over every grid of the filter's area, with the filter's counts."""
    import shapely

    from geo.hotspots import hotspots
    from layers.models import Grid

    db, ids = city
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        grids_all = s.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
        recent = [r.grid_id for r in s.execute(select(Incident)).scalars()
                  if r.created_at >= now - dt.timedelta(days=7) and r.grid_id is not None]  # fmt: skip
    counts = {g: recent.count(g) for g in set(recent)}
    for area in (None, ids["districts"][0]):
        f = mapdata.parse_filter({"window": "7d", **({"area_id": area} if area else {})},
                                 scope=Scope.ALL)  # fmt: skip
        hot = mapdata.top_hotspots(db, f, now, n=5)
        grids = grids_all
        if area is not None:
            mine = {gid for (col, _row), gid in ids["grids"].items() if col < 4}
            grids = [g for g in grids if g.id in mine]
        want = hotspots(shapely.from_wkb([g.geom_wkb for g in grids]),
                        [counts.get(g.id, 0) for g in grids])  # fmt: skip
        z = dict(zip([g.id for g in grids], want["gi_z"], strict=True))
        assert hot and all(h["z"] is not None for h in hot)
        assert [h["z"] for h in hot] == [pytest.approx(z[h["grid_id"]], abs=1e-3) for h in hot]


def test_locate_click_camera_then_grid(city):
    db, ids = city
    card = mapdata.camera_card(db, ids["cameras"][5], scope=Scope.ALL)
    hit = mapdata.locate_click(db, card["lon"], card["lat"], 18, scope=Scope.ALL)
    assert hit["camera"] == ids["cameras"][5]
    lon, lat = cell_center(2, 1)
    # zoomed out, or with cameras hidden, the same kind of click selects the grid
    hit = mapdata.locate_click(db, lon, lat, 12, cameras=False, scope=Scope.ALL)
    assert hit == {"camera": None, "grid": ids["grids"][(2, 1)]}
    assert mapdata.locate_click(db, 0.0, 0.0, 12, scope=Scope.ALL)["grid"] is None


def test_grid_card_masks_the_worker_phone(city):
    db, ids = city
    card = mapdata.grid_card(db, ids["grids"][(1, 1)], scope=Scope.ALL)
    assert card["code"].startswith("5301") and len(card["code"]) == 14
    phones = [w["phone"] for w in card["workers"]]
    assert phones and all("****" in p for p in phones)
    assert card["coverage"] is not None and 0 < card["coverage"] < 1


def test_camera_card_has_no_stream_url(city):
    db, ids = city
    card = mapdata.camera_card(db, ids["cameras"][0], scope=Scope.ALL)
    assert "stream_url" not in card and len(card["gb_id"]) == 20


def test_area_labels_drill_down(city):
    db, ids = city
    top = mapdata.area_labels(db, None, scope=Scope.ALL)
    assert {f["id"] for f in top["features"]} == set(ids["districts"])
    streets = mapdata.area_labels(db, ids["districts"][1], scope=Scope.ALL)
    assert {f["id"] for f in streets["features"]} == set(ids["streets"][2:])
    assert mapdata.area_labels(db, ids["communities"][0], scope=Scope.ALL)["features"] == []
    path = mapdata.area_path(db, ids["communities"][-1], scope=Scope.ALL)
    assert [p["level"] for p in path] == ["district", "street", "community"]


def test_density_peak_and_orientation():
    bounds = (102.70, 25.00, 102.80, 25.10)
    lon = np.full(50, 102.72)
    lat = np.full(50, 25.09)  # north-west corner
    r = density_image(lon, lat, bounds, (100, 100), bandwidth_m=200)
    row, col = np.unravel_index(np.argmax(r), r.shape)
    assert row < 20 and col < 30  # row 0 is the north edge
    assert r.max() == pytest.approx(1.0)
    png = density_png(r)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_camera_cones_in_view(city):
    db, _ = city
    fc = mapdata.camera_cones(db, mapdata.city_bounds(db), scope=Scope.ALL)
    assert len(fc["features"]) == 40
    assert all(f["geometry"]["type"] == "Polygon" for f in fc["features"])


def test_rows_in_whole_city(city):
    db, ids = city
    assert len(ids["grids"]) == COLS * ROWS


def test_live_counts_follow_transitions(fresh_city):
    from layers.models import IncidentEvent

    db, ids = fresh_city
    f = mapdata.parse_filter({"categories": ["DISPUTE"]}, scope=Scope.ALL)
    base = mapdata.live_counts(db, f)
    cursor = mapdata.last_event_id(db)
    lon, lat = cell_center(4, 1)
    with db.session() as s:
        env = create_incident(s, {"lon": lon, "lat": lat, "category": "DISPUTE.NEIGHBOR"}).id
        create_incident(s, {"lon": lon, "lat": lat, "category": "SECURITY"})  # filtered out
        opened = s.scalars(select(Incident).where(
            Incident.category_code == "DISPUTE.NEIGHBOR", Incident.status == "collected",
            Incident.id != env)).first()  # fmt: skip
        opened.status, opened.closed_at = "closed", dt.datetime.now(dt.UTC)
        s.add(IncidentEvent(incident_id=opened.id, from_status="collected", to_status="closed",
                            action="close", actor="t", role="dispatcher"))  # fmt: skip
    delta = mapdata.live_counts_delta(db, f, mapdata.changes_since(db, cursor))
    assert delta == {"open": 0, "new_today": 1}  # one new dispute, one closed
    after = mapdata.live_counts(db, f)
    assert after["open"] == base["open"] + delta["open"]
    assert after["new_today"] == base["new_today"] + delta["new_today"]
