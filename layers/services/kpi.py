"""GB/T 30428 case KPIs per grid, street, district or category and period, computed exactly.

Definitions (merged duplicates never count; a case is counted where its point lies):

- 应结案数 ``due``: cases whose deadline ``due_at`` falls in the period.
- 结案数 ``closed``: of those, closed (closed or evaluated) before the period's end.
- 按期结案数 ``closed_on_time``: of those, closed no later than their deadline.
- 结案率 = closed / due; 按期结案率 = closed_on_time / due (percent, rounded half-up to 0.01).
- 应立案数 ``reported``: cases collected in the period; 按时立案数 ``registered_on_time``: of
  those, registered within ``register_limit_hours`` working hours; 按时立案率 = ratio.
- 返工数 ``rework``: rework actions taken in the period.
- 平均处置时长 ``mean_handling_hours``: over the closed cases, mean hours from dispatch (or
  collection if never dispatched) to closure, calendar time.

Ratios are computed with ``fractions.Fraction`` and rounded once, so 911/972 gives 93.72
and 737/972 gives 75.82, never a float artefact.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from layers.exportsafe import csv_writer, xlsx_row
from layers.models import AdminArea, Category, Grid, Incident, IncidentEvent
from layers.services import ServiceError
from layers.services import sla as sla_service
from layers.services.scope import Scope
from layers.services.spatial import locator

log = logging.getLogger(__name__)

GROUPS = ("city", "district", "street", "grid", "category")
PERIODS = (None, "day", "week", "month")
CST = dt.timezone(dt.timedelta(hours=8))
CLOSED = ("closed", "evaluated")
COLUMNS = [
    ("period", "周期", "period"),
    ("key", "编码", "code"),
    ("name", "名称", "name"),
    ("due", "应结案数", "cases due"),
    ("closed", "结案数", "closed"),
    ("closed_on_time", "按期结案数", "closed on time"),
    ("closure_rate", "结案率(%)", "closure rate (%)"),
    ("on_time_closure_rate", "按期结案率(%)", "on-time closure rate (%)"),
    ("reported", "应立案数", "cases reported"),
    ("registered_on_time", "按时立案数", "registered on time"),
    ("on_time_registration_rate", "按时立案率(%)", "on-time registration rate (%)"),
    ("rework", "返工数", "rework count"),
    ("mean_handling_hours", "平均处置时长(小时)", "mean handling time (h)"),
]


def ratio(numerator: int, denominator: int) -> Fraction | None:
    """Return n/d exactly as a Fraction (None if d is 0): every GB/T 30428 rate is one."""
    if not denominator:
        return None
    return Fraction(int(numerator), int(denominator))


def closure_rates(closed: int, closed_on_time: int, due: int) -> tuple[Fraction | None, ...]:
    """Return (结案率 closed / due, 按期结案率 closed on time / due), exact; None if none is due.

    The one definition of both rates: the KPI table shows them as ``percent``, the map's
    side panel as a 0..1 fraction.
    """
    return ratio(closed, due), ratio(closed_on_time, due)


def as_percent(value: Fraction | None) -> float | None:
    """Return an exact ratio as a percentage rounded half-up to two decimals (None stays)."""
    if value is None:
        return None
    exact = Decimal(100 * value.numerator) / Decimal(value.denominator)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def percent(numerator: int, denominator: int) -> float | None:
    """Return 100·n/d rounded half-up to two decimals (None if d is 0)."""
    return as_percent(ratio(numerator, denominator))


def _period_label(ts: dt.datetime, period: str | None) -> str:
    if period is None:
        return "all"
    local = ts.astimezone(CST)
    if period == "day":
        return local.date().isoformat()
    if period == "week":
        y, w, _ = local.isocalendar()
        return f"{y}-W{w:02d}"
    return f"{local.year}-{local.month:02d}"


class _Namer:
    """Resolve an incident to its group key and display name."""

    def __init__(self, session: Session, group_by: str, lang: str) -> None:
        self.group_by = group_by
        self.lang = lang
        self.loc = locator(session) if group_by in ("district", "street") else None
        self.names: dict[object, tuple[str, str]] = {}
        if group_by in ("district", "street"):
            for a in session.execute(
                select(AdminArea.id, AdminArea.code, AdminArea.name).where(
                    AdminArea.level == group_by
                )
            ):
                self.names[a.id] = (a.code, a.name)
        elif group_by == "grid":
            for g in session.execute(select(Grid.id, Grid.code, Grid.name)):
                self.names[g.id] = (g.code, g.name)
        elif group_by == "category":
            for c in session.execute(select(Category.code, Category.name_zh, Category.name_en)):
                self.names[c.code] = (c.code, c.name_zh if lang == "zh" else c.name_en)

    def __call__(self, grid_id: int | None, category: str) -> tuple[str, str]:
        if self.group_by == "city":
            return ("city", "全市" if self.lang == "zh" else "whole city")
        if self.group_by == "category":
            return self.names.get(category, (category, category))
        if grid_id is None:
            return ("-", "-")
        if self.group_by == "grid":
            return self.names.get(grid_id, (str(grid_id), str(grid_id)))
        area = self.loc.area_chain(int(grid_id)).get(self.group_by)
        return self.names.get(area, ("-", "-"))


def compute_kpis(
    session: Session,
    start: dt.datetime,
    end: dt.datetime,
    *,
    scope: Scope,
    group_by: str = "city",
    period: str | None = None,
    register_limit_hours: float = 1.0,
    calendar: sla_service.WorkCalendar | None = None,
    lang: str = "zh",
) -> list[dict]:
    """Return one KPI row per group (and period) for cases in ``[start, end)``.

    Parameters
    ----------
    scope : layers.services.scope.Scope
        Only the cases the reader may see (a district scope: the cases in its grids).
    start, end : aware datetime
        The reporting window.
    group_by : "city", "district", "street", "grid" or "category"
    period : None, "day", "week" or "month"
        Split the window by local (UTC+8) calendar period.
    register_limit_hours : float
        Working hours within which a case must be registered to count as on time.

    Raises
    ------
    ServiceError
        For an unknown group or period, naive datetimes or ``end <= start``.
    """
    if group_by not in GROUPS:
        raise ServiceError(f"group_by: {group_by!r} is unknown; use one of {', '.join(GROUPS)}")
    if period not in PERIODS:
        raise ServiceError(f"period: {period!r} is unknown; use day, week or month")
    if start.tzinfo is None or end.tzinfo is None:
        raise ServiceError("start/end: give timezone-aware times, e.g. 2026-11-01T00:00:00+08:00")
    if end <= start:
        raise ServiceError("end: must be after start")
    cal = calendar or sla_service.default_calendar()
    namer = _Namer(session, group_by, lang)
    acc: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"due": 0, "closed": 0, "closed_on_time": 0, "reported": 0,
                 "registered_on_time": 0, "rework": 0, "handling_s": Fraction(0), "name": ""}
    )  # fmt: skip

    rows = session.execute(
        select(
            Incident.id, Incident.grid_id, Incident.category_code, Incident.status,
            Incident.created_at, Incident.registered_at, Incident.dispatched_at,
            Incident.closed_at, Incident.due_at,
        ).where(
            Incident.duplicate_of.is_(None),
            or_(and_(Incident.due_at >= start, Incident.due_at < end),
                and_(Incident.created_at >= start, Incident.created_at < end)),
            *scope.incidents(session),
        )
    ).all()  # fmt: skip
    for r in rows:
        key, name = namer(r.grid_id, r.category_code)
        if r.due_at is not None and start <= r.due_at < end:
            a = acc[(_period_label(r.due_at, period), key)]
            a["name"] = name
            a["due"] += 1
            if r.status in CLOSED and r.closed_at is not None and r.closed_at < end:
                a["closed"] += 1
                if r.closed_at <= r.due_at:
                    a["closed_on_time"] += 1
                began = r.dispatched_at or r.created_at
                a["handling_s"] += Fraction(int((r.closed_at - began).total_seconds()))
        if start <= r.created_at < end:
            a = acc[(_period_label(r.created_at, period), key)]
            a["name"] = name
            a["reported"] += 1
            if r.registered_at is not None and (
                cal.working_hours_between(r.created_at, r.registered_at) <= register_limit_hours
            ):
                a["registered_on_time"] += 1

    reworks = session.execute(
        select(IncidentEvent.ts, Incident.grid_id, Incident.category_code)
        .join(Incident, Incident.id == IncidentEvent.incident_id)
        .where(IncidentEvent.action == "rework", IncidentEvent.ts >= start, IncidentEvent.ts < end,
               Incident.duplicate_of.is_(None), *scope.incidents(session))
    ).all()  # fmt: skip
    for ts, grid_id, category in reworks:
        key, name = namer(grid_id, category)
        a = acc[(_period_label(ts, period), key)]
        a["name"] = name
        a["rework"] += 1

    out = []
    for (label, key), a in sorted(acc.items()):
        mean_h = round(float(a["handling_s"] / a["closed"] / 3600), 2) if a["closed"] else None
        closure, on_time = closure_rates(a["closed"], a["closed_on_time"], a["due"])
        out.append({
            "period": label, "key": key, "name": a["name"], "due": a["due"],
            "closed": a["closed"], "closed_on_time": a["closed_on_time"],
            "closure_rate": as_percent(closure), "on_time_closure_rate": as_percent(on_time),
            "reported": a["reported"], "registered_on_time": a["registered_on_time"],
            "on_time_registration_rate": percent(a["registered_on_time"], a["reported"]),
            "rework": a["rework"], "mean_handling_hours": mean_h,
        })  # fmt: skip
    return out


def _header(lang: str) -> list[str]:
    return [zh if lang == "zh" else en for _, zh, en in COLUMNS]


def to_csv(rows: list[dict], lang: str = "zh") -> bytes:
    """Return the KPI rows as CSV (UTF-8 with BOM so spreadsheet programs read Chinese)."""
    buf = io.StringIO()
    writer = csv_writer(buf, lineterminator="\r\n")  # area/grid names are data: no formulas
    writer.writerow(_header(lang))
    for r in rows:
        writer.writerow(["" if r[k] is None else r[k] for k, _, _ in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(rows: list[dict], lang: str = "zh") -> bytes:
    """Return the KPI rows as an XLSX workbook (one sheet, header row, numbers as numbers)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "KPI"
    xlsx_row(ws, _header(lang))
    for r in rows:
        xlsx_row(ws, [r[k] for k, _, _ in COLUMNS])  # text cells are strings, never formulas
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
