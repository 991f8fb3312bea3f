"""``/layers/<layer>.geojson``: the static map layers, served once and cached by the browser."""

from __future__ import annotations

import gzip
import hashlib
import threading

import flask

from dashboard.context import AppContext
from dashboard.scoping import request_scope
from layers.services.geojson import (
    UnknownLayerError,
    feature_collection_bytes,
    layer_version,
)

MAX_CACHED = 64


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
        scope = request_scope()
        etag = f'"{version}-{hashlib.sha1(scope.key().encode()).hexdigest()[:8]}"'
        if flask.request.headers.get("If-None-Match") == etag:
            return flask.Response(status=304, headers={"ETag": etag})
        key = (layer, version, scope.key())
        with lock:
            body = cache.get(key)
        if body is None:
            try:
                body = feature_collection_bytes(ctx.db, layer, scope)
            except UnknownLayerError as exc:
                return flask.jsonify(error=str(exc)), 404
            with lock:
                for k in [k for k in cache if k[0] == layer and k[1] != version]:
                    del cache[k]
                while len(cache) > MAX_CACHED:  # one entry per layer and scope in use
                    del cache[next(iter(cache))]
                cache[key] = body
        resp = flask.Response(body, mimetype="application/geo+json")
        if "gzip" in flask.request.headers.get("Accept-Encoding", ""):
            gz_key = (layer, version, scope.key(), "gzip")
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
