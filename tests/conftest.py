"""Shared pytest fixtures for GridSight.

``shared_data`` locates ``../shared/data`` (the test-only data set that sits beside the
repository). Where it is absent the tests that use it skip, except in CI (``CI`` set), where
a missing ``../shared`` is an error: CI always has it, so a skip there would hide a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the path of ../shared/data; skip where absent (never in CI)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI"):
        pytest.fail(f"../shared/data is missing in CI (looked in {SHARED_DATA})")
    pytest.skip("../shared/data is absent (tests that use the shared data set)")


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
