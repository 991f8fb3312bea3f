"""Test databases on both backends: SQLite files and fresh PostgreSQL/PostGIS databases.

The layer, API and dispatch tests run once per backend through the module-scoped
``db_backend`` fixture (``tests/conftest.py``). ``db_url(path, backend)`` turns the path a
test would use for its SQLite file into a database URL: the file itself on SQLite, a new,
empty PostgreSQL database on PostGIS (the same one for the same path, so a test can reopen
"its" database or hand it to a server process it starts).

PostgreSQL comes from ``GRIDSIGHT_TEST_PG_URL`` (a superuser URL; ``.ci/services.sh`` starts
Debian's cluster and exports it). Without it the PostGIS variants skip on a developer's
machine, and fail in CI (``CI`` set): a PostGIS test skipped in CI would hide a broken backend.
"""

from __future__ import annotations

import atexit
import itertools
import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.absent import missing

BACKENDS = ("sqlite", "postgis")
PG_ENV = "GRIDSIGHT_TEST_PG_URL"
_PREFIX = f"gs_test_{os.getpid()}_{uuid.uuid4().hex[:6]}_"

_urls: dict[str, str] = {}
_created: list[str] = []
_counter = itertools.count()
_admin_engine = None
_checked: bool | str | None = None


def pg_admin_url() -> str | None:
    """Return the PostgreSQL superuser URL the tests may use, or None."""
    return os.environ.get(PG_ENV) or None


def _admin():
    global _admin_engine
    if _admin_engine is None:
        _admin_engine = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", future=True)
    return _admin_engine


def require_postgis() -> None:
    """Return if PostgreSQL with PostGIS answers; skip (fail in CI) otherwise."""
    global _checked
    if _checked is None:
        if not pg_admin_url():
            _checked = f"{PG_ENV} is not set (run `. .ci/services.sh` to start PostgreSQL)"
        else:
            try:
                with _admin().connect() as conn:
                    has = conn.execute(
                        text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
                    ).scalar()
                _checked = True if has else "PostgreSQL answers but PostGIS is not installed"
            except Exception as exc:  # noqa: BLE001 - any connection failure means "absent"
                _checked = f"PostgreSQL at {PG_ENV} does not answer: {exc}"
    if _checked is not True:
        missing("PostgreSQL with PostGIS", str(_checked))


def new_pg_database() -> str:
    """Return the URL of a new, empty PostgreSQL database (dropped when the tests end)."""
    require_postgis()
    name = f"{_PREFIX}{next(_counter)}"
    with _admin().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    _created.append(name)
    return make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)


def db_url(path: str | os.PathLike, backend: str = "sqlite") -> str:
    """Return the database URL of ``path`` on ``backend`` (the same URL for the same path)."""
    if backend == "sqlite":
        return f"sqlite:///{path}"
    if backend != "postgis":
        raise ValueError(f"unknown test backend {backend!r}; use one of {BACKENDS}")
    key = str(Path(path).resolve())
    if key not in _urls:
        _urls[key] = new_pg_database()
    return _urls[key]


def new_db(path, backend: str = "sqlite"):
    """Return a migrated Database for ``path`` on ``backend`` holding the fixture city.

    The ids are in ``.city``; ``backend`` is "sqlite" (the file at ``path``) or "postgis" (a
    fresh PostgreSQL database, see above).
    """
    from bench.incident_city import build_city
    from layers.db import Database

    db = Database(db_url(path, backend))
    db.migrate()
    db.city = build_city(db)  # type: ignore[attr-defined]
    return db


def copy_database(src_path, dst_path, backend: str = "sqlite") -> str:
    """Return the URL of a copy of the database of ``src_path`` made for ``dst_path``.

    SQLite copies the file (dispose the source's engine first, so the WAL is checkpointed);
    PostgreSQL creates the copy from the source as a template (no one may be connected).
    """
    if backend == "sqlite":
        import shutil

        shutil.copy(src_path, dst_path)
        return db_url(dst_path, backend)
    require_postgis()
    src = make_url(db_url(src_path, backend)).database
    name = f"{_PREFIX}{next(_counter)}"
    with _admin().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{src}"'))
    _created.append(name)
    url = make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    _urls[str(Path(dst_path).resolve())] = url
    return url


@atexit.register
def _drop_created() -> None:
    if not _created or _admin_engine is None:
        return
    with _admin_engine.connect() as conn:
        for name in _created:
            try:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001 - best effort: a leftover database is harmless
                print(f"could not drop test database {name}: {exc}")
    _admin_engine.dispose()
