"""KPIs computed exactly on a month of cases (972 due, 911 closed, 737 on time), CSV and XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert

from bench.incident_city import grid_center
from layers.models import Incident, IncidentEvent
from layers.services import ServiceError, kpi
from layers.services.scope import Scope
from tests.dbs import new_db

CST = dt.timezone(dt.timedelta(hours=8))
NOV = dt.datetime(2026, 11, 1, tzinfo=CST)
DEC = dt.datetime(2026, 12, 1, tzinfo=CST)


@pytest.fixture(scope="module")
def month(db_backend, tmp_path_factory):
    """A real month's shape: 972 cases due, 911 closed (737 on time), 61 still open."""
    db = new_db(tmp_path_factory.mktemp("kpi") / "city.sqlite", db_backend)
    rows, events = [], []
    for k in range(972):
        i, j = k % 8, (k // 8) % 2
        lon, lat = grid_center(i, j)
        created = NOV + dt.timedelta(hours=k % 600)
        due = created + dt.timedelta(hours=20)
        closed = k < 911
        on_time = k < 737
        closed_at = (
            (due - dt.timedelta(hours=2) if on_time else due + dt.timedelta(hours=3))
            if closed
            else None
        )
        registered = created + dt.timedelta(minutes=30 if k % 4 else 600)
        rows.append({
            "id": k + 1, "lon": lon, "lat": lat, "category_code": "ENV" if k % 3 else "SECURITY",
            "priority": 3, "source": "patrol", "description": "", "reporter_name": "",
            "reporter_phone": "", "status": "closed" if closed else "handling",
            "created_at": created, "registered_at": registered,
            "dispatched_at": created + dt.timedelta(hours=1), "closed_at": closed_at,
            "due_at": due, "grid_id": db.city["grids"][(i, j)], "escalation_level": "grid",
            "rework_count": 1 if k % 50 == 0 else 0, "extension_hours": 0.0,
        })  # fmt: skip
        if k % 50 == 0:
            events.append({"incident_id": k + 1, "from_status": "reported", "to_status": "handling",
                           "action": "rework", "actor": "x", "role": "dispatcher",
                           "ts": created + dt.timedelta(hours=5), "reason": ""})  # fmt: skip
    # a merged duplicate never counts
    lon, lat = grid_center(0, 0)
    rows.append({**rows[0], "id": 973, "duplicate_of": 1, "status": "closed"})
    with db.session() as s:
        s.execute(insert(Incident), [{"duplicate_of": None, **r} for r in rows])
        s.execute(insert(IncidentEvent), events)
    return db


def test_city_month_matches_the_published_rates(month):
    with month.session() as s:
        (row,) = kpi.compute_kpis(
            s, NOV, DEC + dt.timedelta(days=2), group_by="city", scope=Scope.ALL
        )
    assert (row["due"], row["closed"], row["closed_on_time"]) == (972, 911, 737)
    assert row["closure_rate"] == 93.72
    assert row["on_time_closure_rate"] == 75.82
    assert row["rework"] == 20  # k % 50 == 0 for k < 972
    # dispatched 1 h after creation; on time closed at +18 h, late at +23 h
    expected = (737 * 17 + (911 - 737) * 22) / 911
    assert row["mean_handling_hours"] == round(expected, 2)
    assert row["reported"] == 972
    # registered 30 min after collection except every fourth (10 h later)
    assert row["registered_on_time"] < 972


def test_groups_add_up_to_the_city(month):
    with month.session() as s:
        for group in ("district", "street", "grid", "category"):
            rows = kpi.compute_kpis(
                s, NOV, DEC + dt.timedelta(days=2), group_by=group, scope=Scope.ALL
            )
            assert sum(r["due"] for r in rows) == 972, group
            assert sum(r["closed_on_time"] for r in rows) == 737, group
        districts = kpi.compute_kpis(
            s, NOV, DEC + dt.timedelta(days=2), group_by="district", scope=Scope.ALL
        )
    assert {r["key"] for r in districts} == {"530102", "530103"}
    assert all(r["name"].startswith("区") for r in districts)


def test_period_split_and_percent_rounding(month):
    with month.session() as s:
        days = kpi.compute_kpis(
            s, NOV, DEC + dt.timedelta(days=2), group_by="city", period="day", scope=Scope.ALL
        )
    assert len({r["period"] for r in days}) > 20
    assert sum(r["due"] for r in days) == 972
    assert kpi.percent(1, 8) == 12.5 and kpi.percent(1, 3) == 33.33 and kpi.percent(2, 3) == 66.67
    assert kpi.percent(1, 200) == 0.5 and kpi.percent(0, 0) is None
    assert kpi.percent(911, 972) == 93.72


def test_csv_and_xlsx_exports(month):
    with month.session() as s:
        rows = kpi.compute_kpis(
            s, NOV, DEC + dt.timedelta(days=2), group_by="district", scope=Scope.ALL
        )
    text = kpi.to_csv(rows, "zh").decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][6] == "结案率(%)" and len(table) == 1 + len(rows)
    wb = load_workbook(io.BytesIO(kpi.to_xlsx(rows, "en")))
    ws = wb.active
    assert ws.cell(1, 7).value == "closure rate (%)"
    assert sum(ws.cell(r, 4).value for r in range(2, ws.max_row + 1)) == 972


def test_bad_arguments_name_the_field(month):
    with month.session() as s:
        with pytest.raises(ServiceError, match="group_by"):
            kpi.compute_kpis(s, NOV, DEC, group_by="planet", scope=Scope.ALL)
        with pytest.raises(ServiceError, match="end"):
            kpi.compute_kpis(s, DEC, NOV, scope=Scope.ALL)
        with pytest.raises(ServiceError, match="timezone"):
            kpi.compute_kpis(s, NOV.replace(tzinfo=None), DEC, scope=Scope.ALL)
