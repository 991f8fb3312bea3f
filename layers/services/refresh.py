"""The operator map's live refresh: a pure planner of what one tick must read, and the reads.

Each open map sends a tick about once a second with its cursor (a dict the browser keeps):

- ``fkey`` the filter it shows, ``n`` ticks since the last full resynchronisation;
- ``ev`` the workflow-event cursor in the database (``mapdata.changes_since``), ``inc`` the
  newest incident id it shows, ``live`` markers on its live layer, ``max`` the largest grid
  count sent, ``feed`` items in its feed, ``open`` / ``today`` / ``day`` its KPI values and
  the China-time day they count;
- ``bus`` / ``bep`` / ``bgen`` its position on the worker's event bus, ``cams`` whether its
  camera overlay has followed every camera event since the last full camera list.

``plan`` decides from the cursor, the filter and what the bus says happened (``BusRead``):
a full resync (filter changed, first tick, every ``RESYNC_TICKS``), an idle tick (the bus
vouches that no incident changed: no database read, but every ``DB_PROBE_TICKS``-th tick
asks the database anyway, for writers outside the bus) or a read of the changes since the
cursor. The database cursor stays the exact source of the counts, so a late, lost or
duplicated bus event can delay an update but never make it wrong. ``live_update`` runs the
plan in one transaction and returns plain data (``LiveUpdate``); the page turns it into Dash
``Patch`` objects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from sqlalchemy.orm import Session

from layers.services import mapdata
from layers.services.scope import Scope

RESYNC_TICKS = 60  # full recount every 60 ticks (60 s): windows slide, statuses age
DB_PROBE_TICKS = 10  # an idle tick still asks the database every 10 ticks
LIVE_MAX = 300  # live markers kept on the map before the layer is reset to the newest
FEED_SIZE = 8


class Step(Enum):
    """What one tick reads: everything, nothing, or the changes since the cursor."""

    FULL = "full"
    IDLE = "idle"
    CHANGES = "changes"


@dataclass(frozen=True)
class BusRead:
    """What the event bus says happened since the cursor's bus position.

    ``events`` None: the bus cannot vouch for that time (no bus, a bus not following every
    writer, a cursor from another process's bus, or lost events); ``position`` the cursor's
    new bus fields ({} without a bus); ``complete`` whether the bus follows every writer now.
    """

    events: list | None
    position: dict = field(default_factory=dict)
    complete: bool = False


@dataclass(frozen=True)
class LiveUpdate:
    """One tick's changes to an open map, as data (None / empty: leave that part as it is).

    ``full``: ``counts`` are every grid's counts and ``max_count`` their maximum; otherwise
    ``counts`` are the changed grids' (None: grids untouched) and ``max_count`` a new maximum.
    The live layer is replaced by ``live_reset`` or extended by ``live_added``; the feed
    replaced by ``feed_reset`` (oldest first) or ``feed_added`` put on top of the
    ``feed_shown`` items it held. The camera overlay is replaced by ``cameras_full``
    ({"base", "st"}) or patched with ``cameras_changed`` ({id: status}). ``open`` and
    ``new_today`` are new KPI values.
    """

    cursor: dict
    full: bool = False
    counts: dict[int, int] | None = None
    max_count: int | None = None
    live_reset: list[dict] | None = None
    live_added: list[dict] = field(default_factory=list)
    feed_reset: list[dict] | None = None
    feed_added: list[dict] = field(default_factory=list)
    feed_shown: int = 0
    cameras_full: dict | None = None
    cameras_changed: dict[str, str] = field(default_factory=dict)
    open: int | None = None
    new_today: int | None = None


def plan(cursor: dict, fkey: str, bus: BusRead, today: str) -> Step:
    """Return what a tick with ``cursor`` must read for the filter ``fkey`` on ``today``."""
    if cursor.get("fkey") != fkey or cursor.get("n", 0) >= RESYNC_TICKS:
        return Step.FULL
    if bus.events is not None:
        n = cursor.get("n", 0) + 1
        quiet = not any(e.kind.startswith("incident.") for e in bus.events)
        if quiet and n % DB_PROBE_TICKS and cursor.get("day") == today:
            return Step.IDLE
    return Step.CHANGES


def camera_changes(events: Iterable, scope: Scope) -> dict[str, str]:
    """Return {camera id: status} of the ``camera.status`` events of cameras in ``scope``."""
    return {
        str(e.data["id"]): str(e.data.get("status") or "unknown")
        for e in events
        if e.kind == "camera.status"
        and "id" in e.data
        and scope.allows_camera(e.data.get("gb_id"), e.data.get("id"))
    }


def camera_overrides(session: Session, scope: Scope) -> dict:
    """Return the camera layer's status overlay of ``scope``: the commonest status as
    ``base`` and every other camera's in ``st`` {id: status}."""
    statuses = mapdata.camera_statuses(session, scope)
    if not statuses:
        return {"base": None, "st": {}}
    values = list(statuses.values())
    base = max(set(values), key=values.count)
    return {"base": base, "st": {str(k): v for k, v in statuses.items() if v != base}}


def live_update(
    session: Session,
    f: mapdata.MapFilter,
    cursor: dict | None,
    bus: BusRead,
    *,
    tick: bool,
    lang: str = "zh",
    now: dt.datetime | None = None,
) -> LiveUpdate:
    """Return one refresh of filter ``f`` (its scope) for a map at ``cursor``.

    ``tick``: the refresh is the map's timer tick (not a filter or language change, which
    starts the live layer afresh).
    """
    now = now or dt.datetime.now(dt.UTC)
    cursor = dict(cursor or {})
    today = now.astimezone(mapdata.CST).date().isoformat()
    step = plan(cursor, f.key(), bus, today)
    if step is Step.FULL:
        return _full(session, f, cursor, bus, tick=tick, lang=lang)
    cams = camera_changes(bus.events or [], f.scope)
    if step is Step.IDLE:
        n = cursor.get("n", 0) + 1
        return LiveUpdate(cursor={**cursor, **bus.position, "n": n}, cameras_changed=cams)
    if bus.events is None:
        cursor["cams"] = False  # camera events may have been missed: resend at the next resync
    changes = mapdata.changes_since(session, int(cursor.get("ev", 0)))
    if changes["overflow"] or cursor.get("day") != today:
        return live_update(session, f, {**cursor, "n": RESYNC_TICKS}, bus, tick=True, lang=lang)
    if not changes["incidents"]:
        n = cursor.get("n", 0) + 1
        return LiveUpdate(cursor={**cursor, "n": n, **bus.position}, cameras_changed=cams)
    return _changes(session, f, cursor, bus, changes, cams, live=f.instant(now) is None, lang=lang)


def _full(
    session: Session, f: mapdata.MapFilter, cursor: dict, bus: BusRead, *, tick: bool, lang: str
) -> LiveUpdate:
    """Return the full resync: every count, the feed, the KPIs and the camera overlay."""
    counts = mapdata.grid_counts(session, f)
    mx = max(counts.values(), default=1)
    fresh_live = not tick or cursor.get("fkey") != f.key()
    new = {"fkey": f.key(), "ev": mapdata.last_event_id(session),
           "inc": mapdata.last_incident_id(session), "n": 0,
           "live": 0 if fresh_live else cursor.get("live", 0), "max": mx, **bus.position}  # fmt: skip
    cams_full, cams = None, {}
    if bus.events is not None and cursor.get("cams"):
        cams = camera_changes(bus.events, f.scope)  # the overlay is in step: events suffice
    else:
        cams_full = camera_overrides(session, f.scope)  # first tick, or the bus could not vouch
    new["cams"] = bus.events is not None or bus.complete
    lc = mapdata.live_counts(session, f)
    new.update(open=lc["open"], today=lc["new_today"], day=lc["day"])
    feed = mapdata.new_incidents(session, 0, f, limit=FEED_SIZE, lang=lang)
    new["feed"] = len(feed)
    return LiveUpdate(
        cursor=new, full=True, counts=counts, max_count=mx, live_reset=[] if fresh_live else None,
        feed_reset=feed, cameras_full=cams_full, cameras_changed=cams, open=lc["open"],
        new_today=lc["new_today"],
    )  # fmt: skip


def _changes(
    session: Session,
    f: mapdata.MapFilter,
    cursor: dict,
    bus: BusRead,
    changes: dict,
    cams: dict[str, str],
    *,
    live: bool,
    lang: str,
) -> LiveUpdate:
    """Return the update for incident ``changes`` since the cursor (``live``: not playback)."""
    counts, max_count, new = None, None, []
    mx = cursor.get("max", 1)
    if live:
        counts = mapdata.grid_counts_changed(session, f, changes)
        if counts and max(counts.values()) > mx:
            mx = max_count = max(counts.values())
        new = mapdata.new_incidents(session, int(cursor.get("inc", 0)), f, lang=lang)
    n_live, live_reset, live_added = cursor.get("live", 0), None, []
    if new and n_live + len(new) > LIVE_MAX:
        live_reset = new[-LIVE_MAX // 2 :]
        n_live = len(live_reset)
    elif new:
        live_added, n_live = new, n_live + len(new)
    inc = max([cursor.get("inc", 0)] + [feat["id"] for feat in new])
    if not new and not live:
        inc = max(inc, mapdata.last_incident_id(session))
    out = {**cursor, **bus.position, "ev": changes["cursor"], "inc": inc,
           "n": cursor.get("n", 0) + 1, "live": n_live, "max": mx}  # fmt: skip
    shown, feed_reset, feed_added = cursor.get("feed", 0), None, []
    if new and shown > 0:
        feed_added = new
        out["feed"] = min(shown + min(len(new), FEED_SIZE), FEED_SIZE)
    elif new:
        feed_reset = mapdata.new_incidents(session, 0, f, limit=FEED_SIZE, lang=lang)
        out["feed"] = len(feed_reset)
    delta = mapdata.live_counts_delta(session, f, changes)
    out["open"] = cursor.get("open", 0) + delta["open"]
    out["today"] = cursor.get("today", 0) + delta["new_today"]
    return LiveUpdate(
        cursor=out, counts=counts, max_count=max_count, live_reset=live_reset,
        live_added=live_added, feed_reset=feed_reset, feed_added=feed_added, feed_shown=shown,
        cameras_changed=cams, open=out["open"] if delta["open"] else None,
        new_today=out["today"] if delta["new_today"] else None,
    )  # fmt: skip
