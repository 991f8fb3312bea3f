"""Every setting is documented in README.md with its description (Datasette's habit)."""

from __future__ import annotations

from pathlib import Path

from dashboard.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_readme():
    missing = []
    for name, field in Settings.model_fields.items():
        env = f"GRIDSIGHT_{name.upper()}"
        row = next((ln for ln in README.splitlines() if ln.startswith(f"| `{env}`")), None)
        if row is None or (field.description or "x") not in row:
            missing.append(env)
    assert not missing, f"document these settings in README.md's settings table: {missing}"


def test_every_setting_has_a_description():
    assert all(f.description for f in Settings.model_fields.values())


def test_settings_reject_unknown_keyword():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        Settings(no_such_setting=1)
