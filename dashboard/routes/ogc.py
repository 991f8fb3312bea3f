"""Read-only OGC API – Features (Part 1: Core, GeoJSON) for every GridSight layer at ``/ogc``.

QGIS and GDAL's OAPIF driver load the layers from here. Routes: landing page ``/ogc``,
``/ogc/conformance``, ``/ogc/api`` (OpenAPI), ``/ogc/collections``,
``/ogc/collections/<layer>``, ``/ogc/collections/<layer>/items`` (``bbox``, ``limit``,
``offset``; ``next``/``prev`` links, ``numberMatched``/``numberReturned``) and
``/ogc/collections/<layer>/items/<id>``. Coordinates are CRS84 (WGS-84 lon/lat). Data comes
from the layer read services (``read_gdf(db, bbox=...)``); camera stream URLs, reporter
details and responder phone numbers never appear (phones are masked by the service).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import flask

from dashboard.context import AppContext
from dashboard.policy import declare_policy
from dashboard.scoping import request_scope
from layers.db import Database
from layers.services import ServiceError, to_geojson
from layers.services.published import AREA_LEVELS, incident_features, layer_extent
from layers.services.scope import Scope
from layers.services.transaction import QueryError, run

log = logging.getLogger(__name__)

PREFIX = "/ogc"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"
OGC_ROLES = {"operator", "dispatcher", "admin", "gis"}


class OgcError(Exception):
    """An OGC API exception answered as JSON {code, description} with an HTTP status."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass(frozen=True)
class Collection:
    """One published layer: how to read it as features (its extent: ``published.layer_extent``)."""

    name: str
    title: str
    description: str
    features: Callable[[Database, tuple | None, Scope], list[dict]]


def _from_gdf(gdf, drop: tuple[str, ...] = ()) -> list[dict]:
    gdf = gdf.drop(columns=[c for c in drop if c in gdf.columns])
    fc = to_geojson(gdf)
    for f in fc["features"]:
        f["id"] = f["properties"]["id"]
    return fc["features"]


def _areas(level: str):
    def read(db: Database, bbox, scope: Scope):
        from layers.services import areas

        return _from_gdf(areas.read_gdf(db, scope=scope, level=level, bbox=bbox))

    return read


def _grids(db, bbox, scope: Scope):
    from layers.services import grids

    return _from_gdf(grids.read_gdf(db, scope=scope, bbox=bbox))


def _centers(db, bbox, scope: Scope):
    from layers.services import centers

    return _from_gdf(centers.read_gdf(db, scope=scope, bbox=bbox))


def _cameras(db, bbox, scope: Scope):
    from layers.services import cameras

    return _from_gdf(cameras.read_gdf(db, scope=scope, bbox=bbox), drop=("stream_url",))


def _responders(db, bbox, scope: Scope):
    from layers.services import responders

    return _from_gdf(responders.read_gdf(db, scope=scope, bbox=bbox))


def _incidents(db, bbox, scope: Scope):
    return run(db, incident_features, scope=scope, bbox=bbox)


COLLECTIONS: dict[str, Collection] = {
    c.name: c
    for c in (
        Collection("districts", "区县 Districts", "District/county boundaries (GB/T 2260 code)",
                   _areas("district")),
        Collection("streets", "街道 Streets", "Street/township boundaries", _areas("street")),
        Collection("communities", "社区 Communities", "Community/village boundaries",
                   _areas("community")),
        Collection("grids", "网格 Grids", "Responsibility grids (14-digit unit-grid code)",
                   _grids),
        Collection("centers", "综治中心 Centers", "Comprehensive governance centers", _centers),
        Collection("cameras", "摄像机 Cameras", "Public-video cameras (GB/T 28181 ID, viewshed)",
                   _cameras),
        Collection("responders", "处置力量 Responders", "Grid workers and center staff",
                   _responders),
        Collection("incidents", "事件 Incidents", "Reported incidents (no reporter details)",
                   _incidents),
    )
}  # fmt: skip


# the other layers carry what no stamp follows (a camera's last frame time, a responder's
# availability, incidents): always read fresh
CACHED_LAYERS = {"districts", "streets", "communities", "grids", "centers"}
CACHE_ENTRIES = 32


def cached_features(
    ctx: AppContext, col: Collection, bbox: tuple | None, scope: Scope
) -> list[dict]:
    """Return the collection's features in ``scope`` for ``bbox``, cached for static layers.

    GIS clients page through a layer with many ``offset`` requests; the static layers (areas,
    grids, centers) are read once per (version, bbox, scope) instead of once per page. The
    cache lives in the app context (per app, bounded), never in module state.
    """
    if col.name not in CACHED_LAYERS:
        return col.features(ctx.db, bbox, scope)
    from layers.services.geojson import layer_version

    version = layer_version(ctx.db, "districts" if col.name in AREA_LEVELS else col.name)
    cache: OrderedDict = ctx.ogc_cache
    lock: threading.Lock = ctx.ogc_cache_lock
    key = (col.name, version, bbox, scope.key())
    with lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    feats = col.features(ctx.db, bbox, scope)
    with lock:
        cache[key] = feats
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
    return feats


def _url(endpoint: str, **params) -> str:
    return flask.url_for(endpoint, _external=True, **params)


def _json(doc: dict, mimetype: str = "application/json") -> flask.Response:
    resp = flask.jsonify(doc)
    resp.mimetype = mimetype
    return resp


def _check_params(allowed: set[str]) -> None:
    unknown = sorted(set(flask.request.args) - allowed)
    if unknown:
        raise OgcError(400, "InvalidParameterValue",
                       f"unknown query parameter {unknown[0]!r}; use {', '.join(sorted(allowed))}")  # fmt: skip
    f = flask.request.args.get("f")
    if f not in (None, "", "json", "geojson", "application/json", "application/geo+json"):
        raise OgcError(400, "InvalidParameterValue", "f: only json is offered")


def _bbox(value: str | None) -> tuple | None:
    if not value:
        return None
    try:
        nums = [float(v) for v in value.split(",")]
    except ValueError:
        nums = []
    if len(nums) == 6:  # minx,miny,minz,maxx,maxy,maxz: drop heights
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if len(nums) != 4 or not all(math.isfinite(v) for v in nums):
        raise OgcError(400, "InvalidParameterValue",
                       "bbox: give minLon,minLat,maxLon,maxLat in CRS84 degrees")  # fmt: skip
    if nums[1] > nums[3]:
        raise OgcError(400, "InvalidParameterValue", "bbox: minLat > maxLat")
    if nums[0] > nums[2]:  # crosses the antimeridian: nothing of ours lies there
        raise OgcError(400, "InvalidParameterValue", "bbox: minLon > maxLon (antimeridian) "
                       "is not supported; split the box")  # fmt: skip
    return tuple(nums)


def _int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except ValueError:
        raise OgcError(
            400, "InvalidParameterValue", f"{name}: {value!r} is not an integer"
        ) from None
    if n < lo:
        raise OgcError(400, "InvalidParameterValue", f"{name}: must be >= {lo}")
    return min(n, hi)


def _collection_doc(db: Database, col: Collection) -> dict:
    box = run(db, layer_extent, col.name)
    doc = {
        "id": col.name, "title": col.title, "description": col.description,
        "itemType": "feature", "crs": [CRS84], "storageCrs": CRS84,
        "links": [
            {"href": _url("ogc.collection", name=col.name), "rel": "self",
             "type": "application/json", "title": col.title},
            {"href": _url("ogc.items", name=col.name), "rel": "items", "type": GEOJSON,
             "title": col.title},
        ],
    }  # fmt: skip
    if box:
        doc["extent"] = {"spatial": {"bbox": [box], "crs": CRS84}}
    return doc


def openapi_document() -> dict:
    """Return a small OpenAPI 3.0 description of the OGC API endpoints."""
    p = {"name": "collectionId", "in": "path", "required": True,
         "schema": {"type": "string", "enum": list(COLLECTIONS)}}  # fmt: skip
    ok = {"200": {"description": "OK"}, "400": {"description": "bad parameter"},
          "404": {"description": "not found"}}  # fmt: skip
    q = [{"name": n, "in": "query", "required": False, "schema": s} for n, s in (
        ("bbox", {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6}),
        ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                   "default": DEFAULT_LIMIT}),
        ("offset", {"type": "integer", "minimum": 0}))]  # fmt: skip
    for item in q:
        if item["name"] == "bbox":
            item.update(style="form", explode=False)
    return {
        "openapi": "3.0.3",
        "info": {"title": "GridSight OGC API – Features", "version": "1.0.0"},
        "paths": {
            "/ogc": {"get": {"operationId": "landing", "responses": ok}},
            "/ogc/conformance": {"get": {"operationId": "conformance", "responses": ok}},
            "/ogc/collections": {"get": {"operationId": "collections", "responses": ok}},
            "/ogc/collections/{collectionId}": {"get": {"operationId": "collection",
                                                        "parameters": [p], "responses": ok}},
            "/ogc/collections/{collectionId}/items": {"get": {"operationId": "items",
                                                              "parameters": [p, *q],
                                                              "responses": ok}},
            "/ogc/collections/{collectionId}/items/{featureId}": {"get": {
                "operationId": "item", "responses": ok, "parameters": [p, {
                    "name": "featureId", "in": "path", "required": True,
                    "schema": {"type": "string"}}]}},
        },
    }  # fmt: skip


def register(server: flask.Flask, ctx: AppContext) -> None:
    """Add the read-only OGC API – Features routes under ``/ogc``."""
    bp = flask.Blueprint("ogc", __name__, url_prefix=PREFIX)

    @bp.errorhandler(OgcError)
    def _ogc(exc: OgcError):
        resp = flask.jsonify({"code": exc.code, "description": exc.description})
        resp.status_code = exc.status
        return resp

    @bp.errorhandler(QueryError)
    def _db(exc: QueryError):
        log.warning("ogc database error: %s", type(exc).__name__)
        resp = flask.jsonify({"code": "ServiceUnavailable", "description": "database unavailable"})
        resp.status_code = 503
        return resp

    @bp.errorhandler(ServiceError)
    def _svc(exc: ServiceError):
        resp = flask.jsonify({"code": "InvalidParameterValue", "description": str(exc)})
        resp.status_code = 400
        return resp

    @bp.errorhandler(404)
    def _404(_exc):
        resp = flask.jsonify({"code": "NotFound", "description": "no such resource; see /ogc"})
        resp.status_code = 404
        return resp

    def collection_or_404(name: str) -> Collection:
        col = COLLECTIONS.get(name)
        if col is None:
            raise OgcError(404, "NotFound",
                           f"no collection {name!r}; use one of {', '.join(COLLECTIONS)}")  # fmt: skip
        return col

    @bp.get("", strict_slashes=False)
    def landing():
        _check_params({"f"})
        return _json({
            "title": "GridSight OGC API – Features",
            "description": "Grids, administrative areas, centers, cameras, responders and "
                           "incidents of the city (read-only, CRS84).",
            "links": [
                {"href": _url("ogc.landing"), "rel": "self", "type": "application/json",
                 "title": "this document"},
                {"href": _url("ogc.api"), "rel": "service-desc",
                 "type": "application/vnd.oai.openapi+json;version=3.0", "title": "API definition"},
                {"href": _url("ogc.conformance"), "rel": "conformance",
                 "type": "application/json", "title": "conformance classes"},
                {"href": _url("ogc.collections"), "rel": "data", "type": "application/json",
                 "title": "collections"},
            ],
        })  # fmt: skip

    @bp.get("/api")
    def api():
        return _json(openapi_document(), "application/vnd.oai.openapi+json;version=3.0")

    @bp.get("/conformance")
    def conformance():
        _check_params({"f"})
        return _json({"conformsTo": CONFORMANCE})

    @bp.get("/collections")
    def collections():
        _check_params({"f"})
        return _json({
            "links": [{"href": _url("ogc.collections"), "rel": "self",
                       "type": "application/json", "title": "collections"}],
            "collections": [_collection_doc(ctx.db, c) for c in COLLECTIONS.values()],
        })  # fmt: skip

    @bp.get("/collections/<name>")
    def collection(name: str):
        _check_params({"f"})
        return _json(_collection_doc(ctx.db, collection_or_404(name)))

    @bp.get("/collections/<name>/items")
    def items(name: str):
        col = collection_or_404(name)
        _check_params({"f", "bbox", "limit", "offset", "bbox-crs"})
        crs = flask.request.args.get("bbox-crs")
        if crs not in (None, "", CRS84):
            raise OgcError(400, "InvalidParameterValue", f"bbox-crs: only {CRS84}")
        args = flask.request.args
        bbox = _bbox(args.get("bbox"))
        limit = _int("limit", args.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int("offset", args.get("offset"), 0, 0, 10**12)
        feats = cached_features(ctx, col, bbox, request_scope())
        page = feats[offset : offset + limit]
        base = {k: v for k, v in args.items() if k not in ("offset", "limit")}

        def link(rel: str, off: int) -> dict:
            q = urlencode({**base, "limit": limit, "offset": off})
            return {"href": f"{_url('ogc.items', name=name)}?{q}", "rel": rel, "type": GEOJSON,
                    "title": rel}  # fmt: skip

        links = [link("self", offset),
                 {"href": _url("ogc.collection", name=name), "rel": "collection",
                  "type": "application/json", "title": col.title}]  # fmt: skip
        if offset + limit < len(feats):
            links.append(link("next", offset + limit))
        if offset > 0:
            links.append(link("prev", max(offset - limit, 0)))
        return _json({
            "type": "FeatureCollection", "features": page, "numberMatched": len(feats),
            "numberReturned": len(page), "links": links,
            "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }, GEOJSON)  # fmt: skip

    @bp.get("/collections/<name>/items/<feature_id>")
    def item(name: str, feature_id: str):
        col = collection_or_404(name)
        _check_params({"f"})
        found = [f for f in cached_features(ctx, col, None, request_scope())
                 if str(f["id"]) == feature_id]  # fmt: skip
        if not found:
            raise OgcError(404, "NotFound", f"no feature {feature_id!r} in {name}")
        feat = dict(found[0])
        feat["links"] = [
            {"href": _url("ogc.item", name=name, feature_id=feature_id), "rel": "self",
             "type": GEOJSON, "title": "this feature"},
            {"href": _url("ogc.collection", name=name), "rel": "collection",
             "type": "application/json", "title": col.title},
        ]  # fmt: skip
        return _json(feat, GEOJSON)

    server.register_blueprint(bp)
    declare_policy(server, PREFIX, OGC_ROLES, methods=("GET",))
