"""The operator map as a table: one pane per layer group, in drawing order, and its layers.

Each layer draws into its own Leaflet pane (``gs-<pane>``, z-index below), so the legend's
layer switch only toggles a CSS class on the map wrapper (``hide-<pane>``) and the browser
keeps every parsed geometry. Static layers load once from the cached
``/layers/<layer>.geojson`` route; the live ones start empty and are filled by callbacks.
Styles and point markers are functions of ``assets/gridsight_map.js`` (``gridsight.*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dash_leaflet as dl

from dashboard.context import get_ctx
from dashboard.operator.common import EMPTY_FC, fit_zoom, heat_url


def js(name: str) -> dict:
    """Return a reference to the browser function ``gridsight.<name>``."""
    return {"variable": f"gridsight.{name}"}


@dataclass(frozen=True)
class Layer:
    """One GeoJSON layer of a pane: its component id and its dash-leaflet properties."""

    id: str
    props: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Pane:
    """A Leaflet pane: its name (``gs-<name>``, ``hide-<name>``), z-index and layers."""

    name: str
    z: int
    layers: tuple[Layer, ...] = ()


STATIC = {"interactive": False}
PANES: tuple[Pane, ...] = (
    Pane("grids", 402, (
        Layer("operator-grids", {"url": "/layers/grids.geojson", **STATIC,
                                 "style": js("gridStyle"),
                                 "hideout": {"mode": "incidents", "counts": {}, "max": 1,
                                             "cov": {}, "sel": None}}),
    )),
    Pane("heat", 405),  # the heat-map image (``heat_overlay``)
    Pane("areas", 410, (
        Layer("operator-districts", {"url": "/layers/districts.geojson", **STATIC,
                                     "hideout": {"sel": None}, "style": js("districtStyle")}),
        Layer("operator-streets", {"url": "/layers/streets.geojson", **STATIC,
                                   "hideout": {"parent": None}, "filter": js("byParent"),
                                   "style": js("subAreaStyle")}),
        Layer("operator-communities", {"url": "/layers/communities.geojson", **STATIC,
                                       "hideout": {"parent": None}, "filter": js("byParent"),
                                       "style": js("subAreaStyle")}),
    )),
    Pane("cones", 415, (
        Layer("operator-cones", {"data": EMPTY_FC, **STATIC, "style": js("coneStyle")}),
    )),
    Pane("points", 420, (
        Layer("operator-points", {"data": EMPTY_FC, **STATIC,
                                  "pointToLayer": js("incidentPoint")}),
    )),
    Pane("cameras", 430, (
        # live status: "base" for every camera not in "st" {id: status}
        Layer("operator-cameras", {"url": "/layers/cameras.geojson", "cluster": True,
                                   "zoomToBoundsOnClick": True, **STATIC,
                                   "superClusterOptions": {"radius": 60, "maxZoom": 15},
                                   "hideout": {"base": None, "st": {}},
                                   "pointToLayer": js("cameraPoint"),
                                   "clusterToLayer": js("cameraCluster")}),
    )),
    Pane("centers", 440, (
        Layer("operator-centers", {"url": "/layers/centers.geojson", **STATIC,
                                   "pointToLayer": js("centerPoint")}),
    )),
    Pane("live", 450, (
        Layer("operator-live", {"data": EMPTY_FC, **STATIC, "pointToLayer": js("liveMarker")}),
    )),
    Pane("labels", 460, (  # clickable: the drill-down
        Layer("operator-labels", {"data": EMPTY_FC, "pointToLayer": js("areaLabel")}),
    )),
)  # fmt: skip


def heat_overlay(bounds: list[list[float]], heat_version: int) -> dl.ImageOverlay:
    """Return the heat-map image over the city's ``bounds`` (Leaflet order)."""
    return dl.ImageOverlay(id="operator-heat", url=heat_url(None, heat_version), bounds=bounds,
                           opacity=0.8, pane="gs-heat", interactive=False)  # fmt: skip


def _basemap() -> list:
    settings = get_ctx().settings
    if settings.web.mbtiles_path:
        return [dl.TileLayer(id="operator-basemap", url="/tiles/{z}/{x}/{y}.png", maxZoom=19,
                             maxNativeZoom=18, attribution="")]  # fmt: skip
    if settings.web.basemap_url:
        return [dl.TileLayer(id="operator-basemap", url=settings.web.basemap_url, maxZoom=19,
                             attribution="")]  # fmt: skip
    return []


def _pane(pane: Pane, coords: dict, heat: dl.ImageOverlay) -> dl.Pane:
    children = [dl.GeoJSON(id=layer.id, pane=f"gs-{pane.name}", **layer.props, **coords)
                for layer in pane.layers]  # fmt: skip
    if pane.name == "heat":
        children = [heat]
    return dl.Pane(name=f"gs-{pane.name}", style={"zIndex": pane.z}, children=children)


def map_component(bounds: list[list[float]], shift: bool, heat_version: int = 0) -> dl.Map:
    """Return the operator map fitted to ``bounds``, with every pane of ``PANES``.

    ``shift``: the base map is GCJ-02, so GeoJSON coordinates are shifted in the browser.
    """
    coords = {"coordsToLatLng": js("gcjLatLng")} if shift else {}
    (s, w), (n, e) = bounds
    heat = heat_overlay(bounds, heat_version)
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
            *[_pane(p, coords, heat) for p in PANES],
            dl.ScaleControl(position="bottomright", imperial=False),
        ],
    )
