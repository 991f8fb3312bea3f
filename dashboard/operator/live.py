"""The operator map's live refresh as Dash output: ``layers.services.refresh`` decides and
reads, this module reads the worker's event bus and turns the update into ``Patch`` objects
(counts and new features only), so the map keeps its viewport and parsed geometry."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from dash import Patch, no_update

from dashboard.context import get_ctx
from dashboard.operator.views import feed_item, feed_items
from layers.services import mapdata, refresh
from layers.services.refresh import FEED_SIZE, BusRead, LiveUpdate
from layers.services.scope import Scope
from layers.services.transaction import run
from streams.events import is_event_id

BUS_READ_LIMIT = 5000  # more events than this since the last tick: resynchronise in full


class Refresh(NamedTuple):
    """One tick's outputs (a ``Patch``, a full value or no_update each): grid hideout, live
    layer, feed, cursor, the two live KPIs, camera hideout."""

    grids: object
    live: object
    feed: object
    cursor: dict
    kpis: list
    cameras: object


def read_bus(bus, cursor: dict) -> BusRead:
    """Return what ``bus`` says happened since the cursor's bus position.

    The bus cannot vouch (events None) without a bus, with a bus not following every writer
    (Redis disconnected), for a cursor from another process's local bus, or across a gap
    (events lost); the refresh then asks the database, which is always exact.
    """
    if bus is None:
        return BusRead(None)
    here = {"bus": bus.last_id, "bep": bus.epoch, "bgen": bus.generation}
    mark = cursor.get("bus")
    if not bus.complete or cursor.get("bep") != bus.epoch or not is_event_id(mark):
        return BusRead(None, here, bus.complete)
    gen = cursor.get("bgen")
    batch = bus.read(mark, generation=gen if isinstance(gen, int) else None, limit=BUS_READ_LIMIT)
    if batch.gap or len(batch.events) >= BUS_READ_LIMIT:
        return BusRead(None, here, bus.complete)
    pos = {"bus": batch.cursor, "bep": bus.epoch, "bgen": batch.generation}
    return BusRead(batch.events, pos, bus.complete)


def _grids(u: LiveUpdate) -> object:
    if u.full:
        hide = Patch()
        hide["counts"] = {str(k): v for k, v in u.counts.items()}
        hide["max"] = u.max_count
        return hide
    if u.counts is None:
        return no_update
    hide = Patch()
    for g, n in u.counts.items():
        hide["counts"][str(g)] = n
    if u.max_count is not None:
        hide["max"] = u.max_count
    return hide


def _live(u: LiveUpdate) -> object:
    if u.live_reset is not None:
        return {"type": "FeatureCollection", "features": u.live_reset}
    if not u.live_added:
        return no_update
    patch = Patch()
    patch["features"].extend(u.live_added)
    return patch


def _feed(u: LiveUpdate, lang: str) -> object:
    if u.feed_reset is not None:
        return feed_items(u.feed_reset, lang)
    if not u.feed_added:
        return no_update
    feed = Patch()  # new items on top, the oldest beyond FEED_SIZE dropped
    for feat in u.feed_added[-FEED_SIZE:]:
        feed.prepend(feed_item(feat["properties"]))
    total = u.feed_shown + min(len(u.feed_added), FEED_SIZE)
    for idx in range(total - 1, FEED_SIZE - 1, -1):
        del feed[idx]
    return feed


def _cameras(u: LiveUpdate) -> object:
    if u.cameras_full is not None:
        return u.cameras_full
    if not u.cameras_changed:
        return no_update
    patch = Patch()
    for cam, status in u.cameras_changed.items():
        patch["st"][cam] = status
    return patch


def to_outputs(u: LiveUpdate, lang: str) -> Refresh:
    """Return the Dash outputs of a live update (no_update where nothing changed)."""
    kpis = [no_update if v is None else f"{v:,}" for v in (u.open, u.new_today)]
    return Refresh(_grids(u), _live(u), _feed(u, lang), u.cursor, kpis, _cameras(u))


def live_refresh(
    fdict: dict | None, cursor: dict | None, trigger: str | None, lang: str, scope: Scope
) -> Refresh:
    """Return one refresh's outputs: grid counts, live markers, feed, cursor, KPIs, cameras.

    Everything is limited to ``scope``. A plain function of the filter, the client's cursor,
    the worker's event bus and the database (``layers.services.refresh``), so the benchmark
    and the tests call it without a browser. The bus is read before the database, so
    nothing slips between the two.
    """
    ctx = get_ctx()
    f = mapdata.parse_filter(fdict, scope)
    bus = read_bus(ctx.events, dict(cursor or {}))
    update = run(ctx.db, refresh.live_update, f, cursor, bus, tick=trigger == "operator-tick",
                 lang=lang, now=dt.datetime.now(dt.UTC))  # fmt: skip
    return to_outputs(update, lang)
