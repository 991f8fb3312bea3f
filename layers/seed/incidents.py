"""Seed incident history: ~90 days of cases with hotspots, a daily rhythm and a workflow
consistent with each case's age, written as column arrays with their event log.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import numpy as np
import shapely
from sqlalchemy.orm import Session

from layers.citygen import history, names
from layers.models import Incident, IncidentEvent

if TYPE_CHECKING:  # geo and the services pull in numba, scipy and pandas: import them late
    from geo.assign import GridIndex
from layers.seed.bulk import BulkWriter, Progress, bulk_load, chunks
from layers.seed.districts import SeedError
from layers.seed.plan import Plan, Scale

log = logging.getLogger(__name__)


def _incident_points(plan: Plan, cfg: Scale, rng, index: GridIndex, n: int, cats):
    """Return (x, y, grid position, category bias or None) of ``n`` incident locations.

    80 % background, one grid drawn per incident (each grid about equally likely, with a
    lognormal activity factor: so incidents follow grid density) and a uniform point in it;
    20 % around Gaussian hotspots downtown, each with a theme that favours some categories.
    """
    h = plan.hierarchy
    grid_geoms = np.array([g.geom for g in h.grids], dtype=object)
    weight = np.exp(rng.normal(0, 0.5, len(grid_geoms)))
    if plan.lake is not None:
        wet = shapely.intersects(grid_geoms, plan.lake)
        dry = np.ones(len(grid_geoms))
        dry[wet] = shapely.area(shapely.difference(grid_geoms[wet], plan.lake)) / shapely.area(
            grid_geoms[wet]
        )
        weight *= dry
    n_hot = int(round(n * 0.2)) if cfg.hotspots else 0
    n_bg = n - n_hot
    x = np.empty(n)
    y = np.empty(n)
    pos = np.empty(n, int)
    which = rng.choice(len(grid_geoms), size=n_bg, p=weight / weight.sum())
    todo = np.arange(n_bg)
    while len(todo):
        px, py = history.points_in_polygons(rng, grid_geoms, which[todo])
        wet = plan.density.in_voids(px, py)
        x[todo[~wet]], y[todo[~wet]] = px[~wet], py[~wet]
        pos[todo[~wet]] = which[todo[~wet]]
        todo = todo[wet]

    bias = None
    if n_hot:
        land = shapely.difference(plan.city, plan.lake) if plan.lake is not None else plan.city
        cand_x, cand_y = plan.density.sample(rng, 50 * cfg.hotspots, land)
        core = plan.density(cand_x, cand_y) >= 4.0
        pool = np.flatnonzero(core) if core.sum() >= cfg.hotspots else np.arange(len(cand_x))
        centre = rng.choice(pool, size=cfg.hotspots, replace=False)
        hx, hy = cand_x[centre], cand_y[centre]
        sigma = rng.uniform(150, 500, cfg.hotspots)
        share = rng.dirichlet(np.full(cfg.hotspots, 2.0))
        theme = rng.integers(0, len(history.HOTSPOT_THEMES), cfg.hotspots)
        spot = rng.choice(cfg.hotspots, size=n_hot, p=share)
        idx = np.arange(n_bg, n)
        todo = np.arange(n_hot)
        for _ in range(50):
            if not len(todo):
                break
            sx = hx[spot[todo]] + rng.normal(0, 1, len(todo)) * sigma[spot[todo]]
            sy = hy[spot[todo]] + rng.normal(0, 1, len(todo)) * sigma[spot[todo]]
            lon, lat = plan.plane.to_lonlat(sx, sy)
            p = index.assign(lon, lat)
            ok = (p >= 0) & ~plan.density.in_voids(sx, sy)
            x[idx[todo[ok]]], y[idx[todo[ok]]], pos[idx[todo[ok]]] = sx[ok], sy[ok], p[ok]
            todo = todo[~ok]
        if len(todo):
            raise SeedError(f"could not place {len(todo)} hotspot incidents inside the grids")
        bias = np.ones((n_hot, len(cats.codes)))
        for t, (_, codes) in enumerate(history.HOTSPOT_THEMES):
            rows = np.flatnonzero(theme[spot] == t)
            cols = [cats.index(c) for c in codes if c in set(cats.codes)]
            bias[np.ix_(rows, cols)] = 6.0
    return x, y, pos, bias


def write_incidents(
    s: Session,
    plan: Plan,
    cfg: Scale,
    rngs,
    index: GridIndex,
    now: dt.datetime,
    bar: Progress,
    cats: history.CategoryDict,
    *,
    grid_community: np.ndarray,
    area_parent: dict[int, int | None],
    center_of_area: dict[int, int],
    staff_of_center: dict[int, tuple[int, int]],
    worker_names: np.ndarray,
    worker_phones: np.ndarray,
) -> tuple[int, int]:
    """Write the incident history and its event log; return (incidents, events) written."""
    from layers.services import sla as sla_service
    from layers.services.spatial import ESCALATION_ORDER

    n = cfg.incidents
    now_s = now.timestamp()
    rng_p, rng_t, rng_x = rngs["places"], rngs["times"], rngs["text"]
    x, y, gpos, bias = _incident_points(plan, cfg, rng_p, index, n, cats)
    # categories: background by weight, hotspots with their theme's bias
    cat = np.empty(n, int)
    n_hot = 0 if bias is None else len(bias)
    cat[: n - n_hot] = history.sample_categories(rng_t, cats, n - n_hot)
    if n_hot:
        cat[n - n_hot :] = history.sample_categories(rng_t, cats, n_hot, bias)
    created = history.sample_created(rng_t, n, now_s)
    order = np.argsort(created, kind="stable")  # ids follow creation time
    x, y, gpos, cat, created = (a[order] for a in (x, y, gpos, cat, created))

    # the same problem reported again within hours by someone else (避免多头交办): the copy
    # lies within metres of the first report; once a dispatcher merges it, it is closed
    dup_of = np.full(n, -1)
    later = rng_x.choice(np.arange(1, n), size=int(n * 0.015), replace=False)
    for i in np.sort(later):
        j = i - 1 - int(rng_x.integers(0, min(i, 50)))
        if created[i] - created[j] < 6 * 3600 and dup_of[j] < 0:
            dup_of[i] = j
    dup = np.flatnonzero(dup_of >= 0)
    src = dup_of[dup]
    x[dup] = x[src] + rng_x.normal(0, 15, len(dup))
    y[dup] = y[src] + rng_x.normal(0, 15, len(dup))
    lon, lat = plan.plane.to_lonlat(x, y)
    strayed = dup[index.assign(lon[dup], lat[dup]) != gpos[src]]
    lon[strayed], lat[strayed] = lon[dup_of[strayed]], lat[dup_of[strayed]]
    gpos[dup] = gpos[src]
    cat[dup] = cat[src]
    # the grid index decides, exactly as the incident service would on intake
    found = index.assign(lon, lat)
    if (found < 0).any():
        raise SeedError(f"{int((found < 0).sum())} incidents fell outside every grid")
    gpos = found
    priority = history.sample_priorities(rng_t, cats, cat)
    source = history.sample_sources(rng_t, cats, cat)

    # deadlines in SLA time, exactly as layers.services.sla computes them
    cal = sla_service.default_calendar()
    factor = np.array([sla_service.PRIORITY_FACTOR.get(p, 1.0) for p in (1, 2, 3, 4)])
    step_h = cats.sla_hours[cat] * factor[priority - 1]
    urgent = np.isin(priority, list(sla_service.ROUND_THE_CLOCK_PRIORITIES))
    clock = history.WorkingClock(cal, created.min(), now_s + 400 * history.DAY_S)

    def sla_add(t, hours):
        return np.where(urgent, t + hours * 3600.0, clock.add(t, hours))

    due = sla_add(created, step_h)
    stages, status, rework = history.workflow(rng_t, created, due, now_s)
    merged_at = created[dup] + rng_x.uniform(600, 4 * 3600, len(dup)).round()
    is_merged = merged_at <= now_s
    dup, merged_at = dup[is_merged], merged_at[is_merged]
    dup_of[np.setdiff1d(np.flatnonzero(dup_of >= 0), dup)] = -1  # not merged yet: a plain case
    for col in stages:
        stages[col][dup] = np.nan
    stages["closed_at"][dup] = merged_at
    status[dup] = "closed"
    rework[dup] = 0

    # escalation: open past the deadline climbs one level per SLA step (as escalate_overdue)
    rank = np.array([ESCALATION_ORDER.index(o) for o in cats.owner_level[cat]])
    closed_at = stages["closed_at"]
    end_s = np.where(np.isfinite(closed_at), closed_at, now_s)
    rank, escalate_at, escalated_at, escalations = _escalate(
        rank, due, end_s, lambda t: sla_add(t, step_h), stages, len(ESCALATION_ORDER) - 1
    )
    level = np.array(ESCALATION_ORDER, dtype=object)[rank]

    # routing: grid and community work → the community's center; above → that level's center
    comm_id = grid_community[gpos]
    street_id = np.array([area_parent[c] for c in comm_id])
    district_id = np.array([area_parent[st] for st in street_id])
    area_at = {0: comm_id, 1: comm_id, 2: street_id, 3: district_id, 4: np.ones(n, int)}
    center = np.zeros(n, int)
    for r, areas in area_at.items():
        sel = rank == r
        center[sel] = [center_of_area[int(a)] for a in areas[sel]]
    first, count = np.array([staff_of_center[int(c)] for c in center]).T
    assignee = np.where(rank == 0, gpos + 1, first + rng_x.integers(0, 1 << 30, n) % count)

    # reporters: grid workers report their own patrols; cameras and opinion have none
    rep_name = names.person_names(rng_x, n)
    rep_phone = names.mobile_numbers(rng_x, n)
    patrol = source == "patrol"
    rep_name[patrol] = worker_names[gpos[patrol]]
    rep_phone[patrol] = worker_phones[gpos[patrol]]
    silent = np.isin(source, history.NO_REPORTER_SOURCES)
    rep_name[silent] = ""
    rep_phone[silent] = ""
    comm_names = np.array([c.name for c in plan.hierarchy.communities], dtype=object)
    places = comm_names[np.array([g.parent for g in plan.hierarchy.grids])[gpos]]
    desc = history.describe(rng_x, cats, cat, places)

    ext_id = np.full(n, None, dtype=object)
    hot = np.flatnonzero(source == "hotline_12345")
    local_day = (created[hot] + 8 * 3600) // history.DAY_S
    ext_id[hot] = [
        f"12345-{dt.date.fromordinal(719163 + int(d)).strftime('%Y%m%d')}-{i + 1:07d}"
        for d, i in zip(local_day, hot, strict=True)
    ]

    with bulk_load(s, ("incidents", "incident_events")):
        n_events = _insert_incidents(
            s, bar, n, columns={
                "lon": lon, "lat": lat, "category_code": cats.codes[cat], "priority": priority,
                "source": source, "description": desc, "reporter_name": rep_name,
                "reporter_phone": rep_phone, "status": status, "created_at": created,
                **stages, "due_at": due, "grid_id": gpos + 1, "center_id": center,
                "assignee_id": assignee, "escalation_level": level,
                "duplicate_of": np.where(dup_of >= 0, dup_of + 1, -1), "rework_count": rework,
                "external_id": ext_id, "extension_hours": np.zeros(n),
                "escalate_at": escalate_at, "escalated_at": escalated_at,
            }, event_inputs=(source, created, stages, dup_of),
            escalations=escalations,
        )  # fmt: skip
    return n, n_events


def _escalate(rank, due, end_s, add_step, stages, top: int):
    """Return (rank, escalate_at, escalated_at, escalations) after replaying escalations.

    Like ``layers.services.escalation.escalate_overdue``: a case still open at its ``escalate_at``
    (first the deadline, then one SLA step later each time) moves up one level, until
    ``end_s`` (its closing, or now) or the top level. ``escalations`` holds flat arrays
    (incident index, time, status at that time, step number), one entry per escalation.
    """
    escalate_at = due.copy()
    escalated_at = np.full(len(due), np.nan)
    stage_times = np.column_stack([stages[history.STAGE_COLUMNS[st]] for st in history.STAGES])
    status_names = np.array(("collected",) + history.STAGES, dtype=object)
    who_, when_, then_, step_ = [], [], [], []
    for step in range(1, top + 1):
        go = (escalate_at <= end_s) & (rank < top)
        if not go.any():
            break
        who = np.flatnonzero(go)
        who_.append(who)
        when_.append(escalate_at[who].copy())
        # the status the case had then (a NaN stage compares False: not reached)
        then_.append(status_names[(stage_times[who] <= escalate_at[who, None]).sum(axis=1)])
        step_.append(np.full(len(who), step))
        rank = np.where(go, rank + 1, rank)
        escalated_at = np.where(go, escalate_at, escalated_at)
        escalate_at = np.where(go, add_step(escalate_at), escalate_at)
    flat = tuple(
        np.concatenate(parts) if parts else np.zeros(0, dtype)
        for parts, dtype in ((who_, int), (when_, float), (then_, object), (step_, int))
    )
    return rank, escalate_at, escalated_at, flat


def _insert_incidents(s, bar, n, columns, event_inputs, escalations) -> int:
    """Insert the incidents and their workflow events in chunks; return the event count."""
    esc_who, esc_when, esc_then, esc_step = escalations
    source, created, stages, dup_of = event_inputs
    w = BulkWriter(s)
    times = {"created_at", "due_at", "escalate_at", "escalated_at", *stages}
    n_events = 0
    for sl in chunks(n):
        chunk = {"id": np.arange(sl.start, sl.stop) + 1}
        for key, values in columns.items():
            part = values[sl]
            if key in times:
                part = w.times(part)
            elif key == "duplicate_of":
                part = np.where(part > 0, part, None)
            chunk[key] = part
        w.insert(Incident, chunk)
        sel = (esc_who >= sl.start) & (esc_who < sl.stop)
        events = _event_columns(
            sl, source, created, stages, dup_of,
            (esc_who[sel], esc_when[sel], esc_then[sel], esc_step[sel]),
        )  # fmt: skip
        k = len(events["incident_id"])
        events["id"] = np.arange(n_events, n_events + k) + 1
        events["ts"] = w.times(events["ts"])
        w.insert(IncidentEvent, events)
        n_events += k
        bar.update(sl.stop - sl.start)
    return n_events


_STAGE_ACTIONS = (
    ("registered_at", "collected", "registered", "register", "dispatcher"),
    ("dispatched_at", "registered", "dispatched", "dispatch", "dispatcher"),
    ("handled_at", "dispatched", "handling", "accept", "responder"),
    ("reported_at", "handling", "reported", "report", "responder"),
    ("closed_at", "reported", "closed", "close", "dispatcher"),
    ("evaluated_at", "closed", "evaluated", "evaluate", "dispatcher"),
)


def _event_columns(sl, source, created, stages, dup_of, escalations) -> dict[str, np.ndarray]:
    """Return the workflow log of incidents ``sl`` as columns, in (incident, time) order.

    One ``create`` event per incident, one event per stage reached (a merged duplicate gets a
    ``merge`` instead), one ``escalate`` per escalation step.
    """
    idx = np.arange(sl.start, sl.stop)
    merged = dup_of[idx] >= 0
    parts = [(idx, created[idx], None, "collected", "create", "system", "system",
              np.char.add("source=", source[idx].astype(str)).astype(object))]  # fmt: skip
    m = idx[merged]
    parts.append((m, stages["closed_at"][m], "collected", "closed", "merge", "dispatcher",
                  "dispatcher", np.char.add("merged into ", (dup_of[m] + 1).astype(str)).astype(object)))  # fmt: skip
    for col, frm, to, action, role in _STAGE_ACTIONS:
        when = stages[col][idx]
        keep = ~merged & np.isfinite(when)
        parts.append((idx[keep], when[keep], frm, to, action, role, role, ""))
    who, when, then, step = escalations
    parts.append((who, when, then, then, "escalate", "system", "system",
                  np.char.add("overdue: escalation step ", step.astype(str)).astype(object)))  # fmt: skip

    def col(size: int, value) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value.astype(object) if value.dtype != float else value
        return np.full(size, value, dtype=object)

    inc = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([np.asarray(p[1], float) for p in parts])
    order = np.lexsort((ts, inc))
    out = {"incident_id": inc[order] + 1, "ts": ts[order]}
    for k, key in (
        (2, "from_status"),
        (3, "to_status"),
        (4, "action"),
        (5, "actor"),
        (6, "role"),
        (7, "reason"),
    ):
        out[key] = np.concatenate([col(len(p[0]), p[k]) for p in parts])[order]
    return out
