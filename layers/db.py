"""The one place that opens database connections: engine, sessions and migrations.

Every other module asks a ``Database`` for a session (``with db.session() as s: ...``);
pages, routes and streams never create engines or write SQL themselves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_DB_URL = "sqlite:///data/gridsight.sqlite"


_local_locks: dict[tuple[int, str], threading.Lock] = {}


class DatabaseError(RuntimeError):
    """Raised when the database cannot be opened or migrated; the message says how to fix it."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets readers (map refreshes) run while a writer (the simulator, an import) commits;
    # synchronous=NORMAL in WAL mode survives a process crash (kill -9) without losing
    # committed transactions.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """Return an Engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise DatabaseError(
            f"database URL {url!r} is not valid ({exc}); use e.g. sqlite:///data/gridsight.sqlite "
            "or postgresql+psycopg://user@host/db"
        ) from exc
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
            parsed = parsed.set(drivername="postgresql+psycopg")
            url = parsed.render_as_string(hide_password=False)
        if parsed.get_driver_name() == "psycopg":
            try:
                import psycopg  # noqa: F401 - only to give a clear error when it is missing
            except ImportError as exc:
                raise DatabaseError(
                    "a PostgreSQL URL needs the psycopg driver: pip install -r "
                    "requirements-cluster.txt"
                ) from exc
    if parsed.get_backend_name() == "sqlite":
        db_path = parsed.database
        if db_path and db_path != ":memory:":
            folder = Path(db_path).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the folder {folder} for the SQLite database ({exc.strerror}); "
                    "set GRIDSIGHT_DB_URL or --db to a writable location"
                ) from exc
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif parsed.get_backend_name() == "postgresql":
        # a server that restarted or dropped idle connections must not fail the next request;
        # 5 + 15 connections per process: 3 web workers stay well under max_connections=100
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=15, pool_timeout=30)
        kwargs["connect_args"] = {"application_name": "gridsight", "connect_timeout": 10}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """Return sessions on one engine; owns migrations for that database."""

    def __init__(self, url: str = DEFAULT_DB_URL, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False, future=True)

    @property
    def dialect(self) -> str:
        """Return the backend name ("sqlite", "postgresql", ...)."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends, roll back if it raises."""
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold a lock named ``name`` across every process using this database while the block runs.

        PostgreSQL: a session-level advisory lock on its own connection (every machine sees
        it; released if the process dies). SQLite: ``fcntl.flock`` on a lock file beside the
        database file (SQLite is one machine anyway). In-memory SQLite: a process-local lock.
        """
        if self.dialect == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        path = self.engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:":
            with _local_locks.setdefault((id(self.engine), name), threading.Lock()):
                yield
            return
        import fcntl

        lock_path = Path(path).expanduser().resolve().with_name(f"{Path(path).name}.{name}.lock")
        with open(lock_path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def new_session(self) -> Session:
        """Return an unmanaged session (caller commits and closes); prefer ``session()``."""
        return self._factory()

    # -- migrations -------------------------------------------------------------------
    def _alembic_config(self):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["engine"] = self.engine
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (default: the newest).

        Several web workers starting at once migrate one after the other (``exclusive``):
        the first does the work, the others find the schema current.
        """
        from alembic import command

        with self.exclusive("migrate"):
            command.upgrade(self._alembic_config(), revision)

    def downgrade(self, revision: str = "base") -> None:
        """Downgrade the schema to ``revision`` (default: empty database)."""
        from alembic import command

        command.downgrade(self._alembic_config(), revision)

    def current_revision(self) -> str | None:
        """Return the schema revision stamped in the database, or None if never migrated."""
        if not inspect(self.engine).has_table("alembic_version"):
            return None
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def ping(self) -> bool:
        """Return True if a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - health check reports any failure as down
            log.exception("database ping failed")
            return False

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
