"""What a test does when something it needs is not here: skip on a laptop, fail in CI.

A developer's machine may lack PostgreSQL, Redis, Chromium, GDAL's ``ogrinfo``, node or the
GStreamer RTSP server; those tests skip there. CI has every one of them
(``.ci/apt-packages.txt``, ``.ci/services.sh``, ``requirements-dev.txt``), so a skip in CI would
hide a broken setup or backend: there the same call fails the test. CI is recognised by the
``CI`` environment variable (set to anything but ``""``, ``0``, ``false`` or ``no``), as every
CI service sets it.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Return True when the tests run in CI (``CI`` set to a true value)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, how: str) -> NoReturn:
    """Skip the calling test because ``what`` is missing here; fail it instead in CI.

    ``how`` says how to get it (an apt package, a script, an environment variable).
    """
    message = f"{what} is missing ({how})"
    if in_ci():
        pytest.fail(f"{message}; CI must have it, so this test may not skip there")
    pytest.skip(message)


def require_service(name: str, how: str, *, available: bool) -> None:
    """Return if ``name`` is ``available``; otherwise skip here, fail in CI (``missing``)."""
    if not available:
        missing(name, how)


def require_executable(name: str, how: str) -> str:
    """Return the path of the program ``name``; skip here, fail in CI, when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        missing(f"the program {name}", how)
    return path
