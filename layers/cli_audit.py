"""``python -m layers audit ...``: verify, export, anchor the audit log; purge personal data.

```
python -m layers audit verify [--anchor FILE] [--key FILE]   exit 0 intact, 1 broken (seq + why)
python -m layers audit export FILE [--actor A] [--action login.] [--since T] [--until T]
python -m layers audit anchor FILE                   save the head (seq, hash) outside the DB
python -m layers audit purge --days N [--snapshots DIR]   blank old reporter data, old snapshots
```

``--key`` (every action) is the audit key file; default GRIDSIGHT_AUDIT_KEY_FILE, else the
app's default beside GRIDSIGHT_DATA_DIR. The CLI never creates it: a log the app has sealed
with it can only be verified and written with it.

Times are ISO 8601 (``2026-11-01`` or ``2026-11-01T08:00+08:00``); without an offset they are
the machine's local time. Exit codes: 0 ok, 1 broken log / refused input, 2 usage/database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import sys
from pathlib import Path

from layers.db import Database, DatabaseError
from layers.services import audit


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command to the ``python -m layers`` parser."""
    p = sub.add_parser("audit", help="verify/export the hash-chained audit log; retention purge")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = asub.add_parser("verify", help="check the chain (exit 1 on any tampering)")
    verify.add_argument("--anchor", type=Path, default=None, help="anchor file from `audit anchor`")
    export = asub.add_parser("export", help="write the log (or a filtered part) as CSV")
    export.add_argument("file", type=Path)
    export.add_argument("--actor", default=None)
    export.add_argument(
        "--action", dest="action_filter", default=None, help="exact, or a prefix ending in '.'"
    )
    export.add_argument("--since", default=None)
    export.add_argument("--until", default=None)
    anchor = asub.add_parser("anchor", help="write the current head to FILE (keep it off-box)")
    anchor.add_argument("file", type=Path)
    purge = asub.add_parser("purge", help="blank reporter names/phones and delete old snapshots")
    purge.add_argument("--days", type=int, required=True, help="keep personal data this long")
    purge.add_argument("--snapshots", type=Path, default=None, help="snapshot folder to prune")
    for q in (p, *asub.choices.values()):
        q.add_argument("--db", default=None, help="database URL (default GRIDSIGHT_DB_URL)")
        q.add_argument(
            "--key", type=Path, default=None, help="audit key file (default: the app's key)"
        )
    p.set_defaults(func=run)


def _time(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise audit.AuditError(
            f"--{name} {value!r} is not an ISO time; use e.g. 2026-11-01 or 2026-11-01T08:00+08:00"
        ) from exc
    return t.astimezone() if t.tzinfo is None else t


def run(args: argparse.Namespace) -> int:
    """Return the exit code of an ``audit`` command."""
    from layers.__main__ import cli_audit_key, default_db_url

    try:
        db = Database(args.db or default_db_url(), audit_key=cli_audit_key(args.key))
        logging.getLogger("alembic").setLevel(logging.WARNING)
        db.migrate()
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "verify":
            report = audit.verify(db, anchor=args.anchor)
            print(report.summary())
            for p in sorted(report.problems, key=lambda p: p.seq)[:20]:
                print(f"  seq {p.seq}: {p.kind}: {p.message}")
            for note in report.notes:
                print(f"  note: {note}")
            return 0 if report.ok else 1
        if args.action == "export":
            filters = {
                "actor": args.actor,
                "action": args.action_filter,
                "since": _time(args.since, "since"),
                "until": _time(args.until, "until"),
            }
            n, _text = audit.export_csv(db, args.file, actor=_actor(), role="", filters=filters)
            print(f"wrote {n} audit entries to {args.file}")
            return 0
        if args.action == "anchor":
            doc = audit.write_anchor(db, args.file)
            print(f"anchored seq {doc['seq']} hash {doc['hash']} in {args.file}")
            return 0
        if args.action == "purge":
            r = audit.purge_personal_data(
                db, older_than_days=args.days, snapshots_dir=args.snapshots, actor=_actor()
            )
            print(
                f"purged: {r.incidents_blanked} incidents' reporter data blanked, "
                f"{r.snapshots_deleted} snapshots deleted (before {r.cutoff:%Y-%m-%d %H:%M}Z)"
            )
            return 0
    except (audit.AuditError, audit.AuditKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    return 2
