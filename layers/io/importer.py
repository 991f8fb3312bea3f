"""``import_layer``: a GIS file into the database, row by row, committing in batches."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError, InternalError, ProgrammingError
from sqlalchemy.orm import Session

from geo.crs import local_metric_crs, transform_geometries
from layers.codes import DATA_DIR, admin_code_table
from layers.db import Database
from layers.io.read import (
    FIELD_ALIASES,
    crs_label,
    find_column,
    is_geographic,
    parse_crs,
    read_source,
)
from layers.io.registry import LayerSpec, get_layer
from layers.io.report import ImportReport, RowError, RowIssue, UsageError
from layers.io.validate import (
    ImportContext,
    Row,
    check_polygon,
    clean_text,
    looks_swapped,
    metric_transformer,
    point_of,
)
from layers.models import AdminArea, Camera, Center, Grid, Incident, geometry_columns
from layers.services import areas as areas_service
from layers.services.incidents import create_incident

log = logging.getLogger(__name__)


BATCH_SIZE = 500


PROGRESS_MIN_ROWS = 200


def _editions() -> dict[str, dict[str, str]]:
    versions = sorted(p.stem.split("_", 1)[1] for p in DATA_DIR.glob("gbt2260_*.json"))
    return {v: admin_code_table(v) for v in versions}


def _map_columns(frame: pd.DataFrame, spec: LayerSpec, path: Path) -> dict[str, str]:
    """Return {canonical field: file column}; raise UsageError if a required one is missing."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fieldname in spec.required + spec.optional:
        names = FIELD_ALIASES.get(fieldname, (fieldname,))
        col = find_column([c for c in frame.columns if c not in used], names)
        if col is not None:
            mapping[fieldname] = col
            used.add(col)
    missing = [f for f in spec.required if f not in mapping]
    if missing and len(frame):  # an empty file imports nothing, whatever its columns
        f = missing[0]
        raise UsageError(
            f"FILE {str(path)!r}: {spec.name} need a {f!r} column (accepted names: "
            f"{', '.join(FIELD_ALIASES.get(f, (f,)))}); the file has {list(frame.columns)}"
        )
    return mapping


def _existing_keys(session: Session, spec: LayerSpec) -> set[str]:
    if spec.key is None:
        return set()
    if spec.model is AdminArea:
        return set(session.scalars(select(AdminArea.code)).all())
    if spec.model is Grid:
        return set(session.scalars(select(Grid.code)).all())
    if spec.model is Camera:
        return set(session.scalars(select(Camera.gb_id)).all())
    if spec.model is Center:
        return {f"{lv}:{n}" for lv, n in session.execute(select(Center.level, Center.name))}
    if spec.model is Incident:
        return {e for e in session.scalars(select(Incident.external_id)) if e}
    return set()


def _prepare_context(session: Session, spec: LayerSpec, metric: pyproj.CRS) -> ImportContext:
    ctx = ImportContext(
        session=session, layer=spec, to_metric=metric_transformer(metric), editions=_editions()
    )
    city = areas_service.city_outline(session)
    if city is not None:
        shapely.prepare(city)
        ctx.city = city
        codes = session.scalars(select(AdminArea.code).where(AdminArea.level == "district")).all()
        prefixes = {c[:4] for c in codes}
        if len(prefixes) == 1:
            ctx.extra["city_prefix"] = prefixes.pop()
    if spec.parent_level:
        rows = session.execute(
            select(AdminArea.id, AdminArea.code, AdminArea.geom_wkb).where(
                AdminArea.level == spec.parent_level
            )
        ).all()
        ctx.parents = {code: id_ for id_, code, _ in rows}
        ctx.parent_geoms = (
            np.array([r[0] for r in rows], dtype=np.int64),
            shapely.from_wkb([r[2] for r in rows]) if rows else np.array([], dtype=object),
        )
    if spec.name == "centers":
        by_level: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows = session.execute(select(AdminArea.id, AdminArea.level, AdminArea.geom_wkb)).all()
        for level in ("city", "district", "street", "community"):
            sel = [r for r in rows if r[1] == level]
            if sel:
                by_level[level] = (
                    np.array([r[0] for r in sel], dtype=np.int64),
                    shapely.from_wkb([r[2] for r in sel]),
                )
        ctx.extra["areas_by_level"] = by_level
    if spec.name == "cameras":
        grids = session.execute(select(Grid.id, Grid.geom_wkb).order_by(Grid.id)).all()
        if grids:
            from geo.assign import GridIndex

            ctx.extra["grid_ids"] = np.array([g[0] for g in grids], dtype=np.int64)
            ctx.extra["grid_index"] = GridIndex(shapely.from_wkb([g[1] for g in grids]))
    if spec.name == "incidents":
        ctx.extra["create_incident"] = create_incident
    return ctx


def _to_wgs84(geoms: np.ndarray, src: str | pyproj.CRS) -> np.ndarray:
    geoms = shapely.force_2d(geoms)
    if src == "wgs84":
        return geoms
    with np.errstate(all="ignore"):
        return transform_geometries(geoms, src, "wgs84")


def _finite(geom: shapely.Geometry) -> bool:
    coords = shapely.get_coordinates(geom)
    return bool(len(coords)) and bool(np.isfinite(coords).all())


def _check_geometry(
    ctx: ImportContext,
    raw: Any,
    geom: Any,
    src: str | pyproj.CRS,
) -> tuple[Any, float | None, str | None]:
    """Return (WGS-84 geometry, area m² or None, repair note) or raise RowError."""
    spec = ctx.layer
    if raw is None or (isinstance(raw, shapely.Geometry) and raw.is_empty):
        raise RowError("geometry missing; give the outline / lon-lat")
    if spec.geometry == "point":
        raw_pt = point_of(raw)
        if is_geographic(src) and looks_swapped(raw_pt.x, raw_pt.y):
            raise RowError(
                f"lon/lat look swapped ({raw_pt.x:g}, {raw_pt.y:g}); put longitude first"
            )
    elif is_geographic(src):
        if not isinstance(raw, shapely.Polygon | shapely.MultiPolygon):
            raise RowError(
                f"geometry is a {raw.geom_type}; this layer needs Polygon or MultiPolygon"
            )
        c = shapely.get_coordinates(raw)
        if len(c) and np.isfinite(c).all() and np.abs(c[:, 1]).max() > 90:
            if np.abs(c[:, 0]).max() <= 90:
                raise RowError("lon/lat look swapped (latitudes beyond ±90°); put longitude first")
            raise RowError("coordinates out of range for degrees; check --crs")
        minx, miny, maxx, maxy = raw.bounds
        if looks_swapped((minx + maxx) / 2, (miny + maxy) / 2):
            raise RowError("lon/lat look swapped (the outline lies in China only swapped)")
    if geom is None or not _finite(geom):
        raise RowError(
            f"coordinates cannot be converted from {crs_label(src)} to WGS-84; check --crs"
        )
    if spec.geometry == "point":
        pt = point_of(geom)
        if not (-180 <= pt.x <= 180 and -90 <= pt.y <= 90):
            raise RowError(f"({pt.x:g}, {pt.y:g}) is no WGS-84 position; check --crs")
        if ctx.city is not None and not shapely.covers(ctx.city, pt):
            swapped = _to_wgs84(np.array([shapely.Point(raw_pt.y, raw_pt.x)]), src)[0]
            if _finite(swapped) and shapely.covers(ctx.city, swapped):
                raise RowError(
                    f"lon/lat look swapped ({raw_pt.x:g}, {raw_pt.y:g}); put longitude first"
                )
            raise RowError(
                f"point ({pt.x:.6f}, {pt.y:.6f}) WGS-84 lies outside the city (the stored "
                "districts); check the coordinates and --crs"
            )
        return pt, None, None
    poly, area, note = check_polygon(geom, ctx.to_metric)
    if spec.name in ("streets", "communities", "grids"):
        if ctx.city is not None and not shapely.intersects(ctx.city, poly):
            raise RowError("outline lies outside the city (the stored districts); check --crs")
    return poly, area, note


def _point_xy(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return x and y arrays of the point geometries (NaN for any other row)."""
    xs = np.full(len(geoms), np.nan)
    ys = np.full(len(geoms), np.nan)
    for i, g in enumerate(geoms):
        if isinstance(g, shapely.Point) and not g.is_empty:
            xs[i], ys[i] = g.x, g.y
        elif isinstance(g, shapely.MultiPoint) and len(g.geoms) == 1:
            xs[i], ys[i] = g.geoms[0].x, g.geoms[0].y
    return xs, ys


def _central_xy(geoms: np.ndarray) -> tuple[list[float], list[float]]:
    """Return the lon/lat range of the plausible WGS-84 geometries (for a metric CRS centre)."""
    ok = [
        g for g in geoms
        if g is not None and _finite(g)
        and -180 <= g.bounds[0] <= g.bounds[2] <= 180 and -90 <= g.bounds[1] <= g.bounds[3] <= 90
    ]  # fmt: skip
    if not ok:
        return [0.0], [0.0]
    b = shapely.total_bounds(np.asarray(ok, dtype=object))
    return [b[0], b[2]], [b[1], b[3]]


def import_layer(
    db: Database,
    layer: str,
    path: str | Path,
    *,
    crs: str | None = None,
    source_layer: str | None = None,
    progress: bool = True,
) -> ImportReport:
    """Return the report of importing one GIS file into a layer (see the module docstring).

    Parameters
    ----------
    db : Database
        Migrated database to insert into.
    layer : str
        districts, streets, communities, grids, centers, cameras or incidents.
    path : str or Path
        GeoJSON, GeoPackage, Shapefile (or zipped), or CSV file.
    crs : str, optional
        Source CRS overriding the file's: wgs84, gcj02, bd09 or EPSG:<code>.
    source_layer : str, optional
        Layer name inside a multi-layer GeoPackage.
    progress : bool
        Show a tqdm progress bar for long imports (on a terminal).

    Raises
    ------
    UsageError
        Unknown layer, unreadable file, unknown CRS or a required column missing.
    """
    from tqdm import tqdm

    spec = get_layer(layer)
    override = parse_crs(crs)
    path = Path(path)
    table = read_source(path, source_layer=source_layer)
    if override is not None:
        src = override
    elif table.crs is not None:
        src = table.crs
    else:
        src = "wgs84"
        if table.kind != ".csv":
            log.warning("%s has no CRS; taking WGS-84 (give --crs to override)", path)
    mapping = _map_columns(table.frame, spec, path)
    report = ImportReport(layer=spec.name, path=str(path), source_crs=crs_label(src))
    report.total = len(table.frame)
    if table.crs is not None and override is not None and table.crs != override:
        report.notes.append(
            f"--crs {crs_label(override)} overrides the file's CRS {crs_label(table.crs)}"
        )
    wgs = _to_wgs84(table.geoms, src) if len(table.geoms) else table.geoms
    metric = local_metric_crs(*_central_xy(wgs))

    accepted: list[tuple[int, dict]] = []
    seen: dict[str, int] = {}
    bar = tqdm(
        total=report.total * 2,
        desc=f"import {spec.name}",
        unit="row",
        disable=(not progress) or report.total < PROGRESS_MIN_ROWS or None,
        file=sys.stderr,
    )
    with db.session() as session:
        ctx = _prepare_context(session, spec, metric)
        ctx.row_xy = _point_xy(wgs)
        existing = _existing_keys(session, spec)
        canon_names = list(mapping)
        cells = table.frame[[mapping[c] for c in canon_names]].itertuples(index=False, name=None)
        for i, cell_row in enumerate(cells):
            bar.update(1)
            values = {c: clean_text(v) for c, v in zip(canon_names, cell_row, strict=True)}
            row = Row(i + 1, values)
            ident_code = values.get("code") or values.get("gb_id") or values.get("external_id", "")
            ident_name = values.get("name", "")
            try:
                if i in table.row_errors:
                    raise RowError(table.row_errors[i])
                geom, area, repair = _check_geometry(ctx, table.geoms[i], wgs[i], src)
                row.geometry = geom
                kwargs, notes = spec.validate(ctx, row)
                key = kwargs.get(spec.key) if spec.key else None
                if key:
                    if key in seen:
                        raise RowError(f"duplicate {spec.key} {key} (also on row {seen[key]})")
                    if key in existing:
                        raise RowError(
                            f"{spec.key} {key} is already stored; nothing was changed for it"
                        )
                    seen[key] = row.number
            except (ValueError, shapely.errors.GEOSException) as exc:  # RowError, CodeError
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "rejected",
                                              str(exc)))  # fmt: skip
                continue
            if repair:
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "repaired",
                                              repair))  # fmt: skip
            for note in notes:
                report.issues.append(RowIssue(row.number, ident_code, ident_name, "note", note))
            if spec.geometry == "polygon":
                kwargs.update(geometry_columns(geom))
                kwargs["area_m2"] = area
            if spec.name in ("centers", "incidents"):
                kwargs.pop("key", None)
            accepted.append((row.number, kwargs))
    _store(db, spec, ctx, accepted, report, bar)
    bar.close()
    if spec.finish is not None:
        spec.finish(db, ctx, report)
    log.info("imported %s of %s %s rows from %s", report.imported, report.total, spec.name, path)
    return report


def _store(
    db: Database,
    spec: LayerSpec,
    ctx: ImportContext,
    accepted: list[tuple[int, dict]],
    report: ImportReport,
    bar: Any,
) -> None:
    """Insert accepted rows in committed batches; a failing batch is retried row by row."""
    # what a database says when it refuses a row's data: constraints (IntegrityError), bad or
    # over-long values (DataError, PostgreSQL checks VARCHAR lengths), a trigger's RAISE
    # (IntegrityError on SQLite, InternalError/ProgrammingError on PostgreSQL). A lost
    # connection (OperationalError) is not the row's fault and ends the import instead.
    refusals = (IntegrityError, DataError, InternalError, ProgrammingError)
    store = spec.store or (lambda s, rows, _ctx: s.execute(insert(spec.model), rows))
    for start in range(0, len(accepted), BATCH_SIZE):
        batch = accepted[start : start + BATCH_SIZE]
        try:
            with db.session() as session:
                ctx.session = session
                store(session, [kw for _, kw in batch], ctx)
            report.imported += len(batch)
        except (*refusals, ValueError) as exc:
            log.info("batch of %s rows failed (%s); retrying row by row", len(batch), exc)
            ctx.extra.pop("cities", None)
            for number, kwargs in batch:
                try:
                    with db.session() as session:
                        ctx.session = session
                        store(session, [kwargs], ctx)
                    report.imported += 1
                except (*refusals, ValueError) as row_exc:
                    ctx.extra.pop("cities", None)
                    ident = kwargs.get("code") or kwargs.get("gb_id") or kwargs.get("external_id")
                    if isinstance(row_exc, refusals):
                        reason = f"database refused it: {str(row_exc.orig).splitlines()[0]}"
                    else:
                        reason = str(row_exc)
                    report.issues.append(
                        RowIssue(number, str(ident or ""), str(kwargs.get("name", "")),
                                 "rejected", reason)
                    )  # fmt: skip
        bar.update(len(batch))
