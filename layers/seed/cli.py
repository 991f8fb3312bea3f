"""``python -m layers seed``: the command-line front of ``layers.seed``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from layers.db import Database, DatabaseError
from layers.models import AdminArea
from layers.seed.city import DEFAULT_SEED, seed_city
from layers.seed.districts import CityExistsError, DistrictsError
from layers.seed.plan import SCALES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``seed`` subcommand."""
    p = sub.add_parser(
        "seed",
        help="build the deterministic demo city (昆明): grids, centers, cameras, incidents",
        description="Build a deterministic demo city into the database. Exit codes: 0 done, "
        "1 refused (the database already holds a city; use --force) or districts file "
        "rejected, 2 usage error.",
    )
    p.add_argument("--scale", choices=list(SCALES), default="demo",
                   help="tiny (~60 grids), demo (~300 grids, ~1,000 cameras, ~20,000 incidents) "
                   "or city (≥10,000 grids, ≥12,000 cameras, ≥1,000,000 incidents)")  # fmt: skip
    p.add_argument("--districts", metavar="FILE", default=None,
                   help="real district outlines (GeoJSON/GeoPackage/Shapefile; properties name "
                   "and adcode) instead of the generated ones")  # fmt: skip
    p.add_argument("--crs", default=None,
                   help="CRS of --districts: wgs84, gcj02, bd09 or EPSG:n (default: the file's "
                   "own; GeoJSON counts as WGS-84)")  # fmt: skip
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 42)")
    p.add_argument("--now", default=None,
                   help="ISO time the incident history ends at, e.g. 2026-11-23T08:00:00+08:00 "
                   "(default: now); with --seed it makes the data byte-identical")  # fmt: skip
    p.add_argument(
        "--sample-video",
        metavar="FILE",
        default=None,
        help="give a few downtown cameras a file:// stream URL to this video",
    )
    p.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    p.add_argument(
        "--force",
        action="store_true",
        help="wipe the layer tables first if the database already holds a city",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Return the exit code of ``python -m layers seed`` for parsed arguments."""
    if args.crs is not None and args.districts is None:
        return _usage("--crs: applies to --districts only; give --districts FILE as well")
    if args.crs is not None:
        from geo.crs import to_wgs84

        try:
            to_wgs84(np.array([0.0]), np.array([0.0]), args.crs)
        except ValueError as exc:
            return _usage(f"--crs: {exc}")
    if args.districts is not None and not Path(args.districts).is_file():
        return _usage(f"--districts: {args.districts!r} is not a file")
    if args.sample_video is not None and not Path(args.sample_video).is_file():
        return _usage(f"--sample-video: {args.sample_video!r} is not a file")
    now = None
    if args.now is not None:
        try:
            now = dt.datetime.fromisoformat(args.now)
        except ValueError:
            return _usage(f"--now: {args.now!r} is not an ISO time like 2026-11-23T08:00:00+08:00")
        if now.tzinfo is None:
            return _usage(f"--now: {args.now!r} has no timezone; add one, e.g. +08:00")
    try:
        db = Database(args.db)
    except DatabaseError as exc:
        return _usage(str(exc))
    t0 = time.perf_counter()
    try:
        counts = seed_city(
            db, scale=args.scale, seed=args.seed, districts=args.districts,
            progress=not args.no_progress, districts_crs=args.crs, now=now, force=args.force,
            sample_video=args.sample_video,
        )  # fmt: skip
    except CityExistsError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except DistrictsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    where = db.engine.url.render_as_string(hide_password=True)
    with db.session() as s:
        city = s.execute(
            select(AdminArea.name, AdminArea.code).where(AdminArea.level == "city")
        ).one()
    print(
        f"seeded {city.name} ({city.code}), scale {args.scale}, seed {args.seed}, "
        f"in {seconds:.1f} s into {where}:"
    )
    width = max(len(k) for k in counts)
    for k, v in counts.items():
        print(f"  {k:<{width}}  {v:>10,}")
    return 0
