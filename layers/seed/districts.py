"""The seed's input districts: generated, or real outlines read from a GIS file, and the
errors a seed can end with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from layers.codes import CodeError, admin_code_table, validate_admin_code


class SeedError(RuntimeError):
    """Seeding cannot go ahead; the message says why and what to do."""


class CityExistsError(SeedError):
    """The database already holds a city; seeding again needs ``force``."""


class DistrictsError(SeedError):
    """The given district outlines cannot be used; the message names the feature and field."""


@dataclass
class District:
    """One input district: its GB/T 2260 code, name and WGS-84 outline."""

    code: str
    name: str
    geom: shapely.Geometry  # WGS-84


def name_of(code: str) -> str | None:
    """Return the GB/T 2260 name of an administrative code (newest edition first), or None."""
    for edition in ("2023", "2016"):
        name = admin_code_table(edition).get(code)
        if name:
            return name
    return None


def load_districts(source, crs: str | None = None) -> list[District]:
    """Return district outlines (WGS-84) from a file path or GeoDataFrame.

    Each feature needs ``name`` and ``adcode`` (a GB/T 2260 county code). Coordinates are
    converted from ``crs`` ("wgs84", "gcj02", "bd09", "EPSG:n"; default the file's own CRS,
    which for GeoJSON is WGS-84). Invalid rings are repaired with ``make_valid``; where two
    districts overlap, the one with the lower code keeps the overlap, so districts are
    disjoint.

    Raises
    ------
    DistrictsError
        For a missing column, a bad or duplicate code, an empty geometry or coordinates
        outside China (a wrong ``crs`` or swapped lon/lat).
    ValueError
        For an unknown ``crs``.
    """
    import geopandas as gpd

    from geo.crs import transform_geometries

    gdf = source if isinstance(source, gpd.GeoDataFrame) else gpd.read_file(source)
    missing = [c for c in ("name", "adcode") if c not in gdf.columns]
    if missing:
        raise DistrictsError(
            f"districts: the features lack the {' and '.join(missing)} propert"
            f"{'ies' if len(missing) > 1 else 'y'}; each district needs its name and its "
            "GB/T 2260 code (adcode)"
        )
    if crs is None:
        crs = "wgs84" if gdf.crs is None else f"EPSG:{gdf.crs.to_epsg() or 4326}"
    geoms = transform_geometries(np.asarray(gdf.geometry.values, dtype=object), crs, "wgs84")
    out: list[District] = []
    seen: set[str] = set()
    for i, (name, code, geom) in enumerate(zip(gdf["name"], gdf["adcode"], geoms, strict=True)):
        label = f"feature {i} ({name})"
        try:
            code = validate_admin_code(str(code).split(".")[0], field="adcode")
        except CodeError as exc:
            raise DistrictsError(f"districts: {label}: {exc}") from None
        if code in seen:
            raise DistrictsError(f"districts: {label}: adcode {code} appears twice")
        seen.add(code)
        if geom is None or geom.is_empty:
            raise DistrictsError(f"districts: {label}: the geometry is empty")
        geom = shapely.make_valid(geom)
        parts = shapely.get_parts(geom)
        parts = parts[shapely.get_type_id(parts) == 3]
        if len(parts) == 0:
            raise DistrictsError(f"districts: {label}: the geometry has no polygon")
        geom = shapely.union_all(parts)
        minx, miny, maxx, maxy = geom.bounds
        if not (73 <= minx and maxx <= 136 and 3 <= miny and maxy <= 54):
            raise DistrictsError(
                f"districts: {label}: coordinates ({minx:.3f}, {miny:.3f}) .. ({maxx:.3f}, "
                f"{maxy:.3f}) are not in China; check --crs and that lon/lat are not swapped"
            )
        out.append(District(code, str(name), geom))
    if not out:
        raise DistrictsError("districts: the file holds no features")
    prefixes = {d.code[:4] for d in out}
    if len(prefixes) > 1:
        raise DistrictsError(
            f"districts: the codes belong to several cities ({', '.join(sorted(prefixes))}); "
            "seed one city at a time"
        )
    out.sort(key=lambda d: d.code)
    taken = None
    for d in out:
        if taken is not None:
            d.geom = shapely.difference(d.geom, taken)
        taken = d.geom if taken is None else shapely.union(taken, d.geom)
    return out
