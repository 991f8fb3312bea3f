"""CLI exports are audited before their file appears, and their cells cannot run as formulas.

``python -m layers audit export`` and ``python -m layers export`` write to a staging file,
commit the audit record, then rename: an export that cannot be audited (a sealed log and the
wrong key) leaves no file, and the record is written while the file is not there yet. Cells
led by ``= + - @ | %`` (defusedcsv's set) or a tab or CR are neutralised the same way on every
export path (the audit CSV, layer CSVs, the CSV writer).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from defusedcsv import csv as defused_csv

from bench.operator_city import build_city
from dashboard.app import create_app
from layers import exportsafe
from layers.db import Database
from layers.io import export_layer
from layers.services import audit
from layers.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
FORMULAS = ["=1+1", "+1", "-x", "@SUM(A1)", "|calc", "%SystemRoot%", "\t=1", "\r=1",
            "=cmd|' /C calc'!A0", "%0A=1"]  # fmt: skip


@pytest.fixture
def keyed_app(tmp_path):
    """Return (settings, db) of an app whose audit log is sealed with its key file."""
    settings = load_settings({}, db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}",
                             data_dir=tmp_path / "data", seed_on_start=False,
                             simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    build_city(db, incidents=0)
    assert settings.audit_key_path().exists()
    yield settings, db
    db.dispose()


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSIGHT_")}
    return subprocess.run([sys.executable, "-m", "layers", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _wrong_key(tmp_path) -> Path:
    wrong = tmp_path / "other.audit-key"
    wrong.write_text("ab" * 32 + "\n")
    wrong.chmod(0o600)
    return wrong


def _last(db) -> audit.AuditEntry:
    with db.session() as s:
        return audit.search(s, limit=1)[0]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("command", ["audit", "layer"])
def test_an_export_that_cannot_be_audited_leaves_no_file(keyed_app, tmp_path, command):
    settings, db = keyed_app
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("log.csv" if command == "audit" else "grids.geojson")
    args = (["audit", "export", str(out)] if command == "audit"
            else ["export", "grids", str(out)])  # fmt: skip
    before = _last(db).seq
    r = _cli(*args, "--db", settings.db.url, "--key", str(_wrong_key(tmp_path)))
    assert r.returncode in (1, 2), r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in r.stderr
    assert "not the key" in r.stderr
    assert not out.exists() and _leftovers(out_dir) == []
    assert _last(db).seq == before
    ok = _cli(*args, "--db", settings.db.url, "--key", str(settings.audit_key_path()))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert out.exists() and _leftovers(out_dir) == []
    entry = _last(db)
    if command == "audit":
        assert (entry.action, entry.target) == ("audit.export", str(out))
    else:
        assert entry.action == "layer.export" and json.loads(entry.detail)["file"] == str(out)
    verify = _cli("audit", "verify", "--db", settings.db.url, "--key",
                  str(settings.audit_key_path()))  # fmt: skip
    assert verify.returncode == 0, verify.stdout


@pytest.mark.parametrize("name", ["log.csv", "grids.csv", "grids.shp", "grids.gpkg"])
def test_the_record_is_written_before_the_file_appears(keyed_app, tmp_path, monkeypatch, name):
    """While the audit record is written the file is not there; if the record fails, it
    never is (a shapefile's sidecars neither, an existing GeoPackage stays as it was)."""
    _settings, db = keyed_app
    out = tmp_path / "out" / name
    out.parent.mkdir()
    if name.endswith(".gpkg"):
        export_layer(db, "districts", out)  # an existing GeoPackage with another layer
        before = out.read_bytes()
    seen: list[bool] = []
    real = audit.record

    def record(session, **kw):
        seen.append(out.exists() and not name.endswith(".gpkg"))
        if kw["action"] in ("audit.export", "layer.export"):
            raise audit.AuditError("the audit store refused the record")
        return real(session, **kw)

    monkeypatch.setattr(audit, "record", record)
    with pytest.raises(audit.AuditError):
        if name == "log.csv":
            audit.export_csv(db, out, actor="cli:test", role="")
        else:
            export_layer(db, "grids", out)
    assert seen == [False]
    if name.endswith(".gpkg"):
        assert out.read_bytes() == before
        assert sorted(p.name for p in out.parent.iterdir()) == [name]
    else:
        assert list(out.parent.iterdir()) == []
    monkeypatch.setattr(audit, "record", real)
    if name == "log.csv":
        audit.export_csv(db, out, actor="cli:test", role="")
    else:
        export_layer(db, "grids", out)
    assert out.exists() and _leftovers(out.parent) == []
    if name.endswith(".shp"):
        assert {p.suffix for p in out.parent.iterdir()} >= {".shp", ".shx", ".dbf", ".prj"}


# -- formula cells ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", FORMULAS + ["-12.5", "1,200", "a|b", "50%", "plain"])
def test_safe_text_agrees_with_defusedcsv(value):
    """Every path neutralises a cell the way defusedcsv does (plus tab- and CR-led cells),
    and the CSV writer then finds nothing left to change."""
    buf = io.StringIO()
    defused_csv.writer(buf).writerow([value])
    by_defusedcsv = next(csv.reader(io.StringIO(buf.getvalue())))[0]
    ours = exportsafe.safe_text(value)
    if value.startswith(("\t", "\r")):
        assert ours == "'" + value
    else:
        assert ours == by_defusedcsv
    buf = io.StringIO()
    exportsafe.csv_writer(buf).writerow([value])
    assert next(csv.reader(io.StringIO(buf.getvalue())))[0] == ours


def _is_formula(cell: str) -> bool:
    return cell.startswith(("=", "+", "-", "@", "|", "%", "\t", "\r"))


def test_the_audit_csv_neutralises_pipe_percent_and_every_formula_lead(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    db.migrate()
    for value in FORMULAS:
        with db.session() as s:
            audit.record(s, actor=value.strip() or "x", role="", action="login.failed",
                         target=value)  # fmt: skip
    _n, body = audit.export_csv(db, actor="auditor", role="auditor")
    rows = list(csv.DictReader(io.StringIO(body)))
    cells = [r[k] for r in rows for k in ("actor", "role", "action", "target", "detail")]
    assert not [c for c in cells if _is_formula(c)]
    targets = [r["target"] for r in rows if r["action"] == "login.failed"]
    assert (
        "'\\|calc" in targets and "'%SystemRoot%" in targets and "'=cmd\\|' /C calc'!A0" in targets
    )


def test_layer_csv_cells_led_by_pipe_or_percent_are_neutralised(keyed_app, tmp_path):
    from sqlalchemy import select

    from layers.models import Grid

    _settings, db = keyed_app
    with db.session() as s:
        grids = list(s.scalars(select(Grid).order_by(Grid.id)))
        grids[0].name, grids[1].name = "|calc", "%SystemRoot%"
    out = tmp_path / "grids.csv"
    export_layer(db, "grids", out)
    with open(out, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    names = [r["name"] for r in rows]
    assert "'\\|calc" in names and "'%SystemRoot%" in names
    assert not [r for r in rows for c in r.values() if isinstance(c, str) and _is_formula(c)
                and not exportsafe._NUMBER.match(c)]  # fmt: skip
