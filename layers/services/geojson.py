"""Compact GeoJSON FeatureCollections of the static map layers, for the web map.

These are the large, rarely-changing payloads (grid polygons, centers, cameras) that the map
loads once and caches; live counts travel separately. Coordinates are WGS-84, rounded to
6 decimals (~0.1 m), which keeps a 10k-grid city to a few MB.
"""

from __future__ import annotations

import json

import shapely
from sqlalchemy import select

from layers.db import Database
from layers.models import AdminArea, Camera, Center, Grid
from layers.services.scope import Scope
from layers.services.versions import LAYER_STAMPS, fingerprint

MAP_LAYERS = ("grids", "districts", "streets", "communities", "centers", "cameras")


class UnknownLayerError(KeyError):
    """The requested map layer does not exist."""


def _polygon_features(rows, props) -> list[dict]:
    geoms = shapely.from_wkb([r.geom_wkb for r in rows])
    geoms = shapely.set_precision(geoms, 1e-6)
    out = []
    for row, g in zip(rows, geoms, strict=True):
        out.append(
            {
                "type": "Feature",
                "id": row.id,
                "geometry": shapely.geometry.mapping(g),
                "properties": props(row),
            }
        )
    return out


def layer_version(db: Database, layer: str) -> str:
    """Return a short fingerprint of a layer's current content (for ETags and caches).

    Built from the database-kept stamps the layer depends on (``LAYER_STAMPS``), so
    any write that changes what the layer shows (a camera's status or position, a grid's
    shape or name), in any process and by any means, changes it.
    """
    if layer not in MAP_LAYERS:
        raise UnknownLayerError(f"unknown map layer {layer!r}; one of {', '.join(MAP_LAYERS)}")
    with db.session() as s:
        return fingerprint(s, LAYER_STAMPS[layer], label=layer)


def feature_collection(db: Database, layer: str, scope: Scope) -> dict:
    """Return the layer's features in ``scope`` as a GeoJSON FeatureCollection (EPSG:4326)."""
    if layer not in MAP_LAYERS:
        raise UnknownLayerError(f"unknown map layer {layer!r}; one of {', '.join(MAP_LAYERS)}")
    with db.session() as s:
        if layer == "grids":
            rows = s.execute(
                select(Grid.id, Grid.code, Grid.name, Grid.community_id, Grid.geom_wkb).where(
                    *scope.grids(s)
                )
            ).all()
            feats = _polygon_features(
                rows, lambda r: {"code": r.code, "name": r.name, "community_id": r.community_id}
            )
        elif layer in ("districts", "streets", "communities"):
            level = {"districts": "district", "streets": "street", "communities": "community"}
            rows = s.execute(
                select(AdminArea.id, AdminArea.code, AdminArea.name, AdminArea.parent_id,
                       AdminArea.geom_wkb).where(AdminArea.level == level[layer],
                                                 *scope.areas(s))
            ).all()  # fmt: skip
            feats = _polygon_features(
                rows, lambda r: {"code": r.code, "name": r.name, "parent_id": r.parent_id}
            )
        elif layer == "centers":
            rows = s.execute(
                select(Center.id, Center.name, Center.level, Center.lon, Center.lat, Center.phone,
                       Center.hours).where(*scope.centers(s))
            ).all()  # fmt: skip
            feats = [
                {"type": "Feature", "id": r.id,
                 "geometry": {"type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
                 "properties": {"name": r.name, "level": r.level, "phone": r.phone,
                                "hours": r.hours}}
                for r in rows
            ]  # fmt: skip
        else:
            rows = s.execute(
                select(Camera.id, Camera.gb_id, Camera.name, Camera.cls, Camera.status,
                       Camera.lon, Camera.lat, Camera.azimuth, Camera.fov, Camera.range_m,
                       Camera.ptz_type).where(*scope.cameras_condition())
            ).all()  # fmt: skip
            feats = [
                {"type": "Feature", "id": r.id,
                 "geometry": {"type": "Point", "coordinates": [round(r.lon, 6), round(r.lat, 6)]},
                 "properties": {"gb_id": r.gb_id, "name": r.name, "cls": r.cls,
                                "status": r.status, "azimuth": r.azimuth, "fov": r.fov,
                                "range_m": r.range_m, "ptz_type": r.ptz_type}}
                for r in rows
            ]  # fmt: skip
    return {"type": "FeatureCollection", "features": feats}


def feature_collection_bytes(db: Database, layer: str, scope: Scope) -> bytes:
    """Return the layer's FeatureCollection in ``scope`` serialised compactly as UTF-8 JSON."""
    return json.dumps(
        feature_collection(db, layer, scope), ensure_ascii=False, separators=(",", ":")
    ).encode()
