"""The operator page's constants and the helpers every part of it shares.

Map coordinates: the data is WGS-84 (EPSG:4326); with a GCJ-02 base map the browser draws
shifted coordinates, so bounds going to the map are shifted (``display_bounds``) and clicks
and viewports coming back are unshifted (``unshift``).
"""

from __future__ import annotations

import math
from urllib.parse import urlencode

from dashboard.context import get_ctx
from layers.services import mapdata

DEFAULT_BOUNDS = [[24.95, 102.60], [25.15, 102.85]]  # Kunming, used for an empty city
LAYERS = ("grids", "heat", "incidents", "cameras", "centers", "areas")
DEFAULT_LAYERS = ["grids", "heat", "incidents", "cameras", "centers", "areas"]
POINTS_MIN_ZOOM = 15  # incidents as points from this zoom on
CONES_MIN_ZOOM = 16  # camera view cones from this zoom on
TICK_MS = 1000  # a new incident shows within ~1 s
GRID_MODES = ("incidents", "coverage")
MAP_ROLES = ("operator", "dispatcher", "privacy_officer", "admin")
KPIS = ("open", "overdue", "new_today", "closure_rate", "ontime_rate", "cameras_online")
CAT_COLORS = {"DISPUTE": "#f78c6b", "SECURITY": "#ef476f", "SAFETY": "#ff4d4d",
              "ENV": "#06d6a0", "CITY": "#4cc9f0", "SPECIAL_GROUPS": "#b39ddb",
              "CAMPUS": "#ffd166", "EMERGENCY": "#ff0054", "SERVICE": "#90be6d"}  # fmt: skip
EMPTY_FC = {"type": "FeatureCollection", "features": []}


def shift_enabled() -> bool:
    """Return True if the base map is GCJ-02 (the map draws shifted coordinates)."""
    settings = get_ctx().settings
    return settings.web.basemap_crs == "gcj02" and bool(
        settings.web.basemap_url or settings.web.mbtiles_path
    )


def display_bounds(b: list[float] | None) -> list[list[float]]:
    """Return Leaflet [[south, west], [north, east]] for WGS-84 bounds, shifted if GCJ-02."""
    if not b:
        return DEFAULT_BOUNDS
    minx, miny, maxx, maxy = b
    if shift_enabled():
        from geo.crs import from_wgs84

        xs, ys = from_wgs84([minx, maxx], [miny, maxy], "gcj02")
        minx, maxx, miny, maxy = float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1])
    return [[miny, minx], [maxy, maxx]]


def unshift(lon: float, lat: float) -> tuple[float, float]:
    """Return the WGS-84 point of a map click (inverse of the display shift)."""
    if not shift_enabled():
        return lon, lat
    from geo.crs import gcj02_to_wgs84

    x, y = gcj02_to_wgs84(lon, lat)
    return float(x), float(y)


def view_bbox(bounds: list[list[float]]) -> tuple[float, float, float, float]:
    """Return the WGS-84 (minx, miny, maxx, maxy) of the map's Leaflet bounds."""
    (s, w), (n, e) = bounds
    w, s = unshift(w, s)
    e, n = unshift(e, n)
    return w, s, e, n


def fit_zoom(bounds: list[list[float]], width_px: int = 1500, height_px: int = 950) -> float:
    """Return the Web-Mercator zoom (half steps) at which ``bounds`` fills a big-screen map."""
    (s, w), (n, e) = bounds
    dx = max(e - w, 1e-6) / 360.0
    y = lambda lat: math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))  # noqa: E731
    dy = max(y(n) - y(s), 1e-6) / (2 * math.pi)
    z = math.log2(min(width_px / (256 * dx), height_px / (256 * dy)))
    return max(3.0, min(18.0, math.floor(z * 2) / 2))


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


def heat_url(fdict: dict | None, version: int) -> str:
    """Return the heat-map PNG URL of a filter; ``version`` changes it when data changes."""
    return "/map/density.png?" + urlencode({**filter_query(fdict), "v": version})


def pct(v: float | None) -> str:
    """Return a 0..1 fraction as "12.3%" ("—" for None)."""
    return "—" if v is None else f"{100 * v:.1f}%"


def category_names(lang: str) -> dict[str, str]:
    """Return {category code: name in ``lang``} of the newest dictionary."""
    cats = mapdata.categories(get_ctx().db)
    key = "name_en" if lang == "en" else "name_zh"
    return {c["code"]: c[key] for c in cats}
