"""Shared pytest fixtures for GridSight.

``shared_data`` locates ``../shared/data`` (the test-only data set that sits beside the
repository). Where it is absent the tests that use it skip, except in CI (``CI`` set), where
a missing ``../shared`` is an error: CI always has it, so a skip there would hide a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the path of ../shared/data; skip where absent (never in CI)."""
    from tests.absent import require_service

    require_service("../shared/data", f"the shared test data set, looked in {SHARED_DATA}",
                    available=SHARED_DATA.is_dir())  # fmt: skip
    return SHARED_DATA


@pytest.fixture(scope="module", params=["sqlite", "postgis"])
def db_backend(request) -> str:
    """Return the database backend a module's tests run against, once per backend.

    "postgis" needs ``GRIDSIGHT_TEST_PG_URL`` (``tests/dbs.py``): skipped without it, a
    failure in CI.
    """
    if request.param == "postgis":
        from tests.dbs import require_postgis

        require_postgis()
    return request.param


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """Return the URL of a real Redis server (GRIDSIGHT_TEST_REDIS_URL, or a private one).

    Skips where there is neither, but fails in CI (``tests/redis_server.py``).
    """
    from tests.redis_server import shared_redis_url

    url, server = shared_redis_url(tmp_path_factory.mktemp("redis"))
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def stream_key(redis_url) -> Iterator[str]:
    """Return a Redis stream key of this test's own (deleted afterwards)."""
    import uuid

    import redis

    key = f"gridsight-test:{uuid.uuid4().hex[:12]}"
    yield key
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).delete(key)
    except redis.RedisError:
        pass  # the test may have stopped that server
