"""The layers the CLI imports and exports: one ``LayerSpec`` per layer, in ``LAYERS``.

Built-in layers register here through ``register_layer``, the same path an extension uses;
each spec names its row validator (``layers.io.validate``) and the reader of its stored
rows for export (a GeoDataFrame in EPSG:4326).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.codes import mask_name, mask_phone, validate_stat_code, validate_street_code
from layers.db import Database
from layers.io.report import ImportReport, UsageError
from layers.io.validate import (
    ImportContext,
    Row,
    finish_districts,
    store_areas,
    store_incidents,
    validate_area_row,
    validate_camera_row,
    validate_center_row,
    validate_district_row,
    validate_grid_row,
    validate_incident_row,
)
from layers.models import AdminArea, Camera, Center, Grid, Incident
from layers.services import areas as areas_service
from layers.services import cameras as cameras_service
from layers.services import centers as centers_service
from layers.services import grids as grids_service
from layers.services import make_gdf
from layers.services.scope import Scope


@dataclass(frozen=True)
class LayerSpec:
    """How one CLI layer is imported and exported.

    ``validate(ctx, row)`` returns ``(model kwargs, notes)`` or raises RowError; ``key`` names
    the attribute that must be unique (None: no duplicate check); ``read`` returns the layer
    as a GeoDataFrame in EPSG:4326 for export, with ``export_columns`` as attributes.
    """

    name: str
    model: type
    level: str | None
    geometry: str  # "polygon" | "point"
    required: tuple[str, ...]
    optional: tuple[str, ...]
    validate: Callable[[ImportContext, Row], tuple[dict, list[str]]]
    read: Callable[[Database], gpd.GeoDataFrame]
    key: str | None = "code"
    parent_level: str | None = None
    store: Callable[[Session, list[dict], ImportContext], None] | None = None
    finish: Callable[[Database, ImportContext, ImportReport], None] | None = None


LAYERS: dict[str, LayerSpec] = {}


def register_layer(spec: LayerSpec) -> LayerSpec:
    """Return ``spec`` after registering it under ``spec.name`` for import and export."""
    LAYERS[spec.name] = spec
    return spec


def get_layer(name: str) -> LayerSpec:
    """Return the registered LayerSpec called ``name``; UsageError naming the choices otherwise."""
    if name not in LAYERS:
        raise UsageError(f"LAYER {name!r} is unknown; use one of {', '.join(LAYERS)}")
    return LAYERS[name]


def _read_areas(level: str):
    def read(db: Database) -> gpd.GeoDataFrame:
        gdf = areas_service.read_gdf(db, scope=Scope.ALL, level=level)
        out = gdf[["code", "name", "parent_code", "area_m2", "geometry"]]
        return out.rename(columns={"parent_code": "parent"})

    return read


def _read_grids(db: Database) -> gpd.GeoDataFrame:
    gdf = grids_service.read_gdf(db, scope=Scope.ALL)
    return gdf[["code", "name", "community_code", "area_m2", "geometry"]].rename(
        columns={"community_code": "community"}
    )


def _read_centers(db: Database) -> gpd.GeoDataFrame:
    gdf = centers_service.read_gdf(db, scope=Scope.ALL)
    return gdf[["level", "name", "area_code", "services", "hours", "phone", "geometry"]]


def _read_cameras(db: Database) -> gpd.GeoDataFrame:
    gdf = cameras_service.read_gdf(db, scope=Scope.ALL)
    gdf = gdf[
        ["gb_id", "name", "cls", "ptz_type", "use_type", "azimuth", "fov", "range_m",
         "stream_url", "owner", "status", "last_seen", "grid_code", "geometry"]
    ].copy()  # fmt: skip
    gdf["last_seen"] = [v.isoformat() if v is not None and v is not pd.NaT else "" for v in
                        gdf["last_seen"]]  # fmt: skip
    return gdf


def _read_incidents(db: Database) -> gpd.GeoDataFrame:
    # names of at most 10 characters survive a Shapefile (DBF) unchanged
    columns = ("case_id", "category", "priority", "source", "status", "desc", "reporter",
               "rep_phone", "occurred", "grid_code")  # fmt: skip
    with db.session() as s:
        rows = s.execute(
            select(Incident, Grid.code).outerjoin(Grid, Incident.grid_id == Grid.id)
        ).all()
    records = [
        {
            "case_id": inc.external_id or "",
            "category": inc.category_code,
            "priority": inc.priority,
            "source": inc.source,
            "status": inc.status,
            "desc": inc.description,
            # reporters are personal data: exports carry them masked, like every display
            "reporter": mask_name(inc.reporter_name),
            "rep_phone": mask_phone(inc.reporter_phone),
            "occurred": inc.created_at.isoformat() if inc.created_at else "",
            "grid_code": gcode or "",
        }
        for inc, gcode in rows
    ]
    geoms = [shapely.Point(inc.lon, inc.lat) for inc, _ in rows]
    return make_gdf(records, geoms, columns)


register_layer(LayerSpec(
    "districts", AdminArea, "district", "polygon", ("code",), ("name",),
    validate_district_row, _read_areas("district"), store=store_areas, finish=finish_districts,
))  # fmt: skip


register_layer(LayerSpec(
    "streets", AdminArea, "street", "polygon", ("code", "name"), (),
    validate_area_row("street", 6, validate_street_code), _read_areas("street"),
    parent_level="district", store=store_areas,
))  # fmt: skip


register_layer(LayerSpec(
    "communities", AdminArea, "community", "polygon", ("code", "name"), (),
    validate_area_row("community", 9, validate_stat_code), _read_areas("community"),
    parent_level="street", store=store_areas,
))  # fmt: skip


register_layer(LayerSpec(
    "grids", Grid, None, "polygon", ("code", "name"), (), validate_grid_row, _read_grids,
    parent_level="community",
))  # fmt: skip


register_layer(LayerSpec(
    "centers", Center, None, "point", ("name", "level"), ("services", "hours", "phone"),
    validate_center_row, _read_centers, key="key",
))  # fmt: skip


register_layer(LayerSpec(
    "cameras", Camera, None, "point", ("gb_id", "name", "cls"),
    ("ptz_type", "use_type", "azimuth", "fov", "range_m", "stream_url", "owner", "status"),
    validate_camera_row, _read_cameras, key="gb_id",
))  # fmt: skip


register_layer(LayerSpec(
    "incidents", Incident, None, "point", ("category",),
    ("priority", "source", "description", "reporter_name", "reporter_phone", "occurred_at",
     "external_id"),
    validate_incident_row, _read_incidents, key="key", store=store_incidents,
))  # fmt: skip
