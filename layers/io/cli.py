"""``python -m layers import|export``: the command-line front of ``layers.io``."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from layers.db import Database, DatabaseError
from layers.io.export import export_layer
from layers.io.importer import import_layer
from layers.io.read import ACCEPTED_CRS_TEXT, FORMATS, parse_crs
from layers.io.registry import LAYERS, get_layer
from layers.io.report import UsageError
from layers.services import audit


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``import`` and ``export`` subcommands."""
    layers_text = ", ".join(LAYERS)
    formats_text = ", ".join(FORMATS)
    p = sub.add_parser(
        "import",
        help="import a GIS file into a layer",
        description=f"Import a GIS file ({formats_text}) into a layer; bad rows are reported "
        "and skipped. Exit 0 all imported, 1 some rejected, 2 usage error.",
    )
    p.add_argument("layer", metavar="LAYER", help=f"one of {layers_text}")
    p.add_argument("file", metavar="FILE", help=f"input file ({formats_text})")
    p.add_argument(
        "--crs", default=None, help=f"source CRS overriding the file's: {ACCEPTED_CRS_TEXT}"
    )
    p.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    p.add_argument(
        "--report", default=None, metavar="FILE", help="also write the row report as CSV"
    )
    p.add_argument("--source-layer", default=None, help="layer inside a multi-layer GeoPackage")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_import)

    e = sub.add_parser(
        "export",
        help="export a layer to a GIS file",
        description=f"Export a layer to a GIS file ({formats_text}), WGS-84 unless --crs.",
    )
    e.add_argument("layer", metavar="LAYER", help=f"one of {layers_text}")
    e.add_argument("file", metavar="FILE", help=f"output file ({formats_text})")
    e.add_argument("--crs", default=None, help=f"output CRS (default wgs84): {ACCEPTED_CRS_TEXT}")
    e.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    e.add_argument("--key", default=None, help="audit key file (default: the app's)")
    e.set_defaults(func=run_export)


def _open_db(url: str | None, key: str | None = None) -> Database:
    from layers.__main__ import cli_audit_key
    from layers.settings import load_settings

    db = Database(url or load_settings().db.url, audit_key=cli_audit_key(key))
    db.migrate()
    return db


def run_import(args: argparse.Namespace) -> int:
    """Return the exit code of ``python -m layers import``."""
    try:
        get_layer(args.layer)
        parse_crs(args.crs)
        db = _open_db(args.db)
        report = import_layer(
            db,
            args.layer,
            args.file,
            crs=args.crs,
            source_layer=args.source_layer,
            progress=not args.no_progress,
        )
    except (UsageError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: database failure during import ({exc}); rows committed before it are "
              "kept", file=sys.stderr)  # fmt: skip
        return 2
    print(report.format())
    if args.report:
        report.write_csv(args.report)
        print(f"report written to {args.report}")
    return report.exit_code


def run_export(args: argparse.Namespace) -> int:
    """Return the exit code of ``python -m layers export``."""
    try:
        get_layer(args.layer)
        parse_crs(args.crs)
        db = _open_db(args.db, args.key)
        n = export_layer(db, args.layer, args.file, crs=args.crs)
    except (UsageError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except audit.AuditError as exc:
        print(f"error: the export was not audited, so no file was written: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"{args.layer}: exported {n} features to {args.file}")
    return 0
