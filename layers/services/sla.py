"""SLA deadlines in working time, approved extensions that pause the clock, overdue escalation.

Deadlines count working hours on a workday calendar (weekends, public holidays and the
adjusted working weekends 调休 are data: ``layers/data/holidays_cn.json``), except urgent
cases (priority 1), whose clock runs round the clock. An incident whose escalation time has
passed moves up one level (grid → community → street → district → city) each time
``layers.services.escalation.escalate_overdue`` runs (``next_level`` says which).

All datetimes are timezone-aware; they are stored in UTC and the calendar works in its own
local time (UTC+8 for China).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from layers.models import Incident, utcnow
from layers.services.spatial import ESCALATION_ORDER

log = logging.getLogger(__name__)

CALENDAR_FILE = Path(__file__).resolve().parents[1] / "data" / "holidays_cn.json"
# Working-time deadline = category SLA x factor; priority 1 also runs round the clock.
PRIORITY_FACTOR = {1: 0.25, 2: 0.5, 3: 1.0, 4: 1.5}
ROUND_THE_CLOCK_PRIORITIES = frozenset({1})
_MAX_DAYS = 3660  # never search more than ten years for working time


class CalendarError(ValueError):
    """The workday calendar file is malformed; the message names the entry and the fix."""


def _parse_hhmm(value: str) -> dt.time:
    try:
        h, m = (int(p) for p in value.split(":"))
        return dt.time(h, m)
    except (ValueError, AttributeError) as exc:
        raise CalendarError(f"work_periods: {value!r} is not HH:MM") from exc


@dataclass(frozen=True)
class WorkCalendar:
    """A working-time calendar (``load_calendar``): each day's working periods, holidays, 调休.

    Parameters
    ----------
    tz : datetime.tzinfo
        The calendar's local time zone.
    periods : tuple of (time, time)
        Working periods of a workday, local time, sorted and non-overlapping.
    weekend : frozenset of int
        ``date.weekday()`` values that are days off unless listed in ``workdays``.
    holidays, workdays : frozenset of date
        Days off on weekdays; working days on weekends.
    """

    tz: dt.tzinfo
    periods: tuple[tuple[dt.time, dt.time], ...]
    weekend: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    workdays: frozenset[dt.date] = field(default_factory=frozenset)

    def is_workday(self, day: dt.date) -> bool:
        """Return True if ``day`` (local date) is a working day."""
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() not in self.weekend

    def _windows(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        if not self.is_workday(day):
            return []
        return [
            (dt.datetime.combine(day, a, self.tz), dt.datetime.combine(day, b, self.tz))
            for a, b in self.periods
        ]

    def add_working_hours(self, start: dt.datetime, hours: float) -> dt.datetime:
        """Return the UTC time ``hours`` working hours after ``start`` (aware datetime).

        Raises
        ------
        ValueError
            If ``start`` is naive or ``hours`` is negative.
        """
        if start.tzinfo is None:
            raise ValueError("start: naive datetime; attach a timezone (e.g. datetime.UTC)")
        if hours < 0:
            raise ValueError(f"hours: {hours!r} is negative; give 0 or more working hours")
        remaining = dt.timedelta(hours=hours)
        if not remaining:
            return start.astimezone(dt.UTC)
        cursor = start.astimezone(self.tz)
        day = cursor.date()
        for _ in range(_MAX_DAYS):
            for a, b in self._windows(day):
                seg_start = max(a, cursor)
                if seg_start >= b:
                    continue
                avail = b - seg_start
                if remaining <= avail:
                    return (seg_start + remaining).astimezone(dt.UTC)
                remaining -= avail
            day += dt.timedelta(days=1)
        raise CalendarError("no working time found within ten years; check work_periods")

    def working_hours_between(self, a: dt.datetime, b: dt.datetime) -> float:
        """Return the working hours from ``a`` to ``b`` (negative if ``b`` is before ``a``)."""
        if a.tzinfo is None or b.tzinfo is None:
            raise ValueError("a/b: naive datetime; attach a timezone (e.g. datetime.UTC)")
        if b < a:
            return -self.working_hours_between(b, a)
        a_l, b_l = a.astimezone(self.tz), b.astimezone(self.tz)
        total = dt.timedelta()
        day = a_l.date()
        while day <= b_l.date():
            for w0, w1 in self._windows(day):
                lo, hi = max(w0, a_l), min(w1, b_l)
                if hi > lo:
                    total += hi - lo
            day += dt.timedelta(days=1)
        return total.total_seconds() / 3600.0


def load_calendar(path: Path | str = CALENDAR_FILE) -> WorkCalendar:
    """Return the WorkCalendar described by a JSON file (see ``layers/data/holidays_cn.json``).

    Raises
    ------
    CalendarError
        If a date or period cannot be parsed.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    tz = dt.timezone(dt.timedelta(hours=float(data.get("timezone_offset_hours", 8))))
    periods = tuple(
        sorted((_parse_hhmm(a), _parse_hhmm(b)) for a, b in data.get("work_periods", []))
    )
    if not periods or any(a >= b for a, b in periods):
        raise CalendarError("work_periods: give [start, end] pairs with start < end, e.g. 09:00")

    def days(key: str) -> frozenset[dt.date]:
        out = set()
        for year, values in data.get(key, {}).items():
            for v in values:
                try:
                    out.add(dt.date.fromisoformat(v))
                except ValueError as exc:
                    raise CalendarError(f"{key}.{year}: {v!r} is not YYYY-MM-DD") from exc
        return frozenset(out)

    return WorkCalendar(
        tz=tz,
        periods=periods,
        weekend=frozenset(int(d) for d in data.get("weekend", [5, 6])),
        holidays=days("holidays"),
        workdays=days("workdays"),
    )


@lru_cache(maxsize=1)
def default_calendar() -> WorkCalendar:
    """Return the shipped Chinese workday calendar (cached)."""
    return load_calendar(CALENDAR_FILE)


def sla_hours_for(category_sla_hours: float, priority: int) -> float:
    """Return the deadline length in hours for a category SLA and a priority (1..4)."""
    return float(category_sla_hours) * PRIORITY_FACTOR.get(int(priority), 1.0)


def add_sla_time(
    start: dt.datetime, hours: float, priority: int, calendar: WorkCalendar | None = None
) -> dt.datetime:
    """Return ``start`` plus ``hours`` of SLA time: calendar hours for urgent, else working."""
    if int(priority) in ROUND_THE_CLOCK_PRIORITIES:
        return (start + dt.timedelta(hours=hours)).astimezone(dt.UTC)
    return (calendar or default_calendar()).add_working_hours(start, hours)


def sla_time_between(
    a: dt.datetime, b: dt.datetime, priority: int, calendar: WorkCalendar | None = None
) -> float:
    """Return SLA hours between two times (calendar hours for urgent, else working hours)."""
    if int(priority) in ROUND_THE_CLOCK_PRIORITIES:
        return (b - a).total_seconds() / 3600.0
    return (calendar or default_calendar()).working_hours_between(a, b)


def deadline(
    start: dt.datetime,
    category_sla_hours: float,
    priority: int,
    calendar: WorkCalendar | None = None,
) -> dt.datetime:
    """Return the UTC deadline of a case opened at ``start`` (category SLA scaled by priority)."""
    return add_sla_time(start, sla_hours_for(category_sla_hours, priority), priority, calendar)


def pause(row: Incident, now: dt.datetime) -> None:
    """Stop the SLA clock of ``row`` (an approved extension request); no-op if paused."""
    if row.sla_paused_at is None:
        row.sla_paused_at = now


def resume(row: Incident, now: dt.datetime, calendar: WorkCalendar | None = None) -> float:
    """Restart the clock of ``row``; return the SLA hours the deadline moved by."""
    if row.sla_paused_at is None:
        return 0.0
    paused = sla_time_between(row.sla_paused_at, now, row.priority, calendar)
    paused = max(paused, 0.0)
    row.sla_paused_at = None
    if row.due_at is not None:
        row.due_at = add_sla_time(row.due_at, paused, row.priority, calendar)
    if row.escalate_at is not None:
        row.escalate_at = add_sla_time(row.escalate_at, paused, row.priority, calendar)
    row.extension_hours = float(row.extension_hours or 0.0) + paused
    return paused


def extend(row: Incident, hours: float, calendar: WorkCalendar | None = None) -> None:
    """Move the deadline of ``row`` by an approved extension of ``hours`` SLA hours."""
    if hours <= 0:
        raise ValueError(f"hours: {hours!r}; an extension must be more than 0 hours")
    base = row.due_at or utcnow()
    row.due_at = add_sla_time(base, hours, row.priority, calendar)
    if row.escalate_at is None or row.escalate_at < row.due_at:
        row.escalate_at = row.due_at
    row.extension_hours = float(row.extension_hours or 0.0) + float(hours)


def next_level(level: str) -> str | None:
    """Return the escalation level above ``level`` or None at the top (city)."""
    if level not in ESCALATION_ORDER:
        return ESCALATION_ORDER[1]
    i = ESCALATION_ORDER.index(level)
    return ESCALATION_ORDER[i + 1] if i + 1 < len(ESCALATION_ORDER) else None
