"""The operator page's skeleton: stores and timers, the map with its toolbar and legend, the
side panel. Labels and data arrive through callbacks (``dashboard.operator.callbacks``)."""

from __future__ import annotations

from dash import dcc, html

from dashboard.operator.common import DEFAULT_LAYERS, KPIS, TICK_MS
from dashboard.operator.panes import map_component


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


KPI_CLASSES = {"overdue": "bad"}


def _side() -> html.Aside:
    return html.Aside(
        className="gs-side",
        children=[
            html.Div(
                className="gs-kpis",
                children=[
                    html.Div(
                        [
                            html.Div(id=f"operator-kpi-label-{k}", className="gs-kpi-label"),
                            html.Div(
                                "—",
                                id=f"operator-kpi-{k}",
                                className=f"gs-kpi-value {KPI_CLASSES.get(k, '')}",
                            ),
                        ],
                        className="gs-kpi",
                    )
                    for k in KPIS
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


def page(bounds: list[list[float]], shift: bool, heat_version: int) -> html.Div:
    """Return the operator page for the city's Leaflet ``bounds`` (already shifted if GCJ-02)."""
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
                children=[map_component(bounds, shift, heat_version), _toolbar(), _layer_panel()],
            ),
            _side(),
        ],
    )
