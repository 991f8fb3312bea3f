"""The app factory builds a working app on a fresh SQLite file; /healthz reports the layers."""

from __future__ import annotations

import pytest

from dashboard.app import create_app
from layers.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}",
        data_dir=tmp_path,
        seed_on_start=False,
        simulator=False,
    )


def test_healthz_on_empty_database(settings):
    app = create_app(settings, start_background=False)
    client = app.server.test_client()
    r = client.get("/healthz")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["status"] == "ok" and doc["db"]["status"] == "ok"
    assert doc["db"]["schema"] is not None
    assert doc["counts"]["grids"] == 0


def test_healthz_reports_database_down(settings):
    app = create_app(settings, start_background=False)
    app.server.config["GRIDSIGHT"].db.engine.dispose()
    # point the context at a database that cannot be opened
    from layers.db import Database

    # a directory is no database file: every connection attempt fails
    app.server.config["GRIDSIGHT"].db = Database(f"sqlite:///{settings.data_dir}")
    r = app.server.test_client().get("/healthz")
    assert r.status_code == 503 and r.get_json()["db"]["status"] == "down"


def test_settings_reject_bad_values(monkeypatch):
    from layers.settings import SettingsError

    monkeypatch.setenv("GRIDSIGHT_PORT", "99999")
    with pytest.raises(SettingsError, match="^GRIDSIGHT_PORT: .*65535"):
        load_settings()
    monkeypatch.setenv("GRIDSIGHT_PORT", "8050")
    monkeypatch.setenv("GRIDSIGHT_DB_URL", "gridsight.sqlite")
    with pytest.raises(SettingsError, match="GRIDSIGHT_DB_URL must be a URL"):
        load_settings()


def test_secret_key_generated_once(settings):
    a = create_app(settings, start_background=False).server.secret_key
    b = create_app(settings, start_background=False).server.secret_key
    assert a == b and len(a) == 64
    assert (settings.data_dir / "secret_key").stat().st_mode & 0o077 == 0


def test_unknown_layer_geojson_is_404(settings):
    from tests.helpers_auth import login

    app = create_app(settings, start_background=False)
    client = app.server.test_client()
    login(client, app, "operator")  # /layers/ is behind the access guard (dashboard/auth.py)
    r = client.get("/layers/nope.geojson")
    assert r.status_code == 404 and "unknown layer" in r.get_json()["error"]


def test_no_seed_over_an_imported_city(tmp_path):
    """Districts imported but no grids yet: first start must not seed over them."""
    import shapely

    from layers.db import Database
    from layers.models import AdminArea

    db = Database(f"sqlite:///{tmp_path / 'gs.sqlite'}")
    db.migrate()
    with db.session() as s:
        a = AdminArea(level="district", code="530102", name="五华区")
        a.geometry = shapely.box(102.6, 25.0, 102.7, 25.1)
        s.add(a)
    settings = load_settings(db_url=db.url, data_dir=tmp_path, seed_on_start=True, simulator=False)
    app = create_app(settings, start_background=False)
    counts = app.server.test_client().get("/healthz").get_json()["counts"]
    assert counts["districts"] == 1 and counts["grids"] == 0
