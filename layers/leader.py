"""Deployment-wide locks without new tables: a leader lease and a startup lock.

Several web workers (and machines) share one database. Work that must happen once per
deployment goes through these locks:

- ``LeaderLease``: held by at most one process at a time, released by the operating system
  or the database server when that process dies. On PostgreSQL a session-level
  ``pg_try_advisory_lock`` on a dedicated connection; on a SQLite file an ``fcntl.flock`` on
  ``<database>.leader.lock`` next to it (SQLite is one machine anyway). An in-memory SQLite
  database belongs to one process, which is always the leader.
- ``LeaderElector``: tries to take the lease at once and then every ``retry_s`` seconds;
  while it holds it, it runs the deployment's background services (incident simulator,
  SLA escalation, retention purge) and checks the lease is still held, stopping them if
  the lease is lost (the database connection died). A follower takes over within
  ``retry_s`` of the leader's death.
- ``startup_lock``: serialises migrations and the seed-on-first-start step of workers that
  start at the same moment (PostgreSQL: a blocking advisory lock; SQLite: a blocking flock
  on ``<database>.startup.lock``).

The SQLite lock files hold the holder's pid and host, for operators (and tests) to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from layers.db import Database, advisory_key, holder_text

log = logging.getLogger(__name__)

LEADER = "leader"
STARTUP = "startup"


class LeaseError(RuntimeError):
    """A lock cannot be used on this database (e.g. an unsupported backend)."""


def sqlite_lock_path(db: Database, name: str) -> Path | None:
    """Return ``<database file>.<name>.lock`` for a SQLite file database (None: in memory)."""
    return db.lock_path(name)


def read_holder(path: Path) -> dict[str, str]:
    """Return the holder fields (pid, host, since) written into a SQLite lock file."""
    try:
        line = path.read_text().strip()
    except OSError:
        return {}
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


class LeaderLease:
    """A lease held by at most one process per database; see the module docstring.

    Parameters
    ----------
    db : Database
        The deployment's database.
    name : str
        Which lease (``"leader"`` for the background services).
    """

    def __init__(self, db: Database, name: str = LEADER) -> None:
        self.db = db
        self.name = name
        self._fd: int | None = None
        self._conn: Connection | None = None
        self._held = False
        backend = db.dialect
        if backend not in ("sqlite", "postgresql"):
            raise LeaseError(
                f"leader lease: backend {backend!r} is not supported; use SQLite or PostgreSQL"
            )
        self.backend = backend
        self.path = sqlite_lock_path(db, name) if backend == "sqlite" else None

    @property
    def held(self) -> bool:
        """Return True if this object holds the lease (as of the last acquire/check)."""
        return self._held

    def try_acquire(self) -> bool:
        """Return True if the lease is (now) held by this object; never blocks."""
        if self._held:
            return True
        if self.backend == "postgresql":
            self._held = self._pg_try()
        elif self.path is None:
            self._held = True  # in-memory SQLite: this process is the whole deployment
        else:
            self._held = self._flock_try()
        if self._held:
            log.info("took the %s lease (%s)", self.name, self.backend)
        return self._held

    def check(self) -> bool:
        """Return True if the lease is still held (PostgreSQL: its connection is alive)."""
        if not self._held:
            return False
        if self.backend == "postgresql" and self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except SQLAlchemyError:
                log.warning("lost the %s lease: its database connection died", self.name)
                self._drop_pg()
                self._held = False
        return self._held

    def release(self) -> None:
        """Give the lease up (idempotent)."""
        if self.backend == "postgresql":
            if self._conn is not None and self._held:
                try:
                    self._conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(self.name)}
                    )
                    self._conn.commit()
                except SQLAlchemyError:
                    log.debug("advisory unlock failed; closing the connection releases it")
            self._drop_pg()
        elif self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._held:
            log.info("released the %s lease", self.name)
        self._held = False

    # -- backends ---------------------------------------------------------------------
    def _pg_try(self) -> bool:
        try:
            if self._conn is None:
                # a connection of its own, outside the pool's rotation, for the session lock
                self._conn = self.db.engine.connect()
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(self.name)}
                ).scalar()
            )
            self._conn.commit()
        except SQLAlchemyError as exc:
            log.warning("cannot try the %s lease (%s); retrying later", self.name, exc)
            self._drop_pg()
            return False
        if not got:
            self._drop_pg()  # do not keep an idle connection per follower
        return got

    def _drop_pg(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.invalidate()  # never back to the pool: the lock dies with it
                self._conn.close()
            self._conn = None

    def _flock_try(self) -> bool:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, holder_text().encode())
        self._fd = fd
        return True


def startup_lock(db: Database, timeout_s: float = 600.0):
    """Return the deployment's startup lock (migrate, seed on first start) as a context manager.

    ``Database.exclusive("startup")``: blocks until free; raises ``DatabaseError`` when not
    granted within ``timeout_s`` on PostgreSQL.
    """
    return db.exclusive(STARTUP, timeout_s)


Service = Any  # anything with stop() (and optionally a running property)


class LeaderElector:
    """Run ``start_services`` while this process holds the lease; see the module docstring.

    Parameters
    ----------
    lease : LeaderLease
    start_services : callable
        Called on taking the lease; returns {name: service}. Each service has ``stop()``.
    retry_s : float
        Seconds between two attempts of a follower (and two checks of the leader).
    """

    def __init__(
        self,
        lease: LeaderLease,
        start_services: Callable[[], dict[str, Service]],
        *,
        retry_s: float = 15.0,
    ) -> None:
        if retry_s <= 0:
            raise ValueError(f"retry_s: {retry_s!r}; give a positive number of seconds")
        self.lease = lease
        self.start_services = start_services
        self.retry_s = float(retry_s)
        self.services: dict[str, Service] = {}
        self.terms = 0  # how many times this process became leader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """Return True while this process holds the lease and runs the services."""
        return self.lease.held

    def start(self) -> LeaderElector:
        """Try the lease now (services start before this returns if it is free); return self."""
        self._tick()
        self._thread = threading.Thread(target=self._run, name="gridsight-leader", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the services, give the lease up and end the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._lock:
            self._stop_services()
            self.lease.release()

    def _run(self) -> None:
        while not self._stop.wait(self.retry_s):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the elector must outlive one bad attempt
                log.exception("leader election attempt failed; retrying")

    def _tick(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self.lease.held:
                if not self.lease.check():
                    self._stop_services()
                return
            if self.lease.try_acquire():
                self.terms += 1
                try:
                    self.services = self.start_services()
                except Exception:  # noqa: BLE001 - a leader without services helps nobody
                    log.exception("starting the background services failed; giving up the lease")
                    self._stop_services()
                    self.lease.release()

    def _stop_services(self) -> None:
        for name, service in list(self.services.items()):
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                log.exception("stopping %s failed", name)
        self.services = {}
