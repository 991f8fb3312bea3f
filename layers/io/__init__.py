"""Import and export of GIS layers: ``python -m layers import|export LAYER FILE``.

Formats (chosen by the file extension, read and written by geopandas with the pyogrio engine):
GeoJSON (``.geojson``/``.json``), GeoPackage (``.gpkg``), Shapefile (``.shp`` or a zipped
shapefile ``.zip``) and CSV with lon/lat columns (``.csv``; polygons as a WKT column).

Coordinates are stored in WGS-84. On import ``--crs`` (wgs84, gcj02, bd09 or EPSG:<code>)
overrides the file's own CRS; a file without a CRS (every CSV) is taken as WGS-84. GCJ-02
and BD-09 are converted with ``geo.crs``; EPSG systems with pyproj. On export ``--crs``
converts back (for AMap/Baidu base maps).

Every row is checked; bad rows are rejected with a reason and the rest is imported:

- wrong or missing geometry, invalid polygons (repaired with ``shapely.make_valid`` and
  reported; rejected when the repair changes the area by more than 1 % or leaves no polygon);
- points outside the city (the union of the stored districts, when there are any) and
  polygons below district level that do not touch it;
- swapped lon/lat (a latitude beyond ±90°, or only the swapped point lies in China / the city);
- bad codes (``layers.codes``), codes repeated in the file or already stored;
- missing required values.

Nothing stored before is lost: the import only inserts, and it commits in batches, so a
rejection or a crash never rolls back earlier rows. Exit codes: 0 every row imported, 1 some
rows rejected (the report names each one), 2 usage errors (unknown layer, unreadable file,
unknown CRS, a required column missing from the file).

Field names: each canonical field accepts the English and Chinese variants listed in
``FIELD_ALIASES`` (matched case-insensitively, ignoring spaces, ``_`` and ``-``).


The package, one module per step: ``read`` (files and CRS options), ``validate`` (rows,
codes, geometries per layer), ``registry`` (``LAYERS``: one ``LayerSpec`` per layer),
``importer`` (``import_layer``), ``export`` (``export_layer``), ``report`` (what an import
reports) and ``cli`` (the ``import``/``export`` subcommands).
"""

from layers.io.cli import add_parser
from layers.io.export import export_layer, read_layer_gdf
from layers.io.importer import import_layer
from layers.io.read import ACCEPTED_CRS_TEXT, FIELD_ALIASES, FORMATS, parse_crs
from layers.io.registry import LAYERS, LayerSpec, register_layer
from layers.io.report import ImportReport, RowError, RowIssue, UsageError
from layers.io.validate import check_polygon, metric_transformer

__all__ = [
    "ACCEPTED_CRS_TEXT",
    "FIELD_ALIASES",
    "FORMATS",
    "LAYERS",
    "ImportReport",
    "LayerSpec",
    "RowError",
    "RowIssue",
    "UsageError",
    "add_parser",
    "check_polygon",
    "export_layer",
    "import_layer",
    "metric_transformer",
    "parse_crs",
    "read_layer_gdf",
    "register_layer",
]
