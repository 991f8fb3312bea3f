"""``tests/absent.py``: a missing service skips a test on a laptop and fails it in CI."""

from __future__ import annotations

import pytest

from tests.absent import in_ci, missing, require_executable, require_service


@pytest.mark.parametrize(
    ("value", "ci"),
    [(None, False), ("", False), ("0", False), ("false", False), ("No", False),
     ("true", True), ("1", True), ("yes", True)],
)  # fmt: skip
def test_ci_is_recognised_by_its_variable(monkeypatch, value, ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_missing_skips_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"PostGIS is missing \(run services.sh\)"):
        missing("PostGIS", "run services.sh")
    with pytest.raises(pytest.skip.Exception, match="no-such-program-here"):
        require_executable("no-such-program-here", "apt-get install it")


def test_missing_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        missing("PostGIS", "run services.sh")
    with pytest.raises(pytest.fail.Exception, match="redis"):
        require_service("redis", "apt-get install redis-server", available=False)


def test_what_is_there_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require_service("python", "it runs this test", available=True)
    assert require_executable("sh", "it is POSIX").endswith("sh")
