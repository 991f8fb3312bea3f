"""``export_layer``: a stored layer to a GIS file (GeoJSON, GeoPackage, Shapefile, CSV)."""

from __future__ import annotations

import logging
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geo.crs import transform_geometries
from layers.db import Database
from layers.exportsafe import safe_frame
from layers.io.read import crs_label, format_of, parse_crs
from layers.io.registry import LayerSpec, get_layer
from layers.io.report import UsageError
from layers.publish import published_after
from layers.services import audit

log = logging.getLogger(__name__)


def read_layer_gdf(db: Database, layer: str) -> gpd.GeoDataFrame:
    """Return a layer as the GeoDataFrame (EPSG:4326) that ``export`` writes."""
    return get_layer(layer).read(db)


def export_layer(
    db: Database,
    layer: str,
    path: str | Path,
    *,
    crs: str | None = None,
    actor: str | None = None,
    role: str = "cli",
) -> int:
    """Return the number of features written after exporting a layer to a GIS file.

    Every export is written to the audit log (``layer.export``: who, layer, file, count)
    before the file appears (``layers.publish``): no record, no file. ``actor`` defaults to
    ``cli:<os user>``. Text cells of CSV files cannot run as formulas
    (``layers.exportsafe``).

    The format follows the extension (see FORMATS). ``crs`` (default WGS-84) converts the
    coordinates for the receiver: gcj02/bd09 files carry no CRS tag (they have no EPSG code).
    CSV: points as lon/lat columns; polygons as a WKT column plus lon/lat of a point inside.

    Raises
    ------
    UsageError
        Unknown layer, unknown format or CRS, or the file cannot be written.
    AuditError
        The export cannot be audited (e.g. a sealed log and no key); no file is written.
    """
    spec = get_layer(layer)
    path = Path(path)
    kind = format_of(path)
    dst = parse_crs(crs) or "wgs84"
    gdf = spec.read(db)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if dst != "wgs84" and len(geoms):
        geoms = transform_geometries(geoms, "wgs84", dst)
    out_crs = dst if isinstance(dst, pyproj.CRS) else ("EPSG:4326" if dst == "wgs84" else None)
    attrs = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).reset_index(drop=True)
    out = gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(geoms, crs=out_crs), crs=out_crs)
    try:
        # written to a staging file, audited, and only then renamed into place: an export
        # whose audit record did not commit leaves no file
        with published_after(path, keep_existing=kind == ".gpkg") as staged:
            if kind == ".csv":
                _write_csv(out, staged, spec)
            elif kind == ".zip":
                with tempfile.TemporaryDirectory() as tmp:
                    shp = Path(tmp) / f"{spec.name}.shp"
                    _write_vector(out, shp, ".shp", spec)
                    with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
                        for member in sorted(Path(tmp).iterdir()):
                            zf.write(member, member.name)
            else:
                _write_vector(out, staged, kind, spec)
            with db.session() as s:
                audit.record(s, actor=actor or _cli_actor(), role=role, action="layer.export",
                             target=spec.name, detail={"file": str(path), "features": len(out),
                                                       "crs": crs_label(dst)})  # fmt: skip
    except OSError as exc:
        raise UsageError(f"FILE {str(path)!r}: cannot write it ({exc})") from exc
    log.info("exported %s %s features to %s (%s)", len(out), spec.name, path, crs_label(dst))
    return len(out)


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


def _write_vector(gdf: gpd.GeoDataFrame, path: Path, kind: str, spec: LayerSpec) -> None:
    import pyogrio

    driver = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG",
              ".shp": "ESRI Shapefile"}[kind]  # fmt: skip
    kwargs: dict[str, Any] = {"driver": driver, "engine": "pyogrio"}
    if kind == ".gpkg":
        kwargs["layer"] = spec.name
    if kind == ".shp":
        kwargs["encoding"] = "UTF-8"
    if spec.geometry == "polygon" and kind in (".gpkg", ".shp"):
        kwargs["promote_to_multi"] = True
    if path.exists() and kind != ".gpkg":
        path.unlink()
    try:
        with warnings.catch_warnings():
            # GCJ-02/BD-09 have no EPSG code: writing them untagged is intended
            warnings.filterwarnings("ignore", message="'crs' was not provided")
            gdf.to_file(path, **kwargs)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.FieldError) as exc:
        raise UsageError(f"FILE {str(path)!r}: cannot write {driver} ({exc})") from exc


def _write_csv(gdf: gpd.GeoDataFrame, path: Path, spec: LayerSpec) -> None:
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if spec.geometry == "point":
        frame.insert(0, "lat", shapely.get_y(geoms) if len(geoms) else [])
        frame.insert(0, "lon", shapely.get_x(geoms) if len(geoms) else [])
    else:
        inside = shapely.point_on_surface(geoms) if len(geoms) else np.array([])
        frame.insert(0, "lat", shapely.get_y(inside) if len(geoms) else [])
        frame.insert(0, "lon", shapely.get_x(inside) if len(geoms) else [])
        frame["wkt"] = shapely.to_wkt(geoms, rounding_precision=-1) if len(geoms) else []
    safe_frame(frame).to_csv(path, index=False, encoding="utf-8-sig", float_format="%.10g")
