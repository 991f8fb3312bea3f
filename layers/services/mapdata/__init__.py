"""Map queries for the operator's situation map: filtered incidents, per-grid counts, KPIs.

Every function takes an open SQLAlchemy ``Session`` (or a ``Database`` where it says so) and
returns plain, JSON-ready data; pages and routes call these and never write SQL themselves.
Positions are WGS-84 (EPSG:4326); shifting to GCJ-02 happens at the display boundary.

The central object is ``MapFilter``: the time window (with an optional playback instant), the
category groups and the administrative area the operator drilled down to. "Open at T" means
created in the window no later than T and not closed by T; for the live view (no playback
instant) it is the incident's current status.

One module per part of the map: ``filters`` (``MapFilter`` and its SQL conditions),
``live`` (per-grid counts, the event cursor, incident points), ``kpis`` (side panel,
trend), ``hotspots`` (the busiest grids with their Gi* z), ``cards`` (areas, grid and camera
cards, cones, clicks) and ``coverage`` (camera coverage per grid). The heat-map raster is
``geo.density.density_image``.
"""

from layers.services.mapdata.cards import (
    area_labels,
    area_path,
    camera_card,
    camera_cones,
    camera_statuses,
    categories,
    city_bounds,
    grid_bounds,
    grid_card,
    locate_click,
)
from layers.services.mapdata.coverage import grid_coverage
from layers.services.mapdata.filters import (
    CST,
    WINDOWS,
    MapFilter,
    MapFilterError,
    area_grid_ids_query,
    category_group,
    incident_conditions,
    parse_filter,
)
from layers.services.mapdata.hotspots import top_hotspots
from layers.services.mapdata.kpis import kpis, trend
from layers.services.mapdata.live import (
    GAP_GRACE_S,
    changes_since,
    grid_counts,
    grid_counts_changed,
    incident_lonlat,
    incident_points,
    last_event_id,
    last_incident_id,
    live_counts,
    live_counts_delta,
    new_incidents,
)

__all__ = [
    "CST",
    "GAP_GRACE_S",
    "WINDOWS",
    "MapFilter",
    "MapFilterError",
    "area_grid_ids_query",
    "area_labels",
    "area_path",
    "camera_card",
    "camera_cones",
    "camera_statuses",
    "categories",
    "category_group",
    "changes_since",
    "city_bounds",
    "grid_bounds",
    "grid_card",
    "grid_counts",
    "grid_counts_changed",
    "grid_coverage",
    "incident_conditions",
    "incident_lonlat",
    "incident_points",
    "kpis",
    "last_event_id",
    "last_incident_id",
    "live_counts",
    "live_counts_delta",
    "locate_click",
    "new_incidents",
    "parse_filter",
    "top_hotspots",
    "trend",
]
