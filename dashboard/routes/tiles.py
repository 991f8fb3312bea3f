"""Offline map imagery: base-map tiles from a local MBTiles file and the incident heat PNG.

Routes
------
``GET /tiles/<z>/<x>/<y>.png``  one tile of ``settings.mbtiles_path`` (XYZ numbering; MBTiles
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
import sqlite3
import threading
from pathlib import Path

import flask

from dashboard.context import AppContext
from dashboard.scoping import request_scope
from layers.services import mapdata

log = logging.getLogger(__name__)

MAP_ROLES = ("operator", "dispatcher", "privacy_officer", "admin")
HEAT_SHAPE = (320, 320)
HEAT_BANDWIDTH_M = 350.0


class MBTiles:
    """Return-type of ``open_mbtiles``: read-only access to one MBTiles file (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"mbtiles_path: {self.path} does not exist; set GRIDSIGHT_MBTILES_PATH to an "
                "MBTiles file or unset it to run without a base map"
            )
        self._local = threading.local()
        conn = self._conn()
        try:
            self.metadata = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"mbtiles_path: {self.path} is not an MBTiles file ({exc}); it needs the "
                "'tiles' and 'metadata' tables"
            ) from exc
        self.format = self.metadata.get("format", "png")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Return the tile image at XYZ (z, x, y), or None if the file has none."""
        if z < 0 or z > 30 or not (0 <= x < 2**z and 0 <= y < 2**z):
            return None
        tms_y = (2**z - 1) - y
        row = (
            self._conn()
            .execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, tms_y),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])


def map_filter_error(exc: Exception) -> tuple[flask.Response, int]:
    """Return the 400 JSON answer to a bad map filter: {"error", "field"}."""
    msg = str(exc)
    return flask.jsonify(error=msg, field=msg.split(":", 1)[0] if ":" in msg else "query"), 400


def _declare(server: flask.Flask, prefix: str) -> None:
    try:
        from dashboard.auth import declare_policy
    except ImportError:
        return
    declare_policy(server, prefix, MAP_ROLES)


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the tile and heat-map routes to ``server``."""
    tiles: MBTiles | None = None
    if ctx.settings.mbtiles_path:
        tiles = MBTiles(ctx.settings.mbtiles_path)
        log.info("serving base-map tiles from %s", ctx.settings.mbtiles_path)
    _declare(server, "/map/")  # /tiles/ is open to any signed-in user (dashboard.auth)

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
        raster = mapdata.density_grid(lon, lat, bounds, HEAT_SHAPE, HEAT_BANDWIDTH_M)
        resp = flask.Response(mapdata.density_png(raster), mimetype="image/png")
        resp.headers["Cache-Control"] = "private, max-age=300"
        return resp
