"""Fast bulk writing for the seed: batched inserts, column-array writers, sequence sync,
SQLite bulk-load mode and the progress display.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


CHUNK = 20_000  # rows per executemany batch


def chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    """Return slices cutting ``n`` rows into batches of at most ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def insert_rows(session: Session, model, rows: list[dict]) -> None:
    """Insert row dicts into ``model``'s table in batches (Core executemany)."""
    for sl in chunks(len(rows)):
        session.execute(insert(model.__table__), rows[sl])


def datetimes(seconds: np.ndarray) -> np.ndarray:
    """Return aware UTC datetimes (object array) for epoch seconds; NaN gives None."""
    import pandas as pd

    s = np.asarray(seconds, dtype=float)
    out = np.full(len(s), None, dtype=object)
    ok = np.isfinite(s)
    if ok.any():
        out[ok] = pd.to_datetime(s[ok], unit="s", utc=True).to_pydatetime()
    return out


def sync_sequences(session: Session, models) -> None:
    """On PostgreSQL, move id sequences past the explicit ids the seed inserted."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model in models:
        t = model.__tablename__
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(MAX(id), 1)) FROM {t}"
            )
        )


class Progress:
    """A tqdm bar when asked for, else log lines: one step per stage, counts for long ones."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, leave=True)

    def stage(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description(label)
        else:
            log.info("seed: %s", label)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def bulk_load(session: Session, tables: tuple[str, ...]) -> Iterator[None]:
    """On SQLite, load big tables fast: a large page cache, secondary indexes built after.

    Keeping a dozen random-order indexes up to date row by row makes SQLite churn pages once
    the tables outgrow its cache; building each index once at the end sorts instead. The
    indexes are recreated from their own stored SQL, and all of it runs inside the seed's
    transaction, so a failed seed rolls back to the indexes it started with.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    old_cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql("PRAGMA cache_size=-262144")  # KiB: 256 MB
    marks = ", ".join("?" * len(tables))
    indexes = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({marks}) ORDER BY name",
        tables,
    ).all()
    quote = conn.dialect.identifier_preparer.quote
    try:
        for name, _ in indexes:
            conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
        yield
        for _, sql in indexes:
            conn.exec_driver_sql(sql)
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(old_cache)}")


class BulkWriter:
    """Fast executemany inserts of column arrays for the big tables (incidents, events).

    On SQLite it hands tuples straight to the driver's ``executemany``, with time stamps
    already in SQLAlchemy's SQLite storage format ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC):
    per-row parameter and type processing would cost more than the insert itself at a million
    rows, and what the ORM reads back is the same as if it had written the rows. Other
    databases go through SQLAlchemy Core with the models' own tables and aware datetimes.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect
        self.sqlite = self.dialect.name == "sqlite"

    def times(self, seconds: np.ndarray) -> np.ndarray:
        """Return whole epoch seconds as values for a UTCDateTime column (NaN → None)."""
        s = np.asarray(seconds, dtype=float)
        if not self.sqlite:
            return datetimes(s)
        out = np.full(len(s), None, dtype=object)
        ok = np.isfinite(s)
        if ok.any():
            # "YYYY-MM-DDTHH:MM:SS" as bytes, 'T' → ' ', then ".000000": all in C
            iso = np.round(s[ok]).astype("int64").astype("datetime64[s]").astype("S19")
            buf = np.empty((len(iso), 26), np.uint8)
            buf[:, :19] = iso.view(np.uint8).reshape(-1, 19)
            buf[:, 10] = ord(" ")
            buf[:, 19:] = np.frombuffer(b".000000", np.uint8)
            out[ok] = buf.view("S26").ravel().astype("U26")
        return out

    def insert(self, model, columns: dict[str, np.ndarray]) -> None:
        """Insert rows given as equally long column arrays (numpy or lists)."""
        keys = list(columns)
        if not len(columns[keys[0]]):
            return
        values = [np.asarray(columns[k]).tolist() for k in keys]
        if self.sqlite:
            quote = self.dialect.identifier_preparer.quote
            sql = (
                f"INSERT INTO {quote(model.__tablename__)} ({', '.join(quote(k) for k in keys)}) "
                f"VALUES ({', '.join('?' * len(keys))})"
            )
            self.session.connection().exec_driver_sql(sql, list(zip(*values, strict=True)))
        else:
            rows = [dict(zip(keys, vals, strict=True)) for vals in zip(*values, strict=True)]
            self.session.execute(insert(model.__table__), rows)
