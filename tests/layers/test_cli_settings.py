"""The CLIs read the web app's settings tree: same database, same data folder, from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(**gridsight: str) -> dict[str, str]:
    """Return a clean environment: no GRIDSIGHT_* of the caller, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSIGHT_")}
    env["PYTHONPATH"] = str(REPO)
    env.update({f"GRIDSIGHT_{k.upper()}": v for k, v in gridsight.items()})
    return env


def _run(module: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=180)  # fmt: skip


def test_layers_cli_puts_the_default_database_under_the_data_dir_from_another_folder(tmp_path):
    data, elsewhere = tmp_path / "x", tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _run("layers", "migrate", cwd=elsewhere, env=_env(data_dir=str(data)))
    assert r.returncode == 0, r.stderr
    assert (data / "gridsight.sqlite").is_file()
    assert not (elsewhere / "data").exists()  # the old default: ./data of the current folder


def test_layers_cli_and_app_open_the_same_database(tmp_path, monkeypatch):
    from dashboard.app import create_app
    from layers.settings import load_settings

    data, elsewhere = tmp_path / "x", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(data_dir=str(data))
    r = _run("layers", "users", "add", "cli-made", "--role", "auditor", cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    monkeypatch.chdir(elsewhere)
    settings = load_settings(env, seed_on_start=False, simulator=False)
    assert settings.db.url == f"sqlite:///{(data / 'gridsight.sqlite').resolve()}"
    app = create_app(settings, start_background=False)
    try:
        from layers.services import users
        from layers.services.transaction import run

        assert run(app.server.config["GRIDSIGHT"].db, users.get_user, "cli-made") is not None
    finally:
        from dashboard.server import shutdown_services

        shutdown_services(app.server.config["GRIDSIGHT"])


def test_a_bad_setting_stops_every_cli_with_one_line_naming_it(tmp_path):
    env = _env(data_dir=str(tmp_path / "d"), port="99999", timezone="Mars/Olympus")
    for module, args in (("layers", ("migrate",)), ("dashboard", ())):
        r = _run(module, *args, cwd=tmp_path, env=env)
        assert r.returncode == 2, (module, r.stderr)
        assert "GRIDSIGHT_PORT" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _run("streams", "redact", "in.png", "out.png", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "GRIDSIGHT_TIMEZONE" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
