"""Dispatcher page (``/dispatch``): the case queue, one case in detail, and the actions.

Queue: AG Grid of open cases (sort, filter, keyboard navigation; Space selects) with an SLA
countdown coloured green / amber / red and escalated or duplicate-suspect cases flagged; it
refreshes every few seconds, so new cases appear without a reload. Detail: the case, its
history, a map of its grid with the nearest available responders and the cameras whose cone
holds the spot (with their redacted snapshots from ``/video/<id>.jpg``), and possible
duplicates. Actions: every workflow action the role may take from the case's status, as
buttons with access keys (Alt+Shift+letter in Chromium), plus an assignee choice for
dispatch / reassign and a merge target. Each action is a workflow event and an audit record.

Callbacks are thin: ``queue_rows``, ``detail_view`` and ``perform_action`` do the work and can
be tested without a browser. Per-user state (the selected case) lives in ``dcc.Store``.
"""

from __future__ import annotations

import datetime as dt
import logging

import dash
import dash_ag_grid as dag
import dash_leaflet as dl
import shapely
from dash import Input, Output, State, callback, dcc, html, no_update

from dashboard.auth import current_principal, require_roles
from dashboard.context import get_ctx
from dashboard.i18n import t
from dashboard.scoping import request_reveal, request_scope
from layers.db import Database
from layers.services import NotFoundError, cases, queue, workflow
from layers.services.scope import Scope
from layers.services.transaction import run

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/dispatch", name="dispatch", title="GridSight · 调度")

TICK_MS = 3000
QUEUE_LIMIT = queue.QUEUE_LIMIT
ROLES = ("dispatcher", "admin")
ACTION_KEYS = {"register": "r", "dispatch": "d", "accept": "h", "report": "b", "close": "c",
               "rework": "w", "escalate": "e", "merge": "m", "evaluate": "v",
               "reassign": "a", "pause": "p", "resume": "u"}  # fmt: skip
ACTION_ORDER = ["register", "dispatch", "reassign", "accept", "report", "close", "rework",
                "escalate", "merge", "evaluate", "pause", "resume"]  # fmt: skip
# dark grid to match the command-center shell (AG Grid theming API, no CSS file needed)
GRID_THEME = (
    "themeAlpine.withParams({backgroundColor: '#0f1b2d', foregroundColor: '#e6edf3', "
    "headerBackgroundColor: '#16263d', headerTextColor: '#cfe3ff', "
    "oddRowBackgroundColor: '#12213a', borderColor: '#2a3b57', "
    "selectedRowBackgroundColor: '#2b4f7e', rowHoverColor: '#1d3355', "
    "inputTextColor: '#e6edf3', fontSize: 14})"
)
SLA_STYLE = {
    "styleConditions": [
        {"condition": "params.data.sla_state === 'overdue'",
         "style": {"backgroundColor": "#7a1c1c", "color": "#fff"}},
        {"condition": "params.data.sla_state === 'warn'",
         "style": {"backgroundColor": "#8a6d00", "color": "#fff"}},
        {"condition": "params.data.sla_state === 'ok'",
         "style": {"backgroundColor": "#1f5130", "color": "#fff"}},
        {"condition": "params.data.sla_state === 'paused'",
         "style": {"backgroundColor": "#33415c", "color": "#cfe3ff", "fontStyle": "italic"}},
    ]
}  # fmt: skip


_guard = require_roles(*ROLES)


def _principal() -> tuple[str, str]:
    p = current_principal()
    return (p.actor, p.role) if p is not None else ("anonymous", "none")


# -- data -------------------------------------------------------------------------------------
CST = dt.timezone(dt.timedelta(hours=8))


def _local(iso: str, fmt: str = "%m-%d %H:%M") -> str:
    """Return an ISO time as Beijing local time text (the command center's clock)."""
    return dt.datetime.fromisoformat(iso).astimezone(CST).strftime(fmt)


def queue_rows(
    db: Database, now: dt.datetime | None = None, lang: str = "zh", *, scope: Scope
) -> list[dict]:
    """Return the open cases in ``scope`` as AG Grid rows, most urgent first (SLA hours left)."""
    cases = run(db, queue.open_cases, scope=scope, now=now, limit=QUEUE_LIMIT)
    return [
        {
            "id": c["id"],
            "category": (c["category_zh"] if lang == "zh" else c["category_en"])
            or c["category_code"],
            "priority": c["priority"],
            "status": t(f"dispatch.status.{c['status']}", lang),
            "status_code": c["status"],
            "grid": c["grid_code"],
            "level": t(f"dispatch.level.{c['escalation_level']}", lang),
            "escalated": c["escalated"],
            "assignee": c["assignee"],
            "created": c["created_at"].astimezone(CST).strftime("%m-%d %H:%M"),
            "sla_hours": c["sla_hours"],
            "sla_state": c["sla_state"],
            "duplicate": c["duplicate"],
        }
        for c in cases
    ]


def queue_totals(db: Database, now: dt.datetime | None = None, *, scope: Scope) -> dict[str, int]:
    """Return ``scope``'s whole-queue counts (open, overdue, escalated), not capped."""
    return run(db, queue.queue_totals, scope=scope, now=now)


def queue_summary(rows: list[dict], lang: str, totals: dict[str, int] | None = None) -> list:
    """Return the summary tiles above the queue (open, overdue, escalated, duplicate suspects).

    ``totals`` (from ``queue_totals``) gives whole-queue counts; without it the tiles count
    the rows shown (at most QUEUE_LIMIT).
    """
    totals = totals or {}
    tiles = [
        ("dispatch.summary.open", totals.get("open", len(rows)), ""),
        (
            "dispatch.summary.overdue",
            totals.get("overdue", sum(r["sla_state"] == "overdue" for r in rows)),
            "bad",
        ),
        (
            "dispatch.summary.escalated",
            totals.get("escalated", sum(r["escalated"] for r in rows)),
            "warn",
        ),
        ("dispatch.summary.duplicates", sum(r["duplicate"] for r in rows), "warn"),
    ]
    return [
        html.Div([html.Div(t(k, lang), className="gs-kpi-label"),
                  html.Div(f"{v:,}", className=f"gs-kpi-value {cls}")],
                 className="gs-kpi", id=f"dispatch-kpi-{k.rsplit('.', 1)[1]}")
        for k, v, cls in tiles
    ]  # fmt: skip


def column_defs(lang: str) -> list[dict]:
    """Return the queue's AG Grid column definitions with labels in ``lang``."""

    def col(field, **kw):
        return {"field": field, "headerName": t(f"dispatch.col.{field}", lang), **kw}

    return [
        col("id", width=80, filter="agNumberColumnFilter"),
        col("sla_hours", width=140, filter="agNumberColumnFilter", cellStyle=SLA_STYLE,
            sort="asc"),
        col("priority", width=80),
        col("category", width=150),
        col("status", width=100),
        col("level", width=100, cellStyle={"styleConditions": [
            {"condition": "params.data.escalated", "style": {"color": "#ffb347",
                                                              "fontWeight": "bold"}}]}),
        col("grid", width=150),
        col("assignee", width=130),
        col("created", width=110),
        col("duplicate", width=90, cellRenderer="agCheckboxCellRenderer"),
    ]  # fmt: skip


def _case_map(case: cases.CaseView) -> tuple[list, list[list[float]]]:
    """Return the detail map's layers (grid, cones, cameras, responders, the case) and bounds."""
    inc = case.incident
    layers = []
    if case.grid_geometry is not None:
        layers.append(dl.GeoJSON(data={"type": "Feature", "properties": {},
                                       "geometry": shapely.geometry.mapping(case.grid_geometry)},
                                 style={"color": "#4cc9f0", "weight": 2, "fillOpacity": 0.08}))  # fmt: skip
    for c in case.cameras:
        cone = c["cone"]
        if cone is not None and not cone.is_empty:
            layers.append(dl.Polygon(positions=[[y, x] for x, y in cone.exterior.coords],
                                     color="#ffd166", weight=1, fillOpacity=0.2))  # fmt: skip
    for c in case.cameras:
        layers.append(dl.CircleMarker(center=[c["lat"], c["lon"]], radius=5, color="#ffd166",
                                      children=dl.Tooltip(c["name"])))  # fmt: skip
    for p in case.nearest:
        if p["lat"] is None:
            continue
        layers.append(dl.CircleMarker(center=[p["lat"], p["lon"]], radius=6, color="#06d6a0",
                                      children=dl.Tooltip(f"{p['name']} · {p['distance_m']:.0f} m")))  # fmt: skip
    layers.append(dl.CircleMarker(center=[inc["lat"], inc["lon"]], radius=9, color="#ef476f",
                                  fillOpacity=0.9, children=dl.Tooltip(f"#{inc['id']}")))  # fmt: skip
    if case.grid_geometry is not None:
        b = case.grid_geometry.bounds
        return layers, [[b[1], b[0]], [b[3], b[2]]]
    d = 0.003
    return layers, [[inc["lat"] - d, inc["lon"] - d], [inc["lat"] + d, inc["lon"] + d]]


def _case_info(case: cases.CaseView, lang: str) -> list:
    """Return the detail panel's text: title, facts, history, linked reports, camera snapshots."""
    inc = case.incident
    cat_name = (case.category_zh if lang == "zh" else case.category_en) or inc["category"]
    reporter = f"{inc['reporter_name']} {inc['reporter_phone']}".strip()
    facts = [
        ("dispatch.field.category", cat_name),
        ("dispatch.field.status", t(f"dispatch.status.{inc['status']}", lang)),
        ("dispatch.field.level", t(f"dispatch.level.{inc['escalation_level']}", lang)),
        ("dispatch.field.grid", case.grid_code or "-"),
        ("dispatch.field.assignee", case.assignee or "-"),
        ("dispatch.field.due", _local(inc["due_at"], "%Y-%m-%d %H:%M") if inc["due_at"] else "-"),
        ("dispatch.field.reporter", reporter or "-"),
        ("dispatch.field.rework", str(inc["rework_count"])),
    ]  # fmt: skip
    info = [
        html.H3(f"#{inc['id']} · {cat_name}", id="dispatch-detail-title"),
        html.P(inc["description"] or t("dispatch.no_description", lang), className="gs-muted"),
        html.Dl([item for k, v in facts
                 for item in (html.Dt(t(k, lang), style={"color": "#8aa4c8"}),
                              html.Dd(v, style={"margin": 0}))],
                className="dispatch-facts",
                style={"display": "grid", "gridTemplateColumns": "max-content 1fr",
                       "columnGap": "16px", "rowGap": "4px"}),
        html.H4(t("dispatch.history", lang)),
        html.Ol([html.Li(f"{_local(e['ts'])} {t('dispatch.action.' + e['action'], lang)} → "
                         f"{t('dispatch.status.' + e['to_status'], lang)} · {e['actor']}"
                         + (f" · {e['reason']}" if e["reason"] else ""))
                 for e in case.history], id="dispatch-history"),
    ]  # fmt: skip
    if len(case.linked) > 1:
        info.append(html.P(t("dispatch.linked", lang) + ", ".join(f"#{i}" for i in case.linked)))
    snaps = [
        html.Figure([html.Img(src=f"/video/{c['id']}.jpg", alt=c["name"], width=200,
                              className="dispatch-snapshot"),
                     html.Figcaption(f"{c['name']} · {c['distance_m']:.0f} m")])
        for c in case.cameras
    ]  # fmt: skip
    info += [html.H4(t("dispatch.cameras", lang)),
             html.Div(snaps or t("dispatch.no_cameras", lang), id="dispatch-cameras",
                      className="dispatch-snapshots")]  # fmt: skip
    return info


def detail_view(
    db: Database,
    incident_id: int,
    lang: str,
    role: str,
    *,
    scope: Scope,
    reveal: cases.Reveal = cases.never,
) -> dict:
    """Return the detail panel parts of a case: header, body, map children/bounds, options.

    Keys: ``info`` (Dash children), ``map`` (dash-leaflet children), ``bounds``,
    ``assignees`` (dropdown options, nearest first), ``merge`` (duplicate options),
    ``actions`` (allowed action names for ``role``). The reporter is shown in clear only
    where ``reveal`` allows it (``dashboard.policy.may_see_personal_data``).
    """
    case = run(db, cases.case_view, incident_id, scope=scope, reveal=reveal)
    layers, bounds = _case_map(case)
    assignees = [{"label": f"{p['name']} · {p['distance_m']:.0f} m", "value": p["id"]}
                 for p in case.nearest]  # fmt: skip
    merge = [{"label": f"#{d['id']} · {d['distance_m']:.0f} m · {d['minutes_apart']:.0f} min",
              "value": d["id"]} for d in case.duplicates]  # fmt: skip
    inc = case.incident
    return {"info": _case_info(case, lang), "map": layers, "bounds": bounds,
            "assignees": assignees, "merge": merge,
            "actions": cases.actions_for(inc["status"], inc["sla_paused"], role)}  # fmt: skip


def perform_action(
    db,
    incident_id: int,
    action: str,
    *,
    actor: str,
    role: str,
    assignee_id: int | None = None,
    into: int | None = None,
    reason: str = "",
    lang: str = "zh",
    distinct: bool = False,
    scope: Scope,
) -> tuple[bool, str]:
    """Return (ok, message) after applying a workflow action from the page."""
    try:
        doc = run(
            db, cases.act, incident_id, action, scope=scope, actor=actor, role=role,
            reason=reason or "", into=into, distinct=distinct,
            assignee_id=assignee_id if action in ("dispatch", "reassign") else None,
        )  # fmt: skip
    except (workflow.TransitionError, workflow.ActionNotPermittedError, NotFoundError) as exc:
        return False, f"{t('dispatch.error', lang)}: {str(exc).strip(chr(39))}"
    return True, t("dispatch.done", lang, action=t(f"dispatch.action.{action}", lang),
                   id=incident_id, status=t(f"dispatch.status.{doc['status']}", lang))  # fmt: skip


# -- layout -----------------------------------------------------------------------------------
@_guard
def layout(**_query) -> html.Div:
    """Return the dispatcher page skeleton; labels and data are filled in by callbacks."""
    ctx = get_ctx()
    tiles = []
    if ctx.settings.web.basemap_url:
        tiles = [dl.TileLayer(url=ctx.settings.web.basemap_url, maxZoom=19)]
    buttons = [
        html.Button(id=f"dispatch-btn-{a}", n_clicks=0, disabled=True, accessKey=ACTION_KEYS[a],
                    className="dispatch-btn")
        for a in ACTION_ORDER
    ]  # fmt: skip
    return html.Div(
        className="gs-page dispatch-page",
        id="dispatch-page",
        style={"display": "grid", "gridTemplateColumns": "minmax(0, 3fr) minmax(420px, 2fr)",
               "gap": "12px", "height": "calc(100vh - 64px)", "padding": "8px"},
        children=[
            dcc.Store(id="dispatch-selected", data=None),
            dcc.Store(id="dispatch-changed", data=0),
            dcc.Interval(id="dispatch-tick", interval=TICK_MS),
            html.Section(
                style={"display": "flex", "flexDirection": "column", "minHeight": 0},
                children=[
                    html.Div(id="dispatch-summary", className="gs-kpis",
                             style={"display": "flex", "gap": "8px"}),
                    html.H2(id="dispatch-queue-title"),
                    dag.AgGrid(
                        id="dispatch-queue",
                        rowData=[],
                        columnDefs=column_defs("zh"),
                        getRowId="params.data.id",
                        defaultColDef={"sortable": True, "filter": True, "resizable": True,
                                       "floatingFilter": True},
                        dashGridOptions={"rowSelection": {"mode": "singleRow",
                                                          "checkboxes": False,
                                                          "enableClickSelection": True},
                                         "animateRows": False, "ensureDomOrder": True,
                                         "theme": {"function": GRID_THEME}},
                        style={"flex": "1 1 0", "minHeight": "300px", "width": "100%"},
                    ),
                    html.P(id="dispatch-keys-help", className="gs-muted"),
                    html.Div(
                        id="dispatch-kpi",
                        style={"flexShrink": 0},
                        children=[
                            html.Div(style={"display": "flex", "gap": "12px",
                                            "alignItems": "baseline"},
                                     children=[html.H3(id="dispatch-kpi-title"),
                                               html.A(id="dispatch-kpi-csv", download="",
                                                      style={"color": "#4cc9f0"}),
                                               html.A(id="dispatch-kpi-xlsx", download="",
                                                      style={"color": "#4cc9f0"})]),
                            dcc.Graph(id="dispatch-kpi-chart", config={"displayModeBar": False},
                                      style={"height": "220px"}),
                            dcc.Interval(id="dispatch-kpi-tick", interval=60_000),
                        ],
                    ),
                ],
            ),
            html.Section(
                style={"display": "flex", "flexDirection": "column", "gap": "8px",
                       "overflowY": "auto", "minHeight": 0},
                children=[
                    html.Div(id="dispatch-message", role="status", **{"aria-live": "polite"},
                             className="gs-message"),
                    html.Div(className="dispatch-actions",
                             style={"display": "flex", "flexWrap": "wrap", "gap": "6px"},
                             children=[
                                 dcc.Dropdown(id="dispatch-assignee", options=[],
                                              style={"minWidth": "220px", "color": "#111"}),
                                 dcc.Dropdown(id="dispatch-merge-into", options=[],
                                              style={"minWidth": "200px", "color": "#111"}),
                                 dcc.Input(id="dispatch-reason", type="text", debounce=False,
                                           style={"minWidth": "220px"}),
                                 dcc.Checklist(id="dispatch-distinct", options=[], value=[],
                                               style={"alignSelf": "center"},
                                               labelStyle={"color": "#cfe3ff"}),
                                 *buttons,
                             ]),
                    dl.Map(id="dispatch-map", center=[25.04, 102.71], zoom=15,
                           style={"height": "340px", "minHeight": "340px", "width": "100%",
                                  "flexShrink": 0},
                           children=[*tiles, dl.LayerGroup(id="dispatch-map-layers")]),
                    html.Div(id="dispatch-detail", children=[]),
                ],
            ),
        ],
    )  # fmt: skip


# -- callbacks --------------------------------------------------------------------------------
@callback(
    Output("dispatch-queue-title", "children"),
    Output("dispatch-queue", "columnDefs"),
    Output("dispatch-keys-help", "children"),
    Output("dispatch-assignee", "placeholder"),
    Output("dispatch-merge-into", "placeholder"),
    Output("dispatch-reason", "placeholder"),
    Output("dispatch-distinct", "options"),
    *[Output(f"dispatch-btn-{a}", "children") for a in ACTION_ORDER],
    Input("app-lang", "data"),
)
@_guard
def render_labels(lang):
    """Return the page's labels in the chosen language."""
    lang = lang or "zh"
    keys = " · ".join(f"Alt+Shift+{ACTION_KEYS[a].upper()} {t('dispatch.action.' + a, lang)}"
                      for a in ACTION_ORDER)  # fmt: skip
    return (t("dispatch.queue", lang), column_defs(lang), t("dispatch.keys", lang) + keys,
            t("dispatch.assignee", lang), t("dispatch.merge_into", lang),
            t("dispatch.reason", lang),
            [{"label": " " + t("dispatch.distinct", lang), "value": "distinct"}],
            *[f"{t('dispatch.action.' + a, lang)} ({ACTION_KEYS[a].upper()})" for a in ACTION_ORDER])  # fmt: skip


@callback(
    Output("dispatch-queue", "rowData"),
    Output("dispatch-summary", "children"),
    Input("dispatch-tick", "n_intervals"),
    Input("dispatch-changed", "data"),
    Input("app-lang", "data"),
)
@_guard
def refresh_queue(_n, _changed, lang):
    """Return the queue rows and summary tiles (polled: new cases appear without reload)."""
    lang = lang or "zh"
    db = get_ctx().db
    scope = request_scope()
    rows = queue_rows(db, lang=lang, scope=scope)
    return rows, queue_summary(rows, lang, queue_totals(db, scope=scope))


@callback(
    Output("dispatch-selected", "data"),
    Input("dispatch-queue", "selectedRows"),
    State("dispatch-selected", "data"),
)
@_guard
def select_case(selected, current):
    """Return the id of the selected case (kept while the queue refreshes)."""
    if selected:
        return selected[0]["id"]
    return current if current is not None else no_update


@callback(
    Output("dispatch-detail", "children"),
    Output("dispatch-map-layers", "children"),
    Output("dispatch-map", "viewport"),
    Output("dispatch-assignee", "options"),
    Output("dispatch-assignee", "value"),
    Output("dispatch-merge-into", "options"),
    *[Output(f"dispatch-btn-{a}", "disabled") for a in ACTION_ORDER],
    Input("dispatch-selected", "data"),
    Input("dispatch-changed", "data"),
    Input("app-lang", "data"),
)
@_guard
def show_detail(incident_id, _changed, lang):
    """Return the detail panel, map layers and enabled actions of the selected case."""
    lang = lang or "zh"
    off = [True] * len(ACTION_ORDER)
    if incident_id is None:
        return (html.P(t("dispatch.pick", lang), className="gs-muted"), [], no_update, [], None,
                [], *off)  # fmt: skip
    try:
        db = get_ctx().db
        view = detail_view(db, int(incident_id), lang, _principal()[1], scope=request_scope(),
                           reveal=request_reveal())  # fmt: skip
    except NotFoundError:
        return html.P(t("dispatch.gone", lang)), [], no_update, [], None, [], *off
    enabled = set(view["actions"])
    first = view["assignees"][0]["value"] if view["assignees"] else None
    return (view["info"], view["map"], {"bounds": view["bounds"], "transition": "flyToBounds"},
            view["assignees"], first, view["merge"],
            *[a not in enabled for a in ACTION_ORDER])  # fmt: skip


@callback(
    Output("dispatch-message", "children"),
    Output("dispatch-changed", "data"),
    Output("dispatch-reason", "value"),
    *[Input(f"dispatch-btn-{a}", "n_clicks") for a in ACTION_ORDER],
    State("dispatch-selected", "data"),
    State("dispatch-assignee", "value"),
    State("dispatch-merge-into", "value"),
    State("dispatch-reason", "value"),
    State("dispatch-distinct", "value"),
    State("dispatch-changed", "data"),
    State("app-lang", "data"),
    prevent_initial_call=True,
)
@_guard
def on_action(*args):
    """Return (message, change counter, cleared reason) after the clicked action."""
    *_clicks, incident_id, assignee, into, reason, distinct, changed, lang = args
    lang = lang or "zh"
    trigger = dash.ctx.triggered_id
    if not trigger or incident_id is None or not any(_clicks):
        return no_update, no_update, no_update
    action = str(trigger).removeprefix("dispatch-btn-")
    actor, role = _principal()
    db = get_ctx().db
    ok, message = perform_action(db, int(incident_id), action, actor=actor, role=role,
                                 assignee_id=assignee, into=into, reason=reason or "", lang=lang,
                                 distinct="distinct" in (distinct or []), scope=request_scope())  # fmt: skip
    return (html.Span(message, className="ok" if ok else "err", id="dispatch-message-text"),
            (changed or 0) + 1, "" if ok else no_update)  # fmt: skip


def month_window(now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Return the current local (UTC+8) calendar month as [start, end) aware datetimes."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(CST)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def kpi_figure(rows: list[dict], lang: str) -> dict:
    """Return a bar chart of 结案率 and 按期结案率 per district (plotly figure dict)."""
    names = [r["name"] for r in rows]
    traces = []
    for key, colour in (("closure_rate", "#4cc9f0"), ("on_time_closure_rate", "#06d6a0")):
        traces.append({"type": "bar", "name": t(f"dispatch.kpi.{key}", lang), "x": names,
                       "y": [r[key] for r in rows], "marker": {"color": colour},
                       "text": [f"{v:.2f}%" if v is not None else "-" for v in (r[key] for r in rows)],
                       "textposition": "auto"})  # fmt: skip
    return {"data": traces, "layout": {
        "barmode": "group", "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#cfe3ff"}, "margin": {"l": 40, "r": 10, "t": 10, "b": 30},
        "yaxis": {"range": [0, 100], "ticksuffix": "%", "gridcolor": "#2a3b57"},
        "legend": {"orientation": "h", "y": 1.15}}}  # fmt: skip


@callback(
    Output("dispatch-kpi-title", "children"),
    Output("dispatch-kpi-chart", "figure"),
    Output("dispatch-kpi-csv", "href"),
    Output("dispatch-kpi-csv", "children"),
    Output("dispatch-kpi-xlsx", "href"),
    Output("dispatch-kpi-xlsx", "children"),
    Input("dispatch-kpi-tick", "n_intervals"),
    Input("dispatch-changed", "data"),
    Input("app-lang", "data"),
)
@_guard
def refresh_kpi(_n, _changed, lang):
    """Return this month's KPI chart per district and the CSV / XLSX export links."""
    from urllib.parse import urlencode

    from layers.services import kpi as kpi_service

    lang = lang or "zh"
    start, end = month_window()
    rows = run(get_ctx().db, kpi_service.compute_kpis, start, end, scope=request_scope(),
               group_by="district", lang=lang)  # fmt: skip
    q = {"start": start.isoformat(), "end": end.isoformat(), "group_by": "district",
         "lang": lang}  # fmt: skip
    title = t("dispatch.kpi.title", lang, month=start.strftime("%Y-%m"))
    return (title, kpi_figure(rows, lang), "/api/v1/kpi?" + urlencode({**q, "format": "csv"}),
            "CSV", "/api/v1/kpi?" + urlencode({**q, "format": "xlsx"}), "XLSX")  # fmt: skip
