"""``python -m layers migrate-db FROM_URL TO_URL``: move a deployment to another database.

Typical use: a city outgrows the embedded SQLite file and moves to PostgreSQL/PostGIS.

1. ``migrate-db sqlite:///data/gridsight.sqlite postgresql+psycopg://gs@db/gridsight`` while
   the app keeps running: every table is copied from ONE consistent snapshot of the source
   (a single read transaction), in foreign-key order, ids kept, and then checked: per table
   the row count and a SHA-256 over every row (in primary-key order, values in a canonical
   form) must be equal on both sides, else the command fails naming the table.
2. Stop the app, run the same command again with ``--sync``: only the ranges of 10,000 ids
   whose checksums differ are copied again (upserted; rows deleted at the source are deleted),
   then everything is checked again. That catches what was written during step 1.
3. Start the app with ``GRIDSIGHT_DB_URL`` set to the new database.

The audit log moves byte for byte, so ``python -m layers audit verify`` on the target checks
the same chain (and the same anchor files) as before. Database-generated columns (the PostGIS
``geom`` columns) are not copied: the target computes its own. Exit codes: 0 copied and
verified, 1 refused or verification failed (the message says which table and why), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from layers.db import Database, DatabaseError
from layers.models import Base

log = logging.getLogger(__name__)

BATCH = 5_000
CHUNK_IDS = 10_000
#: tables whose rows the migrations themselves write (the audit chain's head row): they are
#: not "data" when checking that the target is empty, and are copied as upserts
MIGRATION_ROWS = frozenset({"audit_checkpoint"})
#: tables each database keeps for itself (its triggers write them): never copied or compared
DERIVED_TABLES = frozenset({"layer_versions"})


def _data_tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in DERIVED_TABLES]


class MigrateDbError(RuntimeError):
    """The copy cannot go ahead or did not verify; the message says what and how to fix it."""


@dataclass
class TableReport:
    """What ``copy_database`` did to one table (part of its ``CopyReport``)."""

    name: str
    source_rows: int = 0
    target_rows: int = 0
    copied: int = 0
    deleted: int = 0
    source_sha256: str = ""
    target_sha256: str = ""

    @property
    def ok(self) -> bool:
        """Return True when counts and checksums agree."""
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


@dataclass
class CopyReport:
    """The outcome of ``copy_database``: one ``TableReport`` per table, in copy order."""

    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Return True when every table verified."""
        return all(t.ok for t in self.tables)

    def summary(self) -> str:
        """Return a printable table of counts and checksums."""
        lines = [f"{'table':24} {'source':>11} {'target':>11} {'copied':>10}  sha256 (first 16)"]
        for t in self.tables:
            mark = "ok" if t.ok else "MISMATCH"
            lines.append(
                f"{t.name:24} {t.source_rows:>11,} {t.target_rows:>11,} {t.copied:>10,}  "
                f"{t.source_sha256[:16]} {mark}"
            )
        lines.append(f"{'verified' if self.ok else 'NOT verified'} in {self.seconds:.1f} s")
        return "\n".join(lines)


def _copy_columns(table: Table) -> list:
    # generated columns (PostGIS geom) are the target's own business
    return [c for c in table.columns if c.computed is None]


def _pk(table: Table):
    cols = list(table.primary_key.columns)
    if len(cols) != 1:
        raise MigrateDbError(f"table {table.name}: expected one primary-key column")
    return cols[0]


def _self_refs(table: Table) -> list[str]:
    return [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]


def _canonical(value) -> bytes:
    if value is None:
        return b"\x00"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds").encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _row_digest(h, row) -> None:
    for v in row:
        b = _canonical(v)
        h.update(len(b).to_bytes(4, "big"))
        h.update(b)


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """Yield a connection reading one consistent snapshot of ``db`` (read-only)."""
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
        elif db.dialect == "sqlite":
            # pysqlite opens no transaction for SELECTs: BEGIN by hand, so every read below
            # sees the same WAL snapshot while the running app keeps committing
            conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("ROLLBACK")
        else:
            with conn.begin():
                yield conn


def _chunks(conn: Connection, table: Table) -> dict[int, tuple[int, str]]:
    """Return {chunk number: (rows, sha256)} over ranges of CHUNK_IDS primary-key values."""
    pk = _pk(table)
    cols = _copy_columns(table)
    out: dict[int, tuple[int, str]] = {}
    current, h, n = None, None, 0
    # streaming is a statement option: on the Connection it would stick to it (and turn the
    # target's SAVEPOINTs into server-side cursors)
    result = conn.execute(
        select(*cols).order_by(pk).execution_options(stream_results=True, yield_per=BATCH)
    )
    pk_pos = cols.index(pk)
    for row in result:
        chunk = int(row[pk_pos]) // CHUNK_IDS
        if chunk != current:
            if current is not None:
                out[current] = (n, h.hexdigest())
            current, h, n = chunk, hashlib.sha256(), 0
        _row_digest(h, row)
        n += 1
    if current is not None:
        out[current] = (n, h.hexdigest())
    return out


def _table_sha(chunks: dict[int, tuple[int, str]]) -> tuple[int, str]:
    h = hashlib.sha256()
    rows = 0
    for k in sorted(chunks):
        n, sha = chunks[k]
        rows += n
        h.update(f"{k}:{n}:{sha};".encode())
    return rows, h.hexdigest()


def _insert_rows(conn: Connection, table: Table, rows: list[dict], *, upsert: bool) -> None:
    if not rows:
        return
    if upsert:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported targets
            raise MigrateDbError(f"--sync into {conn.dialect.name} is not supported")
        stmt = dialect_insert(table)
        pk = _pk(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[pk.name],
            set_={c.name: stmt.excluded[c.name] for c in _copy_columns(table) if c is not pk},
        )
        conn.execute(stmt, rows)
    else:
        conn.execute(table.insert(), rows)


def _describe_refusal(conn: Connection, table: Table, rows: list[dict], exc: DBAPIError) -> str:
    """Return which row the target refuses and why (tried one by one in a savepoint)."""
    pk = _pk(table)
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), [row])
        except DBAPIError as row_exc:
            reason = str(row_exc.orig).splitlines()[0]
            return f"table {table.name}, {pk.name}={row[pk.name]}: the target refuses it: {reason}"
    return f"table {table.name}: the target refused a batch: {str(exc.orig).splitlines()[0]}"


def _copy_table(
    src: Connection, dst: Connection, table: Table, ranges: list[tuple[int, int]] | None
) -> int:
    """Copy rows of ``table`` (all, or those whose pk lies in ``ranges``); return how many."""
    cols = _copy_columns(table)
    pk = _pk(table)
    refs = _self_refs(table)
    deferred: list[dict] = []
    stmt = select(*cols).order_by(pk)
    if ranges is not None:
        if not ranges:
            return 0
        stmt = stmt.where(or_(*(and_(pk >= lo, pk < hi) for lo, hi in ranges)))
    copied = 0
    batch: list[dict] = []

    def flush() -> None:
        nonlocal copied
        try:
            with dst.begin_nested():
                _insert_rows(dst, table, batch, upsert=ranges is not None)
        except DBAPIError as exc:
            log.debug("batch refused: %s", exc)
            raise MigrateDbError(_describe_refusal(dst, table, batch, exc)) from exc
        copied += len(batch)
        batch.clear()

    result = src.execute(stmt.execution_options(stream_results=True, yield_per=BATCH))
    for row in result:
        values = dict(row._mapping)
        if refs:  # rows may point at rows later in the table: link them once all are in
            links = {c: values[c] for c in refs if values[c] is not None}
            if links:
                deferred.append({"_pk": values[pk.name], **links})
                for c in links:
                    values[c] = None
        batch.append(values)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    for c in refs:
        items = [{"_pk": d["_pk"], "_v": d[c]} for d in deferred if c in d]
        for start in range(0, len(items), BATCH):
            dst.execute(
                update(table).where(pk == bindparam("_pk")).values({c: bindparam("_v")}),
                items[start : start + BATCH],
            )
    return copied


def _target_is_empty(dst: Database) -> list[str]:
    with dst.engine.connect() as conn:
        return [
            t.name
            for t in _data_tables()
            if t.name not in MIGRATION_ROWS
            and conn.execute(select(func.count()).select_from(t)).scalar()
        ]


def _sync_sequences(conn: Connection, tables: list[Table]) -> None:
    if conn.dialect.name != "postgresql":
        return
    for t in tables:
        pk = _pk(t)
        seq = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": t.name, "c": pk.name}
        ).scalar()
        if seq:
            conn.execute(
                text(f"SELECT setval(:s, COALESCE((SELECT MAX({pk.name}) FROM {t.name}), 0) + 1, "
                     "false)"),
                {"s": seq},
            )  # fmt: skip


def copy_database(
    source: Database, target: Database, *, sync: bool = False, progress: bool = False
) -> CopyReport:
    """Return the report of copying every table of ``source`` into ``target``, verified.

    ``target`` is migrated to the newest schema; it must be empty unless ``sync`` (then only
    the id ranges whose checksums differ are copied again, see the module docstring).

    Raises
    ------
    MigrateDbError
        If the schemas differ, the target is not empty without ``sync``, or the target
        refuses a row (named in the message).
    """
    t0 = time.perf_counter()
    if source.url == target.url:
        raise MigrateDbError("FROM_URL and TO_URL are the same database")
    head = _head_revision()
    have = source.current_revision()
    if have != head:
        raise MigrateDbError(
            f"the source is at schema revision {have or 'none'}, not {head}: upgrade it first "
            f"(python -m layers migrate up --db FROM_URL), then copy"
        )
    target.migrate()
    if not sync:
        busy = _target_is_empty(target)
        if busy:
            raise MigrateDbError(
                f"the target already holds data (tables {', '.join(busy)}); copy into an empty "
                "database, or pass --sync to bring this copy up to date"
            )
    tables = _data_tables()
    report = CopyReport()
    with _snapshot(source) as src, target.engine.connect() as dst:
        src_chunks = {t.name: _chunks(src, t) for t in tables}
        changed_ranges: dict[str, list[tuple[int, int]]] = {}
        for t in tables:
            entry = TableReport(t.name)
            entry.source_rows, entry.source_sha256 = _table_sha(src_chunks[t.name])
            ranges = None
            if sync:
                dst_chunks = _chunks(dst, t)
                changed = sorted(
                    k for k in set(src_chunks[t.name]) | set(dst_chunks)
                    if src_chunks[t.name].get(k) != dst_chunks.get(k)
                )  # fmt: skip
                ranges = changed_ranges[t.name] = [
                    (k * CHUNK_IDS, (k + 1) * CHUNK_IDS) for k in changed
                ]
            if ranges is None and t.name in MIGRATION_ROWS:
                ranges = [(k * CHUNK_IDS, (k + 1) * CHUNK_IDS) for k in src_chunks[t.name]]
                changed_ranges[t.name] = ranges
            entry.copied = _copy_table(src, dst, t, ranges)
            if progress:
                print(f"  {t.name:24} {entry.copied:>11,} rows", file=sys.stderr)
            report.tables.append(entry)
        # rows gone at the source go at the target too, children first
        for t, entry in zip(reversed(tables), reversed(report.tables), strict=True):
            if t.name in changed_ranges:
                gone = _gone_ids(src, dst, t, changed_ranges[t.name])
                for start in range(0, len(gone), BATCH):
                    dst.execute(delete(t).where(_pk(t).in_(gone[start : start + BATCH])))
                entry.deleted = len(gone)
        _sync_sequences(dst, tables)
        dst.commit()
        for t, entry in zip(tables, report.tables, strict=True):
            entry.target_rows, entry.target_sha256 = _table_sha(_chunks(dst, t))
    report.seconds = time.perf_counter() - t0
    return report


def _gone_ids(
    src: Connection, dst: Connection, table: Table, ranges: list[tuple[int, int]]
) -> list[int]:
    """Return the ids of ``table`` in ``ranges`` that the target has and the source has not."""
    if not ranges:
        return []
    pk = _pk(table)
    where = or_(*(and_(pk >= lo, pk < hi) for lo, hi in ranges))
    have = set(src.execute(select(pk).where(where)).scalars())
    return sorted(i for i in dst.execute(select(pk).where(where)).scalars() if i not in have)


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from layers.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


# -- CLI -------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate-db",
        help="copy a whole deployment to another database (e.g. SQLite -> PostGIS), verified",
        description=(__doc__ or "").split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("from_url", metavar="FROM_URL", help="source database URL")
    p.add_argument("to_url", metavar="TO_URL", help="target database URL (migrated, empty)")
    p.add_argument("--sync", action="store_true",
                   help="bring an earlier copy up to date (run with the app stopped)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no per-table lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        source, target = Database(args.from_url), Database(args.to_url)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = copy_database(source, target, sync=args.sync, progress=not args.no_progress)
    except MigrateDbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"error: database: {str(exc.orig).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        source.dispose()
        target.dispose()
    print(report.summary())
    if not report.ok:
        bad = ", ".join(t.name for t in report.tables if not t.ok)
        print(f"error: counts or checksums differ for {bad}; nothing was deleted at the "
              "source; run again with --sync (app stopped)", file=sys.stderr)  # fmt: skip
        return 1
    return 0
