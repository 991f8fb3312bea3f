"""``/layers/<layer>.geojson``: the static map layers, served once and cached by the browser."""

from __future__ import annotations

import gzip
import threading

import flask

from dashboard.context import AppContext
from layers.services.geojson import (
    UnknownLayerError,
    feature_collection_bytes,
    layer_version,
)


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the GeoJSON layer route to ``server``; payloads are cached per layer version."""
    cache: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()

    @server.get("/layers/<layer>.geojson")
    def layer_geojson(layer: str):
        try:
            version = layer_version(ctx.db, layer)
        except UnknownLayerError:
            version = None
        if version is None:
            return flask.jsonify(error=f"unknown layer {layer!r}"), 404
        etag = f'"{version}"'
        if flask.request.headers.get("If-None-Match") == etag:
            return flask.Response(status=304, headers={"ETag": etag})
        key = (layer, version)
        with lock:
            body = cache.get(key)
        if body is None:
            try:
                body = feature_collection_bytes(ctx.db, layer)
            except UnknownLayerError as exc:
                return flask.jsonify(error=str(exc)), 404
            with lock:
                for k in [k for k in cache if k[0] == layer]:
                    del cache[k]
                cache[key] = body
        resp = flask.Response(body, mimetype="application/geo+json")
        if "gzip" in flask.request.headers.get("Accept-Encoding", ""):
            gz_key = (layer, version, "gzip")
            with lock:
                packed = cache.get(gz_key)
            if packed is None:
                # coordinates compress ~4-5x: a 3 MB camera layer crosses a slow intranet
                # link in a fraction of the time
                packed = gzip.compress(body, compresslevel=6)
                with lock:
                    cache[gz_key] = packed
            resp = flask.Response(packed, mimetype="application/geo+json")
            resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
        resp.headers["ETag"] = etag
        resp.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
        return resp
