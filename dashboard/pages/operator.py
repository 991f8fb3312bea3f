"""Operator situation map (home page): the live map a command center keeps on its big screen.

Static layers (grid polygons, areas, cameras, centers) load once from the cached
``/layers/<layer>.geojson`` route; every refresh afterwards sends counts and new features
only (Dash ``Patch`` on the grids' ``hideout`` and on the live-incident layer), so the
viewport, zoom and the browser's parsed geometry survive. Each layer draws into its own pane
(``dashboard.operator.panes``) and is shown or hidden with a CSS class on the map wrapper.
Clicks are resolved on the server (``mapdata.locate_click``): the camera within a few
pixels, else the grid under the point. The parts live in ``dashboard/operator``.
"""

from __future__ import annotations

import dash
from dash import html

from dashboard.auth import require_roles
from dashboard.context import get_ctx
from dashboard.operator import callbacks
from dashboard.operator import layout as page_layout
from dashboard.operator.common import MAP_ROLES, display_bounds, shift_enabled
from layers.services import mapdata

dash.register_page(__name__, path="/", name="operator", title="GridSight")
callbacks.register()


@require_roles(*MAP_ROLES)
def layout(**_query) -> html.Div:
    """Return the operator page; city extent read per request, data loaded by callbacks."""
    db = get_ctx().db
    bounds = display_bounds(mapdata.city_bounds(db))
    return page_layout.page(bounds, shift_enabled(), mapdata.last_event_id(db))
