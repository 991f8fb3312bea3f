"""Offline map imagery: base-map tiles from a local MBTiles file and the incident heat PNG.

Routes
------
``GET /tiles/<z>/<x>/<y>.png``  one tile of ``settings.web.mbtiles_path`` (XYZ numbering; MBTiles
                                stores TMS rows, so y is flipped). 404 when the file has no
                                such tile (Leaflet shows the background), 404 + JSON when no
                                MBTiles file is configured.
``GET /map/density.png``        the incident kernel-density raster for a map filter (query:
                                window, start, end, playback, categories, area_id), as an
                                RGBA PNG covering the city's extent (``mapdata.city_bounds``).
                                A bad parameter gives 400 with the field and the fix.
"""

from __future__ import annotations

import logging

import flask

from dashboard.components.heatmap import density_png
from dashboard.context import AppContext
from dashboard.policy import declare_policy
from dashboard.scoping import request_scope
from geo.density import density_image
from layers.mbtiles import MBTiles
from layers.services import mapdata

log = logging.getLogger(__name__)

MAP_ROLES = ("operator", "dispatcher", "privacy_officer", "admin")
HEAT_SHAPE = (320, 320)
HEAT_BANDWIDTH_M = 350.0


def map_filter_error(exc: Exception) -> tuple[flask.Response, int]:
    """Return the 400 JSON answer to a bad map filter: {"error", "field"}."""
    msg = str(exc)
    return flask.jsonify(error=msg, field=msg.split(":", 1)[0] if ":" in msg else "query"), 400


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the tile and heat-map routes to ``server``."""
    tiles: MBTiles | None = None
    if ctx.settings.web.mbtiles_path:
        tiles = MBTiles(ctx.settings.web.mbtiles_path)
        log.info("serving base-map tiles from %s", ctx.settings.web.mbtiles_path)
    # /tiles/ is open to any signed-in user (the access matrix in dashboard.policy)
    declare_policy(server, "/map/", MAP_ROLES)

    @server.get("/tiles/<int:z>/<int:x>/<int:y>.<ext>")
    def tile(z: int, x: int, y: int, ext: str):
        if tiles is None:
            return flask.jsonify(
                error="no base map configured; set GRIDSIGHT_MBTILES_PATH to an MBTiles file"
            ), 404
        data = tiles.tile(z, x, y)
        if data is None:
            return flask.Response(status=404)
        mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                "webp": "image/webp"}.get(tiles.format, "application/octet-stream")  # fmt: skip
        resp = flask.Response(data, mimetype=mime)
        resp.headers["Cache-Control"] = "private, max-age=86400"
        return resp

    @server.get("/map/density.png")
    def density():
        args = flask.request.args
        bounds = mapdata.city_bounds(ctx.db)
        if bounds is None:
            return flask.jsonify(error="the city has no grids yet; seed or import a city"), 404
        try:
            f = mapdata.parse_filter(
                {k: args.get(k) for k in ("window", "start", "end", "playback", "categories",
                                          "area_id") if args.get(k) not in (None, "")},
                request_scope(),
            )  # fmt: skip
            lon, lat = mapdata.incident_lonlat(ctx.db, f)
        except mapdata.MapFilterError as exc:
            return map_filter_error(exc)
        raster = density_image(lon, lat, bounds, HEAT_SHAPE, HEAT_BANDWIDTH_M)
        resp = flask.Response(density_png(raster), mimetype="image/png")
        resp.headers["Cache-Control"] = "private, max-age=300"
        return resp
