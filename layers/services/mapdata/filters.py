"""The map's filter (``MapFilter``: window, playback instant, categories, area, scope) and
the SQL conditions it turns into; ``sessioned`` lets a query take a Session or a Database.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import ParamSpec, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from layers.db import Database
from layers.models import OPEN_STATUSES, AdminArea, Grid, Incident
from layers.services import MAX_ROW_ID
from layers.services.incidents import default_categories
from layers.services.scope import Scope

P = ParamSpec("P")


R = TypeVar("R")


def sessioned(fn: Callable[P, R]) -> Callable[P, R]:
    """Let ``fn(session, ...)`` also be called with a ``Database`` (opens one session)."""

    @wraps(fn)
    def wrapper(db_or_session, *args, **kwargs):
        if isinstance(db_or_session, Database):
            with db_or_session.session() as s:
                return fn(s, *args, **kwargs)
        return fn(db_or_session, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24),
           "7d": dt.timedelta(days=7)}  # fmt: skip


CST = dt.timezone(dt.timedelta(hours=8))  # command centers count days in China Standard Time


MAX_CUSTOM_SPAN = dt.timedelta(days=366)


class MapFilterError(ValueError):
    """A map filter value is unusable; the message names the field and the fix."""


@dataclass(frozen=True)
class MapFilter:
    """What the operator chose to look at (``parse_filter`` builds it).

    Attributes
    ----------
    window : "1h", "24h", "7d" or "custom"
    start, end : aware datetimes, only for ``window == "custom"``
    playback : float or None
        Fraction 0..1 of the window shown (playback slider); None or 1 means live.
    categories : tuple of top-level category codes (empty: all)
    area_id : id of the district, street or community drilled down to (None: whole city)
    scope : what the viewer may see at all (``layers.services.scope.Scope``); required, so
        no query built from a filter can forget it
    """

    window: str = "24h"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    playback: float | None = None
    categories: tuple[str, ...] = ()
    area_id: int | None = None
    scope: Scope = field(kw_only=True)

    def time_range(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Return (window start, window end) as aware UTC datetimes."""
        if self.window == "custom":
            assert self.start is not None and self.end is not None
            return self.start, self.end
        return now - WINDOWS[self.window], now

    def instant(self, now: dt.datetime) -> dt.datetime | None:
        """Return the playback instant T, or None for the live view."""
        if self.playback is None or self.playback >= 1.0:
            return None if self.window != "custom" else self.time_range(now)[1]
        start, end = self.time_range(now)
        return start + (end - start) * max(0.0, self.playback)

    def key(self) -> str:
        """Return a short stable string identifying the filter (for cache keys and URLs)."""
        start = self.start.isoformat() if self.start else ""
        end = self.end.isoformat() if self.end else ""
        pb = "" if self.playback is None else f"{self.playback:.4f}"
        return (f"{self.window}|{start}|{end}|{pb}|{','.join(self.categories)}|"
                f"{self.area_id or ''}|{self.scope.key()}")  # fmt: skip


def _parse_time(name: str, value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime.combine(value, dt.time(), tzinfo=CST)
    else:
        try:
            out = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise MapFilterError(
                f"{name}: {value!r} is not a date/time; use ISO 8601 such as 2026-11-23T08:00+08:00"
            ) from None
    if out.tzinfo is None:
        out = out.replace(tzinfo=CST)  # a bare date from the date picker is a China-time day
    return out.astimezone(dt.UTC)


def parse_filter(data: dict | None, scope: Scope) -> MapFilter:
    """Return a validated MapFilter from a dict (e.g. a ``dcc.Store`` or URL query).

    ``scope`` is what the viewer may see (``dashboard.scoping.request_scope()`` in a request);
    every query built from the filter applies it.

    Raises
    ------
    MapFilterError
        Naming the bad field (window, start, end, playback, categories, area) and the fix.
    """
    if data is not None and not isinstance(data, dict):
        raise MapFilterError(f"filter: {type(data).__name__} is not an object of filter fields")
    if not isinstance(scope, Scope):
        raise TypeError("parse_filter: scope must be a layers.services.scope.Scope")
    data = dict(data or {})
    window = str(data.get("window") or "24h")
    if window not in (*WINDOWS, "custom"):
        raise MapFilterError(f"window: {window!r} is unknown; use 1h, 24h, 7d or custom")
    start = end = None
    if window == "custom":
        if not data.get("start") or not data.get("end"):
            raise MapFilterError("start/end: a custom window needs both a start and an end date")
        start = _parse_time("start", data["start"])
        end = _parse_time("end", data["end"])
        if isinstance(data["end"], str) and len(data["end"]) == 10:
            end = end + dt.timedelta(days=1)  # an end *date* includes that whole day
        if end <= start:
            raise MapFilterError("end: must be after start; swap the two dates")
        if end - start > MAX_CUSTOM_SPAN:
            raise MapFilterError("start/end: the custom window is longer than a year; shorten it")
    playback = data.get("playback")
    if playback is not None and playback != "":
        try:
            playback = float(playback)
        except (TypeError, ValueError):
            raise MapFilterError(
                f"playback: {playback!r} is not a number between 0 and 1"
            ) from None
        if not 0.0 <= playback <= 1.0 or math.isnan(playback):
            raise MapFilterError(f"playback: {playback} is outside 0..1")
    else:
        playback = None
    cats = data.get("categories") or ()
    if isinstance(cats, str):
        cats = [c for c in cats.split(",") if c]
    if not isinstance(cats, list | tuple) or not all(isinstance(c, str) for c in cats):
        raise MapFilterError("categories: give a list of top-level category codes")
    known = {c for c, e in default_categories().items() if e["parent_code"] is None}
    bad = [c for c in cats if c not in known]
    if bad:
        raise MapFilterError(
            f"categories: {bad[0]!r} is not a top-level category; use one of {', '.join(sorted(known))}"
        )
    area = data.get("area_id", data.get("area"))
    if area in ("", None):
        area = None
    else:
        try:
            area = int(str(area)[:20])
        except (TypeError, ValueError):
            raise MapFilterError(
                f"area_id: {str(area)[:40]!r} is not an area id (an integer)"
            ) from None
        if not 1 <= area <= MAX_ROW_ID:
            raise MapFilterError(f"area_id: {area} is not an area id; give 1..{MAX_ROW_ID}")
    return MapFilter(window=window, start=start, end=end, playback=playback,
                     categories=tuple(sorted(cats)), area_id=area, scope=scope)  # fmt: skip


def now_utc(now: dt.datetime | None) -> dt.datetime:
    """Return ``now``, or the current time (UTC) when it is None."""
    return now or dt.datetime.now(dt.UTC)


def category_group(code: str) -> str:
    """Return the top-level category code of a (possibly dotted) category code."""
    return code.split(".", 1)[0]


def category_condition(groups: Sequence[str]):
    """Return the condition selecting the category groups (and their sub-codes), or None."""
    if not groups:
        return None
    return or_(*[or_(Incident.category_code == g, Incident.category_code.like(f"{g}.%"))
                 for g in groups])  # fmt: skip


def area_grid_ids_query(area_level: str, area_id: int):
    """Return a SELECT of the grid ids inside an area of ``area_level`` (SQL subquery)."""
    if area_level == "community":
        communities = select(AdminArea.id).where(AdminArea.id == area_id)
    elif area_level == "street":
        communities = select(AdminArea.id).where(AdminArea.parent_id == area_id)
    elif area_level == "district":
        street = aliased(AdminArea)
        communities = (
            select(AdminArea.id)
            .join(street, AdminArea.parent_id == street.id)
            .where(street.parent_id == area_id)
        )
    else:  # the city: every grid
        return select(Grid.id)
    return select(Grid.id).where(Grid.community_id.in_(communities))


def area_condition(session: Session, area_id: int | None, *, use_index: bool = False):
    """Return "incident in a grid of the area" (None for the whole city).

    By default the grid_id index is kept out of play (``grid_id + 0``) so time-window and
    id-range queries scan their few thousand rows instead of every incident of the area;
    whole-history counts (``use_index``) are better served by the grid index.
    """
    if area_id is None:
        return None
    level = session.scalar(select(AdminArea.level).where(AdminArea.id == area_id))
    if level is None:
        raise MapFilterError(f"area: no administrative area with id {area_id}; clear the filter")
    if level == "city":
        return None
    col = Incident.grid_id if use_index else Incident.grid_id + 0
    return col.in_(area_grid_ids_query(level, area_id))


@sessioned
def incident_conditions(
    session: Session, f: MapFilter, now: dt.datetime | None = None, *, open_only: bool = False
) -> list:
    """Return SQL conditions selecting the incidents ``f`` shows (created in window, up to T)."""
    now = now_utc(now)
    start, end = f.time_range(now)
    t = f.instant(now)
    conds = [Incident.created_at >= start, Incident.created_at <= (t or end)]
    cat = category_condition(f.categories)
    if cat is not None:
        conds.append(cat)
    area = area_condition(session, f.area_id)
    if area is not None:
        conds.append(area)
    conds += f.scope.incidents(session, use_index=False)
    if open_only:
        # status || '' (and closed_at || '') keep the planner on the created_at range: the
        # window holds a few thousand rows, while "open" matches a large share of the table
        if t is None:
            conds.append((Incident.status + "").in_(OPEN_STATUSES))
        else:
            conds.append(or_(Incident.closed_at.is_(None), Incident.closed_at > t))
    return conds


def filter_conditions(session: Session, f: MapFilter, *, use_index: bool = False) -> list:
    """Return the filter's category, area and scope conditions (no time window)."""
    conds = []
    cat = category_condition(f.categories)
    if cat is not None:
        conds.append(cat)
    area = area_condition(session, f.area_id, use_index=use_index)
    if area is not None:
        conds.append(area)
    return conds + f.scope.incidents(session, use_index=use_index)
