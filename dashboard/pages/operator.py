"""Operator situation map (home page): the live map a command center keeps on its big screen.

Static layers (grid polygons, areas, cameras, centers) load once from the cached
``/layers/<layer>.geojson`` route; every refresh afterwards sends counts and new features
only (Dash ``Patch`` on the grids' ``hideout`` and on the live-incident layer), so the
viewport, zoom and the browser's parsed geometry survive. Each layer draws into its own pane
and is shown or hidden with a CSS class on the map wrapper. Clicks are resolved on the server
(``mapdata.locate_click``): the camera within a few pixels, else the grid under the point.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import NamedTuple
from urllib.parse import urlencode

import dash
import dash_leaflet as dl
import flask
import plotly.graph_objects as go
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    Patch,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)
from dash.exceptions import PreventUpdate

from dashboard.auth import require_roles
from dashboard.context import get_ctx
from dashboard.i18n import t
from dashboard.scoping import request_scope
from layers.services import NotFoundError, mapdata
from layers.services.scope import Scope
from streams.events import is_event_id

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/", name="operator", title="GridSight")

DEFAULT_BOUNDS = [[24.95, 102.60], [25.15, 102.85]]  # Kunming, used for an empty city
LAYERS = ("grids", "heat", "incidents", "cameras", "centers", "areas")
DEFAULT_LAYERS = ["grids", "heat", "incidents", "cameras", "centers", "areas"]
POINTS_MIN_ZOOM = 15  # incidents as points from this zoom on
CONES_MIN_ZOOM = 16  # camera view cones from this zoom on
RESYNC_TICKS = 60  # full recount every 60 ticks (60 s): windows slide, statuses age
LIVE_MAX = 300  # live markers kept on the map before the layer is reset to the newest
FEED_SIZE = 8
TICK_MS = 1000  # a new incident shows within ~1 s
# An idle tick asks the worker-local event bus only, not the database; every DB_PROBE_TICKS
# ticks it asks the database anyway, for writers outside the bus (the layers CLI).
DB_PROBE_TICKS = 10
BUS_READ_LIMIT = 5000  # more events than this since the last tick: resynchronise in full
GRID_MODES = ("incidents", "coverage")
MAP_ROLES = ("operator", "dispatcher", "privacy_officer", "admin")
CAT_COLORS = {"DISPUTE": "#f78c6b", "SECURITY": "#ef476f", "SAFETY": "#ff4d4d",
              "ENV": "#06d6a0", "CITY": "#4cc9f0", "SPECIAL_GROUPS": "#b39ddb",
              "CAMPUS": "#ffd166", "EMERGENCY": "#ff0054", "SERVICE": "#90be6d"}  # fmt: skip


# -- helpers ----------------------------------------------------------------------------------


def _shift_enabled() -> bool:
    return get_ctx().settings.basemap_crs == "gcj02" and bool(
        get_ctx().settings.basemap_url or get_ctx().settings.mbtiles_path
    )


def _display_bounds(b: list[float] | None) -> list[list[float]]:
    """Return Leaflet [[south, west], [north, east]] for WGS-84 bounds, shifted if GCJ-02."""
    if not b:
        return DEFAULT_BOUNDS
    minx, miny, maxx, maxy = b
    if _shift_enabled():
        from geo.crs import from_wgs84

        xs, ys = from_wgs84([minx, maxx], [miny, maxy], "gcj02")
        minx, maxx, miny, maxy = float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1])
    return [[miny, minx], [maxy, maxx]]


def _unshift(lon: float, lat: float) -> tuple[float, float]:
    """Return the WGS-84 point of a map click (inverse of the display shift)."""
    if not _shift_enabled():
        return lon, lat
    from geo.crs import gcj02_to_wgs84

    x, y = gcj02_to_wgs84(lon, lat)
    return float(x), float(y)


def filter_query(fdict: dict | None) -> dict:
    """Return the URL query parameters describing a filter dict (heat image, export)."""
    f = fdict or {}
    q = {"window": f.get("window") or "24h"}
    for key in ("start", "end", "playback", "area_id"):
        if f.get(key) not in (None, ""):
            q[key] = f[key]
    if f.get("categories"):
        q["categories"] = ",".join(f["categories"])
    return q


def _heat_url(fdict: dict | None, version: int) -> str:
    return "/map/density.png?" + urlencode({**filter_query(fdict), "v": version})


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _category_names(lang: str) -> dict[str, str]:
    cats = mapdata.categories(get_ctx().db)
    key = "name_en" if lang == "en" else "name_zh"
    return {c["code"]: c[key] for c in cats}


# -- layout -----------------------------------------------------------------------------------


def _basemap() -> list:
    settings = get_ctx().settings
    if settings.mbtiles_path:
        return [dl.TileLayer(id="operator-basemap", url="/tiles/{z}/{x}/{y}.png", maxZoom=19,
                             maxNativeZoom=18, attribution="")]  # fmt: skip
    if settings.basemap_url:
        return [dl.TileLayer(id="operator-basemap", url=settings.basemap_url, maxZoom=19,
                             attribution="")]  # fmt: skip
    return []


def fit_zoom(bounds: list[list[float]], width_px: int = 1500, height_px: int = 950) -> float:
    """Return the Web-Mercator zoom (half steps) at which ``bounds`` fills a big-screen map."""
    import math

    (s, w), (n, e) = bounds
    dx = max(e - w, 1e-6) / 360.0
    y = lambda lat: math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))  # noqa: E731
    dy = max(y(n) - y(s), 1e-6) / (2 * math.pi)
    z = math.log2(min(width_px / (256 * dx), height_px / (256 * dy)))
    return max(3.0, min(18.0, math.floor(z * 2) / 2))


def _pane(name: str, z: int, children: list) -> dl.Pane:
    return dl.Pane(name=f"gs-{name}", style={"zIndex": z}, children=children)


def _map(bounds: list[list[float]], shift: bool, heat_version: int = 0) -> dl.Map:
    coords = {"coordsToLatLng": {"variable": "gridsight.gcjLatLng"}} if shift else {}
    (s, w), (n, e) = bounds
    return dl.Map(
        id="operator-map",
        center=[(s + n) / 2, (w + e) / 2],
        zoom=fit_zoom(bounds),
        preferCanvas=True,
        trackViewport=True,
        zoomSnap=0.5,
        maxZoom=19,
        attributionControl=False,
        style={"height": "100%", "width": "100%"},
        children=[
            *_basemap(),
            _pane(
                "grids",
                402,
                [
                    dl.GeoJSON(
                        id="operator-grids",
                        url="/layers/grids.geojson",
                        pane="gs-grids",
                        interactive=False,
                        style={"variable": "gridsight.gridStyle"},
                        hideout={
                            "mode": "incidents",
                            "counts": {},
                            "max": 1,
                            "cov": {},
                            "sel": None,
                        },
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "heat",
                405,
                [
                    dl.ImageOverlay(
                        id="operator-heat",
                        url=_heat_url(None, heat_version),
                        bounds=bounds,
                        opacity=0.8,
                        pane="gs-heat",
                        interactive=False,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "areas",
                410,
                [
                    dl.GeoJSON(
                        id="operator-districts",
                        url="/layers/districts.geojson",
                        pane="gs-areas",
                        interactive=False,
                        hideout={"sel": None},
                        style={"variable": "gridsight.districtStyle"},
                        **coords,
                    ),
                    dl.GeoJSON(
                        id="operator-streets",
                        url="/layers/streets.geojson",
                        pane="gs-areas",
                        interactive=False,
                        hideout={"parent": None},
                        filter={"variable": "gridsight.byParent"},
                        style={"variable": "gridsight.subAreaStyle"},
                        **coords,
                    ),
                    dl.GeoJSON(
                        id="operator-communities",
                        url="/layers/communities.geojson",
                        pane="gs-areas",
                        interactive=False,
                        hideout={"parent": None},
                        filter={"variable": "gridsight.byParent"},
                        style={"variable": "gridsight.subAreaStyle"},
                        **coords,
                    ),
                ],
            ),  # fmt: skip
            _pane(
                "cones",
                415,
                [
                    dl.GeoJSON(
                        id="operator-cones",
                        data={"type": "FeatureCollection", "features": []},
                        pane="gs-cones",
                        interactive=False,
                        style={"variable": "gridsight.coneStyle"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "points",
                420,
                [
                    dl.GeoJSON(
                        id="operator-points",
                        data={"type": "FeatureCollection", "features": []},
                        pane="gs-points",
                        interactive=False,
                        pointToLayer={"variable": "gridsight.incidentPoint"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "cameras",
                430,
                [
                    dl.GeoJSON(
                        id="operator-cameras",
                        url="/layers/cameras.geojson",
                        pane="gs-cameras",
                        cluster=True,
                        zoomToBoundsOnClick=True,
                        interactive=False,
                        superClusterOptions={"radius": 60, "maxZoom": 15},
                        # live status: "base" for every camera not in "st" {id: status}
                        hideout={"base": None, "st": {}},
                        pointToLayer={"variable": "gridsight.cameraPoint"},
                        clusterToLayer={"variable": "gridsight.cameraCluster"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "centers",
                440,
                [
                    dl.GeoJSON(
                        id="operator-centers",
                        url="/layers/centers.geojson",
                        pane="gs-centers",
                        interactive=False,
                        pointToLayer={"variable": "gridsight.centerPoint"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "live",
                450,
                [
                    dl.GeoJSON(
                        id="operator-live",
                        data={"type": "FeatureCollection", "features": []},
                        pane="gs-live",
                        interactive=False,
                        pointToLayer={"variable": "gridsight.liveMarker"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            _pane(
                "labels",
                460,
                [
                    dl.GeoJSON(
                        id="operator-labels",
                        data={"type": "FeatureCollection", "features": []},
                        pane="gs-labels",
                        pointToLayer={"variable": "gridsight.areaLabel"},
                        **coords,
                    )
                ],
            ),  # fmt: skip
            dl.ScaleControl(position="bottomright", imperial=False),
        ],
    )


def _toolbar() -> html.Div:
    return html.Div(
        className="gs-toolbar",
        children=[
            html.Div(id="operator-crumbs", className="gs-crumbs"),
            dcc.RadioItems(
                id="operator-window", value="24h", inline=True, className="gs-seg", options=[]
            ),  # fmt: skip
            dcc.DatePickerRange(
                id="operator-range",
                className="gs-range",
                display_format="YYYY-MM-DD",
                style={"display": "none"},
            ),  # fmt: skip
            html.Button(id="operator-play", n_clicks=0, className="gs-btn gs-play"),
            html.Div(
                dcc.Slider(
                    id="operator-playback",
                    min=0,
                    max=100,
                    step=1,
                    value=100,
                    marks=None,
                    tooltip={"always_visible": False},
                    updatemode="drag",
                ),
                className="gs-slider",
            ),  # fmt: skip
            html.Span(id="operator-playback-label", className="gs-playback-label"),
            html.A(id="operator-export", className="gs-btn gs-export", href="#", target="_blank"),
        ],
    )


def _layer_panel() -> html.Div:
    return html.Div(
        id="operator-legend",
        className="gs-legend",
        children=[
            html.Div(id="operator-layers-title", className="gs-legend-title"),
            dcc.Checklist(
                id="operator-layer-toggle",
                value=DEFAULT_LAYERS,
                options=[],
                className="gs-layer-toggle",
            ),  # fmt: skip
            dcc.RadioItems(
                id="operator-grid-mode",
                value="incidents",
                options=[],
                inline=True,
                className="gs-seg gs-seg-small",
            ),  # fmt: skip
            html.Div(id="operator-legend-body"),
        ],
    )


def _side() -> html.Aside:
    kpi = [("open", ""), ("overdue", "bad"), ("new_today", ""), ("closure_rate", ""),
           ("ontime_rate", ""), ("cameras_online", "")]  # fmt: skip
    return html.Aside(
        className="gs-side",
        children=[
            html.Div(
                className="gs-kpis",
                children=[
                    html.Div(
                        [
                            html.Div(id=f"operator-kpi-label-{k}", className="gs-kpi-label"),
                            html.Div("—", id=f"operator-kpi-{k}", className=f"gs-kpi-value {c}"),
                        ],
                        className="gs-kpi",
                    )
                    for k, c in kpi
                ],
            ),  # fmt: skip
            html.Div(id="operator-cats-title", className="gs-section-title"),
            dcc.Checklist(
                id="operator-cats", value=[], options=[], className="gs-cats", inline=True
            ),  # fmt: skip
            html.Div(id="operator-trend-title", className="gs-section-title"),
            # the chart (and plotly.js with it) mounts 2 s after the page, once the map is up
            html.Div(id="operator-trend-wrap", className="gs-trend"),
            html.Div(id="operator-hot-title", className="gs-section-title"),
            html.Div(id="operator-hotspots", className="gs-hotspots"),
            html.Div(id="operator-card-title", className="gs-section-title"),
            html.Div(id="operator-card", className="gs-card"),
            html.Div(id="operator-feed-title", className="gs-section-title"),
            html.Div(id="operator-feed", className="gs-feed"),
        ],
    )


@require_roles(*MAP_ROLES)
def layout(**_query) -> html.Div:
    """Return the operator page; city extent read per request, data loaded by callbacks."""
    ctx_ = get_ctx()
    bounds = _display_bounds(mapdata.city_bounds(ctx_.db))
    return html.Div(
        className="gs-page gs-operator",
        children=[
            dcc.Store(id="operator-filter", data={"window": "24h"}),
            dcc.Store(id="operator-area", data=None),
            dcc.Store(id="operator-cursor", data=None),
            dcc.Store(id="operator-slow-cursor", data=None),
            dcc.Store(id="operator-selection", data=None),
            dcc.Store(id="operator-view", storage_type="local"),
            dcc.Store(id="operator-city-bounds", data=bounds),
            dcc.Interval(id="operator-tick", interval=TICK_MS),
            dcc.Interval(id="operator-slow", interval=15_000),
            dcc.Interval(id="operator-late", interval=2000, max_intervals=1),
            dcc.Interval(id="operator-play-tick", interval=700, disabled=True),
            dcc.Interval(id="operator-view-init", interval=300, max_intervals=1),
            html.Div(
                id="operator-map-wrap",
                className="gs-map-wrap",
                children=[
                    _map(bounds, _shift_enabled(), mapdata.last_event_id(ctx_.db)),
                    _toolbar(),
                    _layer_panel(),
                ],  # fmt: skip
            ),
            _side(),
        ],
    )


# -- labels (language) --------------------------------------------------------------------------


@callback(
    Output("operator-window", "options"),
    Output("operator-layer-toggle", "options"),
    Output("operator-grid-mode", "options"),
    Output("operator-cats", "options"),
    Output("operator-layers-title", "children"),
    Output("operator-cats-title", "children"),
    Output("operator-trend-title", "children"),
    Output("operator-hot-title", "children"),
    Output("operator-card-title", "children"),
    Output("operator-feed-title", "children"),
    Output("operator-export", "children"),
    Output("operator-export", "title"),
    Output("operator-range", "start_date_placeholder_text"),
    Output("operator-range", "end_date_placeholder_text"),
    *[Output(f"operator-kpi-label-{k}", "children") for k in
      ("open", "overdue", "new_today", "closure_rate", "ontime_rate", "cameras_online")],
    Input("app-lang", "data"),
)  # fmt: skip
def render_labels(lang):
    """Return every static label of the page in the chosen language."""
    lang = lang or "zh"
    windows = [{"label": t(f"operator.window.{w}", lang), "value": w}
               for w in ("1h", "24h", "7d", "custom")]  # fmt: skip
    layers = [{"label": html.Span(t(f"operator.layer.{k}", lang), id=f"operator-layer-{k}"),
               "value": k} for k in LAYERS]  # fmt: skip
    modes = [{"label": t(f"operator.gridmode.{m}", lang), "value": m} for m in GRID_MODES]
    cats = [{"label": html.Span([html.Span(className="sw", style={"background": CAT_COLORS.get(c, "#ccc")}),
                                 name]), "value": c}
            for c, name in _category_names(lang).items()]  # fmt: skip
    titles = [t(f"operator.{k}", lang) for k in
              ("layers", "categories", "trend", "hotspots", "card", "feed")]  # fmt: skip
    kpi_labels = [t(f"operator.kpi.{k}", lang) for k in
                  ("open", "overdue", "new_today", "closure_rate", "ontime_rate",
                   "cameras_online")]  # fmt: skip
    return (windows, layers, modes, cats, *titles, t("operator.export", lang),
            t("operator.export.hint", lang), t("operator.range.start", lang),
            t("operator.range.end", lang), *kpi_labels)  # fmt: skip


@callback(
    Output("operator-legend-body", "children"),
    Input("app-lang", "data"),
    Input("operator-grid-mode", "value"),
    Input("operator-grids", "hideout"),
)
def render_legend(lang, mode, hideout):
    """Return the legend for the grid colouring, heat map, cameras and centers."""
    lang = lang or "zh"
    mx = (hideout or {}).get("max") or 1

    def row(color, label, square=False):
        cls = "sw sq" if square else "sw"
        return html.Div([html.Span(className=cls, style={"background": color}), label])

    if mode == "coverage":
        grid_rows = [row("rgb(200,50,60)", "0%", True), row("rgb(230,180,60)", "50%", True),
                     row("rgb(60,200,120)", "100%", True)]  # fmt: skip
    else:
        grid_rows = [row("#1b3550", "0", True), row("rgb(40,110,170)", "1", True)]
        if mx >= 4:
            mid = round((1 + mx) ** 0.5 - 1)  # the colour ramp is logarithmic
            grid_rows.append(row("rgb(255,160,50)", f"{mid}", True))
        if mx >= 2:
            grid_rows.append(row("rgb(230,40,50)", f"≥{mx}", True))
    cams = [row(c, t(f"camera.status.{s}", lang)) for s, c in
            (("online", "#2ecc71"), ("offline", "#e74c3c"), ("stale", "#f39c12"))]  # fmt: skip
    centers = [row(c, t(f"center.level.{lv}", lang)) for lv, c in
               (("city", "#ff4d6d"), ("county", "#ff9f1c"), ("township", "#ffd166"),
                ("village", "#06d6a0"))]  # fmt: skip
    return [
        html.Div(
            t(f"operator.legend.grids.{mode or 'incidents'}", lang), className="gs-legend-sub"
        ),
        html.Div(grid_rows, className="gs-legend-row"),
        html.Div(t("operator.legend.heat", lang), className="gs-legend-sub"),
        html.Div(className="gs-heat-ramp"),
        html.Div(t("operator.legend.cameras", lang), className="gs-legend-sub"),
        html.Div(cams, className="gs-legend-row"),
        html.Div(t("operator.legend.classes", lang), className="gs-legend-note"),
        html.Div(t("operator.legend.centers", lang), className="gs-legend-sub"),
        html.Div(centers, className="gs-legend-col"),
    ]


# -- filters -------------------------------------------------------------------------------------


@callback(
    Output("operator-map-wrap", "className"),
    Input("operator-layer-toggle", "value"),
)
def toggle_layers(visible):
    """Return the wrapper's classes: one ``hide-<layer>`` per unchecked layer (CSS hides panes)."""
    hidden = [f"hide-{k}" for k in LAYERS if k not in (visible or [])]
    return " ".join(["gs-map-wrap", *hidden])


@callback(
    Output("operator-range", "style"),
    Input("operator-window", "value"),
)
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


@callback(
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


@callback(
    Output("operator-cats", "value"),
    Input("operator-cats", "options"),
    State("operator-cats", "value"),
)
def default_categories(options, value):
    """Return every category checked when the options first arrive (no filter = all)."""
    if value:
        raise PreventUpdate
    return [o["value"] for o in options or []]


@callback(
    Output("operator-playback-label", "children"),
    Input("operator-filter", "data"),
    Input("app-lang", "data"),
)
def playback_label(fdict, lang):
    """Return the playback instant shown next to the slider ("live" at the right end)."""
    lang = lang or "zh"
    f = mapdata.parse_filter(fdict, request_scope())
    now = dt.datetime.now(dt.UTC)
    inst = f.instant(now)
    if inst is None:
        return t("operator.live", lang)
    return inst.astimezone(mapdata.CST).strftime("%m-%d %H:%M")


@callback(
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


@callback(
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


# -- drill-down and viewport ----------------------------------------------------------------------


@callback(
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
        return no_update, {"bounds": _display_bounds(b), "transition": "flyToBounds"}
    else:
        raise PreventUpdate
    if area is None:
        return None, {"bounds": city_bounds, "transition": "flyToBounds"}
    path = mapdata.area_path(db, area, request_scope())
    if not path:
        raise PreventUpdate
    return area, {"bounds": _display_bounds(path[-1]["bounds"]), "transition": "flyToBounds"}


@callback(
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


clientside_callback(
    ClientsideFunction(namespace="operator", function_name="saveView"),
    Output("operator-view", "data"),
    Input("operator-map", "center"),
    Input("operator-map", "zoom"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction(namespace="operator", function_name="restoreView"),
    Output("operator-map", "viewport", allow_duplicate=True),
    Input("operator-view-init", "n_intervals"),
    State("operator-view", "data"),
    State("operator-city-bounds", "data"),
    prevent_initial_call=True,
)


# -- live refresh ---------------------------------------------------------------------------------


def _slow_kpi_values(db, f) -> list[str]:
    k = mapdata.kpis(db, f)
    return [f"{k['overdue']:,}", _pct(k["closure_rate"]), _pct(k["ontime_rate"]),
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
    return _pct(online / total) if total else "—"


def _feed_item(p: dict) -> html.Div:
    when = dt.datetime.fromisoformat(p["t"]).astimezone(mapdata.CST).strftime("%H:%M:%S")
    return html.Div(
        [html.Span(className="sw", style={"background": CAT_COLORS.get(p["cat"], "#ccc")}),
         html.Span(when, className="gs-feed-time"), p["name"],
         html.Span(f"#{p['id']}", className="gs-feed-id")],
        className="gs-feed-item")  # fmt: skip


def _feed(db, f, lang: str) -> tuple[list, int]:
    """Return the latest-incident list (newest first) and how many items it holds."""
    feats = mapdata.new_incidents(db, 0, f, limit=FEED_SIZE, lang=lang)
    items = [_feed_item(feat["properties"]) for feat in reversed(feats)]
    if not items:
        return [html.Div(t("operator.feed.empty", lang), className="gs-muted")], 0
    return items, len(items)


def _feed_patch(new: list[dict], shown: int) -> tuple[Patch, int]:
    """Return a Patch putting ``new`` features (oldest first) on top of a feed of ``shown``."""
    feed = Patch()
    for feat in new[-FEED_SIZE:]:
        feed.prepend(_feed_item(feat["properties"]))
    total = shown + min(len(new), FEED_SIZE)
    for idx in range(total - 1, FEED_SIZE - 1, -1):
        del feed[idx]
    return feed, min(total, FEED_SIZE)


KPI_OUTPUTS = [Output("operator-kpi-open", "children"),
               Output("operator-kpi-new_today", "children")]  # fmt: skip
SLOW_KPIS = ("overdue", "closure_rate", "ontime_rate", "cameras_online")


class Refresh(NamedTuple):
    """Return-type of ``live_refresh``: one tick's outputs (``Patch`` or no_update each)."""

    grids: object
    live: object
    feed: object
    cursor: dict
    kpis: list
    cameras: object


def _bus_changes(bus, cursor: dict) -> tuple[list | None, dict]:
    """Return (events since the cursor's bus position, or None; the new bus position).

    None means the bus cannot vouch for what happened since the cursor: no bus, a bus not
    following every writer (Redis disconnected), a cursor from another process's local bus,
    or a gap (events lost). The caller then asks the database, which is always exact.
    """
    if bus is None:
        return None, {}
    here = {"bus": bus.last_id, "bep": bus.epoch, "bgen": bus.generation}
    mark = cursor.get("bus")
    if not bus.complete or cursor.get("bep") != bus.epoch or not is_event_id(mark):
        return None, here
    gen = cursor.get("bgen")
    batch = bus.read(mark, generation=gen if isinstance(gen, int) else None, limit=BUS_READ_LIMIT)
    if batch.gap or len(batch.events) >= BUS_READ_LIMIT:
        return None, here
    return batch.events, {"bus": batch.cursor, "bep": bus.epoch, "bgen": batch.generation}


def _camera_status_patch(events: list, scope) -> object:
    """Return a Patch of the camera layer's status overrides from ``scope``'s camera events."""
    cams = [e for e in events if e.kind == "camera.status" and "id" in e.data
            and scope.allows_camera(e.data.get("gb_id"), e.data.get("id"))]  # fmt: skip
    if not cams:
        return no_update
    patch = Patch()
    for e in cams:
        patch["st"][str(e.data["id"])] = str(e.data.get("status") or "unknown")
    return patch


def camera_hideout(db, scope) -> dict:
    """Return the camera layer's full status overrides of ``scope`` from the database."""
    statuses = mapdata.camera_statuses(db, scope)
    if not statuses:
        return {"base": None, "st": {}}
    values = list(statuses.values())
    base = max(set(values), key=values.count)
    return {"base": base, "st": {str(k): v for k, v in statuses.items() if v != base}}


def refresh_payload(
    fdict: dict | None, cursor: dict | None, trigger: str | None, lang: str, scope: Scope
):
    """Return (grid hideout, live layer, feed, cursor, KPI values): ``live_refresh`` without
    the camera-status output (for the benchmark and older tests)."""
    return tuple(live_refresh(fdict, cursor, trigger, lang, scope))[:5]


def live_refresh(
    fdict: dict | None, cursor: dict | None, trigger: str | None, lang: str, scope: Scope
) -> Refresh:
    """Return one refresh's outputs: grid counts, live markers, feed, cursor, KPIs, cameras.

    Everything is limited to ``scope`` (the viewer's districts and cameras).

    A plain function of the filter, the client's cursor, the worker's event bus and the
    database, so the benchmark and the tests call it without a browser. Full resync when
    the filter changed, on the first call and every ``RESYNC_TICKS`` ticks; otherwise only
    what changed since the cursor, as ``Patch`` objects (no_update when nothing changed).

    The bus decides whether to look: a tick whose bus shows no incident event since the
    cursor returns without a database query (but every ``DB_PROBE_TICKS``-th tick asks the
    database anyway); camera status changes patch the camera layer straight from the bus.
    When there are incident events, ``mapdata.changes_since`` (the workflow-event cursor in
    the database) stays the exact source of the counts, so a late, lost or duplicated bus
    event can delay an update but never make it wrong.
    """
    ctx_ = get_ctx()
    db = ctx_.db
    bus = ctx_.services.get("events")
    f = mapdata.parse_filter(fdict, scope)
    fkey = f.key()
    live = f.instant(dt.datetime.now(dt.UTC)) is None
    cursor = dict(cursor or {})
    full = cursor.get("fkey") != fkey or cursor.get("n", 0) >= RESYNC_TICKS
    events, bus_pos = _bus_changes(bus, cursor)  # before the database: nothing slips between
    if full:
        counts = mapdata.grid_counts(db, f)
        ev = mapdata.last_event_id(db)
        inc = mapdata.last_incident_id(db)
        hide = Patch()
        mx = max(counts.values(), default=1)
        hide["counts"] = {str(k): v for k, v in counts.items()}
        hide["max"] = mx
        fresh_live = trigger != "operator-tick" or cursor.get("fkey") != fkey
        live_out = {"type": "FeatureCollection", "features": []} if fresh_live else no_update
        new_cursor = {"fkey": fkey, "ev": ev, "inc": inc, "n": 0,
                      "live": 0 if fresh_live else cursor.get("live", 0),
                      "max": mx, **bus_pos}  # fmt: skip
        if events is not None and cursor.get("cams"):
            cams = _camera_status_patch(events, f.scope)  # the overlay is in step: events suffice
        else:
            cams = camera_hideout(
                db, f.scope
            )  # first tick, or the bus could not vouch: from the db
        new_cursor["cams"] = events is not None or (bus is not None and bus.complete)
        lc = mapdata.live_counts(db, f)
        new_cursor.update(open=lc["open"], today=lc["new_today"], day=lc["day"])
        feed, new_cursor["feed"] = _feed(db, f, lang)
        kpis = [f"{lc['open']:,}", f"{lc['new_today']:,}"]
        return Refresh(hide, live_out, feed, new_cursor, kpis, cams)
    today = dt.datetime.now(mapdata.CST).date().isoformat()
    cams = no_update
    if events is not None:
        cams = _camera_status_patch(events, f.scope)
        n = cursor.get("n", 0) + 1
        quiet = not any(e.kind.startswith("incident.") for e in events)
        if quiet and n % DB_PROBE_TICKS and cursor.get("day") == today:
            # nothing happened to any incident, as far as every writer's events tell
            return Refresh(no_update, no_update, no_update, {**cursor, **bus_pos, "n": n},
                           [no_update] * len(KPI_OUTPUTS), cams)  # fmt: skip
    else:
        cursor["cams"] = False  # camera events may have been missed: resend at the next resync
    changes = mapdata.changes_since(db, int(cursor.get("ev", 0)))
    if changes["overflow"] or cursor.get("day") != today:
        return live_refresh(fdict, {**cursor, "n": RESYNC_TICKS}, "operator-tick", lang, scope)
    if not changes["incidents"]:
        cursor["n"] = cursor.get("n", 0) + 1
        return Refresh(no_update, no_update, no_update, {**cursor, **bus_pos},
                       [no_update] * len(KPI_OUTPUTS), cams)  # fmt: skip
    hide = Patch()
    mx = cursor.get("max", 1)
    if live:
        counts = mapdata.grid_counts_changed(db, f, changes)
        for g, n in counts.items():
            hide["counts"][str(g)] = n
        if counts and max(counts.values()) > mx:
            mx = max(counts.values())
            hide["max"] = mx
        new = mapdata.new_incidents(db, int(cursor.get("inc", 0)), f, lang=lang)
    else:
        hide, new = no_update, []
    live_out = no_update
    n_live = cursor.get("live", 0)
    if new:
        if n_live + len(new) > LIVE_MAX:
            keep = new[-LIVE_MAX // 2 :]
            live_out = {"type": "FeatureCollection", "features": keep}
            n_live = len(keep)
        else:
            live_out = Patch()
            live_out["features"].extend(new)
            n_live += len(new)
    inc = max([cursor.get("inc", 0)] + [feat["id"] for feat in new])
    if not new:
        inc = max(inc, mapdata.last_incident_id(db)) if not live else inc
    new_cursor = {**cursor, **bus_pos, "ev": changes["cursor"], "inc": inc,
                  "n": cursor.get("n", 0) + 1, "live": n_live, "max": mx}  # fmt: skip
    feed = no_update
    if new and cursor.get("feed", 0) > 0:
        feed, new_cursor["feed"] = _feed_patch(new, cursor["feed"])
    elif new:
        feed, new_cursor["feed"] = _feed(db, f, lang)
    delta = mapdata.live_counts_delta(db, f, changes)
    new_cursor["open"] = cursor.get("open", 0) + delta["open"]
    new_cursor["today"] = cursor.get("today", 0) + delta["new_today"]
    kpis = [f"{new_cursor['open']:,}" if delta["open"] else no_update,
            f"{new_cursor['today']:,}" if delta["new_today"] else no_update]  # fmt: skip
    return Refresh(hide, live_out, feed, new_cursor, kpis, cams)


@callback(
    Output("operator-grids", "hideout"),
    Output("operator-live", "data"),
    Output("operator-feed", "children"),
    Output("operator-cursor", "data"),
    *KPI_OUTPUTS,
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


def trend_figure(tr: dict, names: dict[str, str], lang: str) -> go.Figure:
    """Return the stacked bar chart of incidents per time bucket and category group."""
    fig = go.Figure()
    x = [e[5:16].replace("T", " ") for e in tr["edges"]]
    for code, ys in tr["series"].items():
        fig.add_bar(x=x, y=ys, name=names.get(code, code), marker_color=CAT_COLORS.get(code))
    fig.update_layout(
        barmode="stack", margin={"l": 30, "r": 6, "t": 4, "b": 24}, height=190,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font={"color": "#c8d6e5", "size": 10,
              "family": "Noto Sans CJK SC, Microsoft YaHei, sans-serif"},
        legend={"orientation": "h", "y": -0.25, "font": {"size": 9}}, showlegend=False,
        xaxis={"showgrid": False, "nticks": 6}, yaxis={"gridcolor": "#24405f"},
        bargap=0.15,
    )  # fmt: skip
    if not tr["series"]:
        fig.add_annotation(text=t("operator.trend.empty", lang), showarrow=False,
                           font={"color": "#8aa4bf"})  # fmt: skip
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


@callback(
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
    """Return trend, hotspots, heat-map URL and the slower KPIs (every 30 s if changed).

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
        chart = dcc.Graph(id="operator-trend", figure=trend_figure(tr, _category_names(lang), lang),
                          config={"displayModeBar": False, "responsive": True},
                          style={"height": "190px"})  # fmt: skip
    hot = mapdata.top_hotspots(db, f)
    hot_items = [
        html.Button([html.Span(f"{i + 1}", className="gs-hot-rank"),
                     html.Span(h["name"], className="gs-hot-name"),
                     html.Span(f"{h['count']}", className="gs-hot-count")],
                    id={"type": "operator-hot", "grid": h["grid_id"]}, className="gs-hot-item",
                    n_clicks=0, title=h["code"])
        for i, h in enumerate(hot)
    ] or [html.Div(t("operator.hotspots.empty", lang), className="gs-muted")]  # fmt: skip
    return (chart, hot_items, _heat_url(fdict, ev), {"ev": ev, "key": key, "late": 1 if late else 0},
            *_slow_kpi_values(db, f))  # fmt: skip


@callback(
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
    empty = {"type": "FeatureCollection", "features": []}
    visible = visible or []
    if not bounds or zoom is None:
        raise PreventUpdate
    (s, w), (n, e) = bounds
    w, s = _unshift(w, s)
    e, n = _unshift(e, n)
    db = get_ctx().db
    scope = request_scope()
    pts = empty
    if zoom >= POINTS_MIN_ZOOM and "incidents" in visible:
        pts = mapdata.incident_points(db, mapdata.parse_filter(fdict, scope), (w, s, e, n))
    cns = empty
    if zoom >= CONES_MIN_ZOOM and "cameras" in visible:
        cns = mapdata.camera_cones(db, (w, s, e, n), scope)
    same = lambda a, b: (a or empty)["features"] == [] and b["features"] == []  # noqa: E731
    heat = 0.6 if zoom < CONES_MIN_ZOOM else 0.25  # zoomed in, points tell more than heat
    return (no_update if same(points, pts) else pts, no_update if same(cones, cns) else cns,
            heat)  # fmt: skip


# -- selection: grid card, camera card -------------------------------------------------------------


def _video_available() -> bool:
    return any(r.rule.startswith("/video/") for r in flask.current_app.url_map.iter_rules())


def _rows(pairs) -> html.Table:
    return html.Table(html.Tbody([html.Tr([html.Td(k), html.Td(v)]) for k, v in pairs]))


def grid_card_view(card: dict, lang: str) -> list:
    """Return the grid card's children (code, area chain, worker, open incidents, coverage)."""
    cov = card.get("coverage")
    workers = card.get("workers") or []
    worker = ", ".join(f"{w['name']} {w['phone']}" for w in workers
                       if w.get("kind") == "grid_worker") or "—"  # fmt: skip
    chain = " / ".join(c["name"] for c in (card.get("district"), card.get("street"),
                                           card.get("community")) if c)  # fmt: skip
    rows = [
        (t("operator.card.grid_code", lang), card["code"]),
        (t("operator.card.name", lang), card["name"]),
        (t("operator.card.area", lang), chain),
        (t("operator.card.worker", lang), worker),
        (t("operator.card.open", lang), str(card["counts"]["incidents_open"])),
        (t("operator.card.cameras", lang),
         f"{card['counts']['cameras_online']}/{card['counts']['cameras']}"),
        (t("operator.card.coverage", lang), "—" if cov is None else f"{100 * cov:.0f}%"),
    ]  # fmt: skip
    incs = [html.Li(f"#{p['id']} {p['name']} · P{p['prio']}") for p in card["open_incidents"]]
    return [html.Div(t("operator.card.grid", lang), className="gs-card-kind"), _rows(rows),
            html.Ul(incs, className="gs-card-list") if incs else None]  # fmt: skip


def camera_card_view(card: dict, lang: str, video: bool) -> list:
    """Return the camera card's children; the live redacted video when the route exists."""
    rows = [
        (t("operator.card.gb_id", lang), card["gb_id"]),
        (t("operator.card.name", lang), card["name"]),
        (t("operator.card.class", lang), t(f"camera.class.{card['cls']}", lang)),
        (t("operator.card.status", lang), t(f"camera.status.{card['status']}", lang)),
        (t("operator.card.ptz", lang), t(f"operator.ptz.{card['ptz_type']}", lang)),
        (t("operator.card.view", lang),
         f"{card['azimuth']:.0f}° / {card['fov']:.0f}° / {card['range_m']:.0f} m"),
        (t("operator.card.last_seen", lang), card.get("last_seen") or "—"),
        (t("operator.card.grid_code", lang), card.get("grid_code") or "—"),
    ]  # fmt: skip
    out = [html.Div(t("operator.card.camera", lang), className="gs-card-kind"), _rows(rows)]
    if video:
        out.append(html.Img(src=f"/video/{card['id']}.mjpg", className="gs-video",
                            id="operator-video", alt=t("operator.card.video", lang)))  # fmt: skip
    else:
        out.append(html.Div(t("operator.card.no_video", lang), className="gs-muted"))
    return out


@callback(
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
    lat, lon = click["latlng"]["lat"], click["latlng"]["lng"]
    lon, lat = _unshift(lon, lat)
    hit = mapdata.locate_click(get_ctx().db, lon, lat, zoom or 12, scope=request_scope(),
                               cameras="cameras" in (visible or []) and (zoom or 0) >= 15)  # fmt: skip
    if hit["camera"] is not None:
        return {"kind": "camera", "id": hit["camera"]}
    if hit["grid"] is not None:
        return {"kind": "grid", "id": hit["grid"]}
    return None


@callback(
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
            return camera_card_view(card, lang, _video_available()), hide
        card = mapdata.grid_card(db, sel["id"], lang, scope=request_scope())
    except NotFoundError:
        return html.Div(t("operator.card.gone", lang), className="gs-muted"), no_update
    hide["sel"] = sel["id"]
    return grid_card_view(card, lang), hide


@callback(
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


@callback(
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


@callback(
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
        (s, w), (n, e) = bounds
        w, s = _unshift(w, s)
        e, n = _unshift(e, n)
        q["bbox"] = ",".join(f"{v:.5f}" for v in (w, s, e, n))
    q["layers"] = ",".join(visible or [])
    q["mode"] = mode or "incidents"
    q["lang"] = lang or "zh"
    return "/export/situation.html?" + urlencode(q)
