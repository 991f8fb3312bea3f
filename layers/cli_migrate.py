"""``python -m layers migrate [up|down|current] [--db URL]``: schema migrations."""

from __future__ import annotations

import argparse
import sys

from layers.db import Database, DatabaseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="upgrade/downgrade the database schema")
    p.add_argument("direction", nargs="?", choices=["up", "down", "current"], default="up")
    p.add_argument("--revision", default=None, help="target revision (default head/base)")
    p.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL or SQLite)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        db = Database(args.db)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.direction == "up":
        db.migrate(args.revision or "head")
    elif args.direction == "down":
        db.downgrade(args.revision or "base")
    print(f"schema revision: {db.current_revision() or 'none'}")
    return 0
