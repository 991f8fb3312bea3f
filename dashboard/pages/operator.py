"""Operator situation map (home page): grids, governance centers, cameras and live KPIs."""

from __future__ import annotations

import dash
import dash_leaflet as dl
from dash import Input, Output, callback, dcc, html

from dashboard.context import get_ctx
from dashboard.i18n import t
from layers.services import incidents as incident_service

dash.register_page(__name__, path="/", name="operator", title="GridSight")

CITY_CENTER = (25.04, 102.71)


def layout(**_query) -> html.Div:
    """Return the operator page; data is loaded per request by the callbacks below."""
    return html.Div(
        className="gs-page",
        children=[
            html.Div(
                className="gs-map-wrap",
                children=[
                    dl.Map(
                        id="operator-map",
                        center=CITY_CENTER,
                        zoom=11,
                        preferCanvas=True,
                        style={"height": "100%", "width": "100%"},
                        children=[
                            dl.LayersControl(
                                [
                                    dl.Overlay(
                                        dl.GeoJSON(
                                            id="operator-grids",
                                            url="/layers/grids.geojson",
                                            style={"variable": "gridsight.gridStyle"},
                                            hideout={"counts": {}, "max": 1},
                                        ),
                                        name="grids",
                                        checked=True,
                                    ),
                                    dl.Overlay(
                                        dl.GeoJSON(
                                            id="operator-districts",
                                            url="/layers/districts.geojson",
                                            style={"variable": "gridsight.areaStyle"},
                                        ),
                                        name="districts",
                                        checked=True,
                                    ),
                                    dl.Overlay(
                                        dl.GeoJSON(
                                            id="operator-cameras",
                                            url="/layers/cameras.geojson",
                                            cluster=True,
                                            zoomToBoundsOnClick=True,
                                            superClusterOptions={"radius": 60, "maxZoom": 15},
                                            pointToLayer={"variable": "gridsight.cameraPoint"},
                                        ),
                                        name="cameras",
                                        checked=True,
                                    ),
                                    dl.Overlay(
                                        dl.GeoJSON(
                                            id="operator-centers",
                                            url="/layers/centers.geojson",
                                            pointToLayer={"variable": "gridsight.centerPoint"},
                                        ),
                                        name="centers",
                                        checked=True,
                                    ),
                                ],
                                id="operator-layers",
                            ),
                            dl.ScaleControl(position="bottomright", imperial=False),
                        ],
                    ),
                    html.Div(id="operator-legend", className="gs-legend"),
                ],
            ),
            html.Aside(
                className="gs-side",
                children=[
                    html.Div(id="operator-kpis", className="gs-kpis"),
                    dcc.Interval(id="operator-tick", interval=2000),
                ],
            ),
        ],
    )


def kpi_tiles(counts: dict[str, int], lang: str) -> list:
    """Return the KPI tiles for the side panel."""
    tiles = [("kpi.incidents_open", counts.get("open", 0), ""),
             ("kpi.incidents_today", counts.get("new_today", 0), "")]  # fmt: skip
    return [
        html.Div([html.Div(t(k, lang), className="gs-kpi-label"),
                  html.Div(f"{v:,}", className=f"gs-kpi-value {cls}")], className="gs-kpi")
        for k, v, cls in tiles
    ]  # fmt: skip


@callback(
    Output("operator-kpis", "children"),
    Output("operator-grids", "hideout"),
    Input("operator-tick", "n_intervals"),
    Input("app-lang", "data"),
)
def refresh(_n, lang):
    """Return KPI tiles and per-grid open counts (counts only; geometry is cached)."""
    ctx = get_ctx()
    with ctx.db.session() as s:
        counts = incident_service.summary(s)
        by_grid = incident_service.open_counts_by_grid(s)
    hideout = {"counts": by_grid, "max": max(by_grid.values(), default=1)}
    return kpi_tiles(counts, lang or "zh"), hideout
