"""The one place that opens database connections: engine, sessions and migrations.

Every other module asks a ``Database`` for a session (``with db.session() as s: ...``);
pages, routes and streams never create engines or write SQL themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def advisory_key(name: str) -> int:
    """Return the signed 64-bit PostgreSQL advisory-lock key of the GridSight lock ``name``."""
    digest = hashlib.sha256(f"gridsight:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_text() -> str:
    """Return "pid=… host=… since=…", what a lock file says about the process holding it."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return f"pid={os.getpid()} host={socket.gethostname()} since={now}\n"


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


def _create_private_file(path: Path) -> None:
    """Create an empty SQLite file readable by its owner only (0600), if there is none.

    SQLite would create it with the umask's mode (often 0644: every local user could read
    accounts and the audit log); its -wal and -shm files take the main file's mode.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


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
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                _create_private_file(Path(db_path).expanduser())
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the folder {folder} for the SQLite database ({exc.strerror}); "
                    "set GRIDSIGHT_DB_URL or --db to a writable location"
                ) from exc
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif parsed.get_backend_name() == "postgresql":
        # 5 + 15 connections per process: 3 web workers stay well under max_connections=100
        kwargs.update(pool_size=5, max_overflow=15, pool_timeout=30, pool_recycle=1800)
        kwargs["connect_args"] = {"application_name": "gridsight", "connect_timeout": 10}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        event.listen(engine.pool, "checkout", _ping_if_idle)
        event.listen(engine.pool, "checkin", _mark_checkin)
    return engine


#: a pooled PostgreSQL connection idle longer than this is pinged before it is handed out
PING_IF_IDLE_S = 10.0


def _mark_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    """Ping a connection that sat idle before handing it out (a restarted server, a firewall).

    ``pool_pre_ping`` pings on every checkout: one more round trip per session, which at 100
    incidents/s was a measurable share of the database's CPU. A connection in steady use was
    fine a moment ago; one idle for PING_IF_IDLE_S is checked, and a dead one is replaced
    (the pool retries the checkout on DisconnectionError).
    """
    last = record.info.get("checked_in_at")
    if last is None or time.monotonic() - last < PING_IF_IDLE_S:
        return
    try:
        cur = dbapi_connection.cursor()
        cur.execute("SELECT 1")
        cur.close()
    except Exception as exc:  # noqa: BLE001 - any driver error means this connection is gone
        raise DisconnectionError(f"stale pooled connection: {exc}") from exc


class Database:
    """One database (SQLite file or PostgreSQL/PostGIS): its engine, sessions and migrations."""

    def __init__(self, url: str, engine: Engine | None = None, *, audit_key: Any = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False, future=True)
        self._audit_key = None
        self.audit_key = audit_key

    @property
    def audit_key(self) -> Any:
        """Return the key sealing this database's audit chain (``layers.services.audit_key``).

        Every session of this Database carries it in ``session.info["audit_key"]``, where
        ``layers.services.audit.record`` finds it; None: this process holds no key.
        """
        return self._audit_key

    @audit_key.setter
    def audit_key(self, key: Any) -> None:
        self._audit_key = key
        self._factory.configure(info={"audit_key": key})

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

    @property
    def sessionmaker(self) -> sessionmaker:
        """Return the one session factory of this Database (for session event listeners)."""
        return self._factory

    def lock_path(self, name: str) -> Path | None:
        """Return ``<database file>.<name>.lock`` for a SQLite file (None: in memory, or PG)."""
        if self.dialect != "sqlite":
            return None
        url = self.engine.url
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            return None
        return Path(path).expanduser().resolve().with_name(Path(path).name + f".{name}.lock")

    @contextmanager
    def exclusive(self, name: str, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold the deployment-wide lock ``name`` while the block runs (blocks until free).

        PostgreSQL: a session-level ``pg_advisory_lock`` on a dedicated connection (every
        machine sees it; the server releases it if the process dies), ``lock_timeout`` =
        ``timeout_s``. SQLite file: ``fcntl.flock`` on ``lock_path(name)``, which also holds
        the holder's pid and host for operators to read. In-memory SQLite belongs to one
        process: nothing to serialise.

        Raises
        ------
        DatabaseError
            If the PostgreSQL lock is not granted within ``timeout_s``, or the backend is
            neither SQLite nor PostgreSQL.
        """
        if self.dialect == "postgresql":
            key = advisory_key(name)
            conn = self.engine.connect()
            try:
                try:
                    conn.execute(text(f"SET lock_timeout = {int(timeout_s * 1000)}"))
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                    conn.commit()
                except SQLAlchemyError as exc:
                    raise DatabaseError(
                        f"lock {name!r}: not granted within {timeout_s:.0f} s ({exc}); another "
                        "GridSight process holds it (migrating or seeding), or hung doing so"
                    ) from exc
                try:
                    yield
                finally:
                    with suppress(SQLAlchemyError):
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            finally:
                conn.invalidate()  # never back to the pool with a lock or a lock_timeout
                conn.close()
            return
        if self.dialect != "sqlite":
            raise DatabaseError(f"lock {name!r}: backend {self.dialect!r} is not supported")
        path = self.lock_path(name)
        if path is None:
            yield
            return
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks: the first worker works, the others wait
            os.ftruncate(fd, 0)
            os.write(fd, holder_text().encode())
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the flock

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
