"""The operator page's callbacks: thin functions that parse inputs, ask a service, render.

Each is declared with ``@wire(...)`` (its Dash outputs, inputs and states) and stays a plain
function the tests call. ``register()`` hands them to Dash; the page module calls it when
Dash loads the page for an app (a ``dash.callback`` made at import time would reach only the
first app of the process). Callbacks that read data are limited to the viewer's scope and
refused (``PreventUpdate``) to roles that may not open the map.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from urllib.parse import urlencode

import dash
import flask
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    Patch,
    State,
    ctx,
    dcc,
    html,
    no_update,
)
from dash.exceptions import PreventUpdate

from dashboard.auth import require_roles
from dashboard.context import get_ctx
from dashboard.i18n import t
from dashboard.operator import views
from dashboard.operator.common import (
    CONES_MIN_ZOOM,
    EMPTY_FC,
    GRID_MODES,
    KPIS,
    LAYERS,
    MAP_ROLES,
    POINTS_MIN_ZOOM,
    category_names,
    display_bounds,
    filter_query,
    heat_url,
    pct,
    unshift,
    view_bbox,
)
from dashboard.operator.live import live_refresh
from dashboard.scoping import request_scope
from layers.services import NotFoundError, mapdata

log = logging.getLogger(__name__)

#: (function, Dash dependencies, keyword arguments) of every server-side callback
WIRING: list[tuple[Callable, tuple, dict]] = []
#: (function name in ``window.dash_clientside.operator``, dependencies, keyword arguments)
CLIENTSIDE: list[tuple[str, tuple, dict]] = []


def wire(*dependencies, **kwargs) -> Callable:
    """Return a decorator recording ``func`` as a callback with these Dash dependencies."""

    def record(func: Callable) -> Callable:
        WIRING.append((func, dependencies, kwargs))
        return func

    return record


def register() -> None:
    """Register every callback of the page with Dash (for the app being built)."""
    for func, dependencies, kwargs in WIRING:
        dash.callback(*dependencies, **kwargs)(func)
    for name, dependencies, kwargs in CLIENTSIDE:
        dash.clientside_callback(
            ClientsideFunction(namespace="operator", function_name=name), *dependencies, **kwargs
        )


# -- labels (language) --------------------------------------------------------------------------


@wire(
    Output("operator-window", "options"),
    Output("operator-layer-toggle", "options"),
    Output("operator-grid-mode", "options"),
    Output("operator-cats", "options"),
    *[Output(f"operator-{k}-title", "children") for k in
      ("layers", "cats", "trend", "hot", "card", "feed")],
    Output("operator-export", "children"),
    Output("operator-export", "title"),
    Output("operator-range", "start_date_placeholder_text"),
    Output("operator-range", "end_date_placeholder_text"),
    *[Output(f"operator-kpi-label-{k}", "children") for k in KPIS],
    Input("app-lang", "data"),
)  # fmt: skip
def render_labels(lang):
    """Return every static label of the page in the chosen language."""
    lang = lang or "zh"
    return views.labels(lang, category_names(lang))


@wire(
    Output("operator-legend-body", "children"),
    Input("app-lang", "data"),
    Input("operator-grid-mode", "value"),
    Input("operator-grids", "hideout"),
)
def render_legend(lang, mode, hideout):
    """Return the legend for the grid colouring, heat map, cameras and centers."""
    return views.legend(lang or "zh", mode, (hideout or {}).get("max") or 1)


# -- filters ------------------------------------------------------------------------------------


@wire(Output("operator-map-wrap", "className"), Input("operator-layer-toggle", "value"))
def toggle_layers(visible):
    """Return the wrapper's classes: one ``hide-<layer>`` per unchecked layer (CSS hides panes)."""
    hidden = [f"hide-{k}" for k in LAYERS if k not in (visible or [])]
    return " ".join(["gs-map-wrap", *hidden])


@wire(Output("operator-range", "style"), Input("operator-window", "value"))
def show_range(window):
    """Return the date-range picker's style: shown only for the custom window."""
    return {} if window == "custom" else {"display": "none"}


def build_filter(window, start, end, playback, cats, area, all_cats) -> dict:
    """Return the filter dict kept in ``operator-filter`` (validated by ``mapdata.parse_filter``)."""
    f: dict = {"window": window or "24h"}
    if f["window"] == "custom":
        if not (start and end):  # until both dates are picked, show the last 7 days
            f["window"] = "7d"
        else:
            f["start"], f["end"] = start, end
    if playback is not None and playback < 100:
        f["playback"] = round(playback / 100.0, 4)
    cats = sorted(cats or [])
    if cats and set(cats) != set(all_cats or []):
        f["categories"] = cats
    if area:
        f["area_id"] = int(area)
    mapdata.parse_filter(f, request_scope())  # raises MapFilterError naming the field
    return f


@wire(
    Output("operator-filter", "data"),
    Input("operator-window", "value"),
    Input("operator-range", "start_date"),
    Input("operator-range", "end_date"),
    Input("operator-playback", "value"),
    Input("operator-cats", "value"),
    Input("operator-area", "data"),
    State("operator-cats", "options"),
)
def update_filter(window, start, end, playback, cats, area, cat_options):
    """Return the filter the map shows, from the toolbar, the categories and the drill-down."""
    all_cats = [o["value"] for o in cat_options or []]
    try:
        return build_filter(window, start, end, playback, cats, area, all_cats)
    except mapdata.MapFilterError as exc:
        log.info("operator filter rejected: %s", exc)
        raise PreventUpdate from None


@wire(
    Output("operator-cats", "value"),
    Input("operator-cats", "options"),
    State("operator-cats", "value"),
)
def default_categories(options, value):
    """Return every category checked when the options first arrive (no filter = all)."""
    if value:
        raise PreventUpdate
    return [o["value"] for o in options or []]


@wire(
    Output("operator-playback-label", "children"),
    Input("operator-filter", "data"),
    Input("app-lang", "data"),
)
def playback_label(fdict, lang):
    """Return the playback instant shown next to the slider ("live" at the right end)."""
    lang = lang or "zh"
    f = mapdata.parse_filter(fdict, request_scope())
    inst = f.instant(dt.datetime.now(dt.UTC))
    if inst is None:
        return t("operator.live", lang)
    return inst.astimezone(mapdata.CST).strftime("%m-%d %H:%M")


@wire(
    Output("operator-play-tick", "disabled"),
    Output("operator-playback", "value", allow_duplicate=True),
    Output("operator-play", "children"),
    Input("operator-play", "n_clicks"),
    Input("app-lang", "data"),
    State("operator-play-tick", "disabled"),
    State("operator-playback", "value"),
    prevent_initial_call="initial_duplicate",
)
def play_pause(n, lang, disabled, value):
    """Return whether playback runs; starting from "live" rewinds to the window start."""
    lang = lang or "zh"
    if ctx.triggered_id != "operator-play":
        return no_update, no_update, t("operator.play" if disabled else "operator.pause", lang)
    start = disabled  # the button starts a stopped playback, stops a running one
    value_out = 0 if start and (value is None or value >= 100) else no_update
    label = t("operator.pause" if start else "operator.play", lang)
    return (not start), value_out, label


@wire(
    Output("operator-playback", "value"),
    Output("operator-play-tick", "disabled", allow_duplicate=True),
    Input("operator-play-tick", "n_intervals"),
    State("operator-playback", "value"),
    prevent_initial_call=True,
)
def play_step(_n, value):
    """Return the next playback position (2 % of the window per step; stops at live)."""
    nxt = min(100, (value or 0) + 2)
    return nxt, nxt >= 100


# -- drill-down and viewport --------------------------------------------------------------------


@wire(
    Output("operator-area", "data"),
    Output("operator-map", "viewport"),
    Input("operator-labels", "clickData"),
    Input({"type": "operator-crumb", "area": ALL}, "n_clicks"),
    Input({"type": "operator-hot", "grid": ALL}, "n_clicks"),
    State("operator-city-bounds", "data"),
    prevent_initial_call=True,
)
@require_roles(*MAP_ROLES)
def drill(label_click, _crumbs, _hot, city_bounds):
    """Return the area drilled to and the viewport fitted to it (labels, breadcrumb, hotspot)."""
    trig = ctx.triggered_id
    db = get_ctx().db
    if trig == "operator-labels":
        if not label_click:
            raise PreventUpdate
        area = int(label_click["properties"]["area"])
    elif isinstance(trig, dict) and trig.get("type") == "operator-crumb":
        if not ctx.triggered[0]["value"]:
            raise PreventUpdate
        area = trig["area"] or None
    elif isinstance(trig, dict) and trig.get("type") == "operator-hot":
        if not ctx.triggered[0]["value"]:
            raise PreventUpdate
        b = mapdata.grid_bounds(db, int(trig["grid"]), request_scope())
        if b is None:
            raise PreventUpdate
        # zoom to the hotspot grid, keep the drill-down as it is
        return no_update, {"bounds": display_bounds(b), "transition": "flyToBounds"}
    else:
        raise PreventUpdate
    if area is None:
        return None, {"bounds": city_bounds, "transition": "flyToBounds"}
    path = mapdata.area_path(db, area, request_scope())
    if not path:
        raise PreventUpdate
    return area, {"bounds": display_bounds(path[-1]["bounds"]), "transition": "flyToBounds"}


@wire(
    Output("operator-crumbs", "children"),
    Output("operator-labels", "data"),
    Output("operator-districts", "hideout"),
    Output("operator-streets", "hideout"),
    Output("operator-communities", "hideout"),
    Input("operator-area", "data"),
    Input("app-lang", "data"),
)
@require_roles(*MAP_ROLES)
def render_area(area, lang):
    """Return the breadcrumb, the next level's clickable labels and the outline filters."""
    lang = lang or "zh"
    db = get_ctx().db
    scope = request_scope()
    path = mapdata.area_path(db, area, scope) if area else []
    crumbs = [html.Button(t("operator.city", lang), id={"type": "operator-crumb", "area": 0},
                          className="gs-crumb")]  # fmt: skip
    for p in path:
        crumbs += [html.Span("›", className="gs-crumb-sep"),
                   html.Button(p["name"], id={"type": "operator-crumb", "area": p["id"]},
                               className="gs-crumb")]  # fmt: skip
    by_level = {p["level"]: p["id"] for p in path}
    return (
        crumbs,
        mapdata.area_labels(db, area, scope),
        {"sel": by_level.get("district")},
        {"parent": by_level.get("district")},
        {"parent": by_level.get("street")},
    )


CLIENTSIDE += [
    ("saveView", (Output("operator-view", "data"), Input("operator-map", "center"),
                  Input("operator-map", "zoom")), {"prevent_initial_call": True}),
    ("restoreView", (Output("operator-map", "viewport", allow_duplicate=True),
                     Input("operator-view-init", "n_intervals"), State("operator-view", "data"),
                     State("operator-city-bounds", "data")), {"prevent_initial_call": True}),
]  # fmt: skip


# -- live refresh ---------------------------------------------------------------------------------


@wire(
    Output("operator-grids", "hideout"),
    Output("operator-live", "data"),
    Output("operator-feed", "children"),
    Output("operator-cursor", "data"),
    Output("operator-kpi-open", "children"),
    Output("operator-kpi-new_today", "children"),
    Output("operator-cameras", "hideout"),
    Input("operator-tick", "n_intervals"),
    Input("operator-filter", "data"),
    Input("app-lang", "data"),
    State("operator-cursor", "data"),
)
@require_roles(*MAP_ROLES)
def refresh(_n, fdict, lang, cursor):
    """Return the incremental map update: grid counts, new incidents, KPIs, camera status."""
    trig = ctx.triggered_id
    if trig == "app-lang":
        cursor = {**(cursor or {}), "fkey": None}
    out = live_refresh(fdict, cursor, trig, lang or "zh", request_scope())
    return (out.grids, out.live, out.feed, out.cursor, *out.kpis, out.cameras)


SLOW_KPIS = ("overdue", "closure_rate", "ontime_rate", "cameras_online")


def _slow_kpi_values(db, f) -> list[str]:
    k = mapdata.kpis(db, f)
    return [f"{k['overdue']:,}", pct(k["closure_rate"]), pct(k["ontime_rate"]),
            _camera_online(db, f.scope)]  # fmt: skip


def _camera_online(db, scope) -> str:
    from layers.services import cameras as camera_service

    try:
        c = camera_service.counts(db, scope)
    except Exception:  # noqa: BLE001 - the camera service is optional for the KPI row
        log.exception("camera counts failed")
        return "—"
    total = sum((c.get("by_status") or {}).values()) if isinstance(c, dict) else 0
    online = (c.get("by_status") or {}).get("online", 0) if isinstance(c, dict) else 0
    return pct(online / total) if total else "—"


@wire(
    Output("operator-trend-wrap", "children"),
    Output("operator-hotspots", "children"),
    Output("operator-heat", "url"),
    Output("operator-slow-cursor", "data"),
    *[Output(f"operator-kpi-{k}", "children") for k in SLOW_KPIS],
    Input("operator-slow", "n_intervals"),
    Input("operator-late", "n_intervals"),
    Input("operator-filter", "data"),
    Input("app-lang", "data"),
    State("operator-slow-cursor", "data"),
)
@require_roles(*MAP_ROLES)
def refresh_slow(_n, late, fdict, lang, slow_cursor):
    """Return trend, hotspots, heat-map URL and the slower KPIs (every 15 s if changed).

    Overdue counts and closure rates need a row scan of the open incidents, so they refresh
    with the heat map rather than every second; open and new-today counts are live.
    """
    lang = lang or "zh"
    db = get_ctx().db
    f = mapdata.parse_filter(fdict, request_scope())
    ev = mapdata.last_event_id(db)
    key = f"{f.key()}|{lang}"
    if ctx.triggered_id == "operator-slow" and slow_cursor == {"ev": ev, "key": key, "late": 1}:
        raise PreventUpdate
    chart = no_update
    if late:
        tr = mapdata.trend(db, f, buckets=24 if f.window != "7d" else 28)
        chart = dcc.Graph(id="operator-trend",
                          figure=views.trend_figure(tr, category_names(lang), lang),
                          config={"displayModeBar": False, "responsive": True},
                          style={"height": "190px"})  # fmt: skip
    hot = views.hotspot_items(mapdata.top_hotspots(db, f), lang)
    return (chart, hot, heat_url(fdict, ev), {"ev": ev, "key": key, "late": 1 if late else 0},
            *_slow_kpi_values(db, f))  # fmt: skip


@wire(
    Output("operator-points", "data"),
    Output("operator-cones", "data"),
    Output("operator-heat", "opacity"),
    Input("operator-map", "bounds"),
    Input("operator-map", "zoom"),
    Input("operator-filter", "data"),
    Input("operator-layer-toggle", "value"),
    State("operator-points", "data"),
    State("operator-cones", "data"),
)
@require_roles(*MAP_ROLES)
def zoomed_layers(bounds, zoom, fdict, visible, points, cones):
    """Return incident points (zoom >= 15) and camera view cones (zoom >= 16) in the view."""
    visible = visible or []
    if not bounds or zoom is None:
        raise PreventUpdate
    bbox = view_bbox(bounds)
    db = get_ctx().db
    scope = request_scope()
    pts = EMPTY_FC
    if zoom >= POINTS_MIN_ZOOM and "incidents" in visible:
        pts = mapdata.incident_points(db, mapdata.parse_filter(fdict, scope), bbox)
    cns = EMPTY_FC
    if zoom >= CONES_MIN_ZOOM and "cameras" in visible:
        cns = mapdata.camera_cones(db, bbox, scope)
    same = lambda a, b: (a or EMPTY_FC)["features"] == [] and b["features"] == []  # noqa: E731
    heat = 0.6 if zoom < CONES_MIN_ZOOM else 0.25  # zoomed in, points tell more than heat
    return (no_update if same(points, pts) else pts, no_update if same(cones, cns) else cns,
            heat)  # fmt: skip


# -- selection: grid card, camera card ------------------------------------------------------------


def _video_available() -> bool:
    return any(r.rule.startswith("/video/") for r in flask.current_app.url_map.iter_rules())


@wire(
    Output("operator-selection", "data"),
    Input("operator-map", "clickData"),
    Input({"type": "operator-hot", "grid": ALL}, "n_clicks"),
    State("operator-map", "zoom"),
    State("operator-layer-toggle", "value"),
    prevent_initial_call=True,
)
@require_roles(*MAP_ROLES)
def select_feature(click, _hot, zoom, visible):
    """Return what the operator selected: the camera near a click, else the grid under it."""
    trig = ctx.triggered_id
    if isinstance(trig, dict) and trig.get("type") == "operator-hot":
        if not ctx.triggered[0]["value"]:
            raise PreventUpdate
        return {"kind": "grid", "id": int(trig["grid"])}
    if not click or "latlng" not in click:
        raise PreventUpdate
    lon, lat = unshift(click["latlng"]["lng"], click["latlng"]["lat"])
    hit = mapdata.locate_click(get_ctx().db, lon, lat, zoom or 12, scope=request_scope(),
                               cameras="cameras" in (visible or []) and (zoom or 0) >= 15)  # fmt: skip
    if hit["camera"] is not None:
        return {"kind": "camera", "id": hit["camera"]}
    if hit["grid"] is not None:
        return {"kind": "grid", "id": hit["grid"]}
    return None


@wire(
    Output("operator-card", "children"),
    Output("operator-grids", "hideout", allow_duplicate=True),
    Input("operator-selection", "data"),
    Input("app-lang", "data"),
    prevent_initial_call=True,
)
@require_roles(*MAP_ROLES)
def render_card(sel, lang):
    """Return the selected grid's or camera's card and highlight the selected grid."""
    lang = lang or "zh"
    hide = Patch()
    if not sel:
        hide["sel"] = None
        return html.Div(t("operator.card.hint", lang), className="gs-muted"), hide
    db = get_ctx().db
    try:
        if sel["kind"] == "camera":
            card = mapdata.camera_card(db, sel["id"], request_scope())
            hide["sel"] = None
            return views.camera_card_view(card, lang, _video_available()), hide
        card = mapdata.grid_card(db, sel["id"], lang, scope=request_scope())
    except NotFoundError:
        return html.Div(t("operator.card.gone", lang), className="gs-muted"), no_update
    hide["sel"] = sel["id"]
    return views.grid_card_view(card, lang), hide


@wire(
    Output("operator-card", "children", allow_duplicate=True),
    Input("app-lang", "data"),
    State("operator-selection", "data"),
    prevent_initial_call="initial_duplicate",
)
def card_hint(lang, sel):
    """Return the empty card's hint on page load (before anything is selected)."""
    if sel:
        raise PreventUpdate
    return html.Div(t("operator.card.hint", lang or "zh"), className="gs-muted")


@wire(
    Output("operator-grids", "hideout", allow_duplicate=True),
    Input("operator-grid-mode", "value"),
    prevent_initial_call=True,
)
@require_roles(*MAP_ROLES)
def grid_mode(mode):
    """Return the grid colouring mode; coverage fractions are sent once, on first use."""
    hide = Patch()
    hide["mode"] = mode if mode in GRID_MODES else "incidents"
    if mode == "coverage":
        cov = mapdata.grid_coverage(get_ctx().db, request_scope())
        hide["cov"] = {str(k): v for k, v in cov.items() if v is not None}
    return hide


@wire(
    Output("operator-export", "href"),
    Input("operator-filter", "data"),
    Input("operator-map", "bounds"),
    Input("operator-layer-toggle", "value"),
    Input("operator-grid-mode", "value"),
    Input("app-lang", "data"),
)
def export_href(fdict, bounds, visible, mode, lang):
    """Return the situation-export URL for the current view, filters and layers."""
    q = filter_query(fdict)
    if bounds:
        q["bbox"] = ",".join(f"{v:.5f}" for v in view_bbox(bounds))
    q["layers"] = ",".join(visible or [])
    q["mode"] = mode or "incidents"
    q["lang"] = lang or "zh"
    return "/export/situation.html?" + urlencode(q)
