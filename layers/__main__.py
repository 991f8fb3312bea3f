"""GridSight data CLI: ``python -m layers COMMAND ...``.

Commands: migrate, migrate-db, seed, import, export, users, tokens, audit. Each command lives in its own
module and registers itself through ``add_parser``; this file only dispatches. Exit codes:
0 success, 1 the input was (partly) rejected, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from layers.services.audit_key import AuditKey
from layers.settings import SettingsError, load_settings

# command name -> module providing add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "migrate": "layers.cli_migrate",
    "migrate-db": "layers.migrate_db",
    "seed": "layers.seed",
    "import": "layers.io",
    "export": "layers.io",
    "users": "layers.cli_users",
    "tokens": "layers.cli_users",
    "audit": "layers.cli_audit",
}


def default_db_url() -> str:
    """Return the deployment's database URL: the web app's (``layers.settings``).

    GRIDSIGHT_DB_URL, else ``gridsight.sqlite`` under GRIDSIGHT_DATA_DIR (default ``data``).
    """
    return load_settings().db.url


def cli_audit_key(path: str | os.PathLike | None = None) -> AuditKey:
    """Return the audit key the CLI writes and verifies with (never created by the CLI).

    ``path``, else the app's key (``Settings.audit_key_path``: GRIDSIGHT_AUDIT_KEY_FILE, else
    beside GRIDSIGHT_DATA_DIR, ``data`` -> ``data.audit-key``): the same file the app uses.
    """
    return AuditKey(path or load_settings().audit_key_path())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m layers", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in dict.fromkeys(COMMANDS.values()):  # each module once, in order
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()  # the web app's settings: same database, same audit key
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"configuration error: {line}", file=sys.stderr)
        return 2
    if getattr(args, "db", None) is None and hasattr(args, "db"):
        args.db = settings.db.url
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
