"""The ``python -m layers`` CLI: exit codes and messages, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

from layers.__main__ import main
from tests.dbs import db_url


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layers", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)  # fmt: skip


def test_migrate_up_current_down(db_backend, tmp_path):
    url = db_url(tmp_path / "c.sqlite", db_backend)
    assert main(["migrate", "up", "--db", url]) == 0
    assert main(["migrate", "current", "--db", url]) == 0
    assert main(["migrate", "down", "--db", url]) == 0


def test_unknown_command_is_usage_error():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_unwritable_database_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli("migrate", "--db", f"sqlite:///{blocker}/sub/x.sqlite")
    assert r.returncode == 2
    assert "cannot create the folder" in r.stderr and "Traceback" not in r.stderr
