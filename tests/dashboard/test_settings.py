"""The settings tree: every setting documented (Datasette's habit), frozen, read in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from layers.settings import (
    SECTIONS,
    Settings,
    SettingsError,
    iter_settings,
    load_settings,
)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_readme():
    missing = []
    for env, section, field in iter_settings():
        row = next((ln for ln in README.splitlines() if ln.startswith(f"| `{env}`")), None)
        section_cell = f"`{section}`" if section else "`data_dir`"
        if row is None or (field.description or "x") not in row:
            missing.append(env)
        elif row.split(" | ")[1] != section_cell:
            missing.append(f"{env} (section column should be {section_cell})")
    assert not missing, f"document these settings in README.md's settings table: {missing}"


def test_every_setting_has_a_description_and_one_variable():
    names = [env for env, _s, _f in iter_settings()]
    assert all(f.description for _e, _s, f in iter_settings())
    assert all(n.startswith("GRIDSIGHT_") for n in names) and len(names) == len(set(names))


def test_settings_reject_unknown_keyword():
    with pytest.raises(SettingsError, match="no_such_setting: unknown setting"):
        load_settings({}, no_such_setting=1)


def test_the_tree_has_its_sections_and_is_frozen():
    s = load_settings({"GRIDSIGHT_PORT": "9000", "GRIDSIGHT_REDIS_STREAM": "gs:x",
                       "GRIDSIGHT_RAY_WORKERS": "3", "GRIDSIGHT_SEED": "7"})  # fmt: skip
    assert set(SECTIONS) == {"db", "web", "events", "video", "privacy", "demo"}
    assert (s.web.port, s.events.redis_stream, s.video.ray_workers, s.demo.seed) == (
        9000, "gs:x", 3, 7)  # fmt: skip
    with pytest.raises(Exception, match="frozen"):
        s.web.port = 1
    with pytest.raises(Exception, match="frozen"):
        s.data_dir = Path("/elsewhere")


def test_settings_never_read_the_environment_unless_loaded(monkeypatch):
    monkeypatch.setenv("GRIDSIGHT_PORT", "9001")
    assert Settings().web.port == 8050 and load_settings().web.port == 9001


def test_the_default_database_lives_in_the_data_dir_whatever_the_current_folder(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "elsewhere" / "x"
    expected = f"sqlite:///{(data / 'gridsight.sqlite').resolve()}"
    assert load_settings({"GRIDSIGHT_DATA_DIR": str(data)}).db.url == expected
    assert load_settings({}, data_dir=data).db.url == expected
    assert Settings(data_dir=data).db.url == expected
    assert (
        load_settings({"GRIDSIGHT_DATA_DIR": str(data), "GRIDSIGHT_DB_URL": ""}).db.url == expected
    )
    # relative data folder: resolved now, so a later chdir (or another process) opens the same file
    assert (
        load_settings({}).db.url == f"sqlite:///{tmp_path.resolve() / 'data' / 'gridsight.sqlite'}"
    )
    given = "postgresql+psycopg://gs@db/gridsight"
    assert (
        load_settings({"GRIDSIGHT_DB_URL": given, "GRIDSIGHT_DATA_DIR": str(data)}).db.url == given
    )


def test_the_app_opens_the_database_in_the_data_dir(tmp_path, monkeypatch):
    from dashboard.app import create_app

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data = tmp_path / "x"
    settings = load_settings({"GRIDSIGHT_DATA_DIR": str(data)}, seed_on_start=False,
                             simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    try:
        assert (data / "gridsight.sqlite").is_file() and not (elsewhere / "data").exists()
        assert app.server.config["GRIDSIGHT"].db.url == settings.db.url
    finally:
        from dashboard.server import shutdown_services

        shutdown_services(app.server.config["GRIDSIGHT"])


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GRIDSIGHT_PORT": "x"}, "GRIDSIGHT_PORT: "),
        ({"GRIDSIGHT_SIMULATOR": "perhaps"}, "GRIDSIGHT_SIMULATOR: "),
        ({"GRIDSIGHT_PRIVACY_FLOOR_TARGETS": "faces"}, "GRIDSIGHT_PRIVACY_FLOOR_TARGETS: not JSON"),
        ({"GRIDSIGHT_RAY_WORKERS": "0"}, "GRIDSIGHT_RAY_WORKERS: "),
        ({"GRIDSIGHT_WORKERS": "2"}, "GRIDSIGHT_WORKERS=2 needs GRIDSIGHT_REDIS_URL"),
    ],
)
def test_a_refused_value_names_its_variable_on_one_line(env, named):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert str(err.value).startswith(named) and "\n" not in str(err.value)
