"""The hash-chained audit log on a real SQLite file: intact chains verify; every kind of
tampering (edit, delete, reorder, truncate) is detected; concurrent writers keep the chain
contiguous; search/export/purge work and the purge never touches the log."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from layers.db import Database
from layers.models import Incident
from layers.services import audit
from tests.dbs import db_url

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(db_backend, tmp_path):
    d = Database(db_url(tmp_path / "audit.sqlite", db_backend))
    d.migrate()
    yield d
    d.dispose()


def _fill(db, n=10):
    for i in range(n):
        with db.session() as s:
            audit.record(
                s,
                actor=f"user{i % 3}",
                role="operator",
                action="video.view" if i % 2 else "login.ok",
                target=f"camera:{i}",
                detail={"i": i, "名字": "张三"},
            )


def _sql(db, stmt, **params):
    with db.engine.begin() as conn:
        conn.execute(text(stmt), params)


def test_intact_chain_verifies(db):
    _fill(db, 12)
    report = audit.verify(db)
    assert report.ok, report.summary()
    assert report.count == 12 and report.last_seq == 12
    assert report.first_broken_seq is None


def test_empty_log_verifies(db):
    report = audit.verify(db)
    assert report.ok and report.count == 0


def test_entries_chain_to_each_other(db):
    _fill(db, 3)
    with db.session() as s:
        rows = audit.search(s)[::-1]
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[1].hash == audit.chain_hash(rows[1].prev_hash, audit.entry_body(rows[1]))


@pytest.mark.parametrize(
    "column,value",
    [
        ("actor", "mallory"),
        ("action", "login.failed"),
        ("detail", '{"i":4,"名字":"李四"}'),
        ("target", "camera:99"),
        ("ts", "2020-01-01 00:00:00.000000"),
    ],
)
def test_edited_entry_is_detected(db, column, value):
    _fill(db, 8)
    _sql(db, f"UPDATE audit_log SET {column} = :v WHERE seq = 5", v=value)
    report = audit.verify(db)
    assert not report.ok
    assert report.first_broken_seq == 5
    assert any(p.kind == "edited" and p.seq == 5 for p in report.problems)


def test_edit_with_recomputed_hash_breaks_the_next_link(db):
    """An attacker who also recomputes the edited entry's hash breaks seq 6's prev_hash."""
    _fill(db, 8)
    with db.session() as s:
        from layers.models import AuditEntry

        e = s.query(AuditEntry).filter_by(seq=5).one()
        e.actor = "mallory"
        e.hash = audit.chain_hash(e.prev_hash, audit.entry_body(e))
    report = audit.verify(db)
    assert not report.ok and report.first_broken_seq == 6
    assert report.problems[0].kind in ("edited", "deleted")


def test_deleted_entry_is_detected(db):
    _fill(db, 8)
    _sql(db, "DELETE FROM audit_log WHERE seq = 4")
    report = audit.verify(db)
    assert not report.ok and report.first_broken_seq == 4
    assert any(p.kind == "deleted" for p in report.problems)


def test_reordered_entries_are_detected(db):
    _fill(db, 8)
    # swap the positions of entries 3 and 6 (their seq numbers)
    _sql(db, "UPDATE audit_log SET seq = -3 WHERE seq = 3")
    _sql(db, "UPDATE audit_log SET seq = 3 WHERE seq = 6")
    _sql(db, "UPDATE audit_log SET seq = 6 WHERE seq = -3")
    report = audit.verify(db)
    assert not report.ok and report.first_broken_seq == 3


def test_truncated_tail_is_detected_by_the_checkpoint(db):
    _fill(db, 8)
    _sql(db, "DELETE FROM audit_log WHERE seq > 6")
    report = audit.verify(db)
    assert not report.ok
    assert report.problems[0].kind == "truncated" and report.first_broken_seq == 7


def test_truncation_with_forged_checkpoint_is_caught_by_the_anchor(db, tmp_path):
    _fill(db, 8)
    anchor = tmp_path / "anchor.json"
    doc = audit.write_anchor(db, anchor)
    assert doc["seq"] == 8
    assert audit.verify(db, anchor=anchor).ok
    with db.session() as s:
        from layers.models import AuditEntry

        head = s.query(AuditEntry).filter_by(seq=6).one()
        head_hash = head.hash
    _sql(db, "DELETE FROM audit_log WHERE seq > 6")
    _sql(db, "UPDATE audit_checkpoint SET seq = 6, hash = :h", h=head_hash)
    assert audit.verify(db).ok  # the database alone now looks consistent ...
    report = audit.verify(db, anchor=anchor)  # ... the external anchor is not fooled
    assert not report.ok and report.problems[0].kind == "truncated"


def test_appending_after_verify_keeps_the_chain(db, tmp_path):
    _fill(db, 3)
    anchor = tmp_path / "a.json"
    audit.write_anchor(db, anchor)
    _fill(db, 3)
    assert audit.verify(db, anchor=anchor).ok


def test_concurrent_threads_and_processes_keep_one_contiguous_chain(db, tmp_path):
    url = db.url
    script = (
        "import sys; from layers.db import Database; from layers.services import audit\n"
        f"db = Database({url!r})\n"
        "for i in range(25):\n"
        "    with db.session() as s:\n"
        "        audit.record(s, actor='proc'+sys.argv[1], role='operator', action='video.view',"
        " target=str(i))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(k)], cwd=REPO) for k in range(3)]

    def worker(k):
        for i in range(25):
            with db.session() as s:
                audit.record(
                    s, actor=f"thread{k}", role="operator", action="login.ok", target=str(i)
                )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    report = audit.verify(db)
    assert report.ok, report.summary()
    assert report.count == 7 * 25 and report.last_seq == 175


def test_record_entry_rolls_back_with_the_callers_transaction(db):
    _fill(db, 2)
    with pytest.raises(RuntimeError):
        with db.session() as s:
            audit.record(s, actor="a", role="admin", action="user.create", target="x")
            raise RuntimeError("caller failed")
    _fill(db, 1)
    report = audit.verify(db)
    assert report.ok and report.count == 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"actor": "", "action": "x"}, "actor is empty"),
        ({"actor": "a", "action": ""}, "action is empty"),
        ({"actor": "a" * 65, "action": "x"}, "actor is 65 characters"),
        ({"actor": "a", "action": "x", "detail": {"password": "p"}}, "must not carry secrets"),
        ({"actor": "a", "action": "x", "detail": {"obj": object()}}, "not JSON"),
        ({"actor": "a", "action": "x", "detail": ["not", "a", "dict"]}, "must be a dict"),
    ],
)
def test_bad_records_are_refused_with_the_field_named(db, kwargs, match):
    with db.session() as s, pytest.raises(audit.AuditError, match=match):
        audit.record(s, role="", **kwargs)


def test_long_targets_are_shortened_not_refused(db):
    with db.session() as s:
        e = audit.record(s, actor="a", role="", action="export.situation", target="x" * 500)
    assert len(e.target) == 128 and e.target.endswith("…")
    assert audit.verify(db).ok


def test_search_filters_and_csv_export(db, tmp_path):
    _fill(db, 10)
    with db.session() as s:
        assert len(audit.search(s, actor="user1")) == 3
        assert len(audit.search(s, action="video.view")) == 5
        assert len(audit.search(s, action="login.")) == 5
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert audit.search(s, since=future) == []
        assert len(audit.search(s, until=future)) == 10
        with pytest.raises(audit.AuditError, match="timezone"):
            audit.search(s, since=dt.datetime(2026, 1, 1))
    out = tmp_path / "audit.csv"
    n, body = audit.export_csv(
        db, out, actor="auditor1", role="auditor", filters={"action": "video.view"}
    )
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel reads it as UTF-8
    assert out.read_bytes().decode("utf-8-sig") == body
    rows = list(csv.DictReader(io.StringIO(body)))
    assert n == 5 and len(rows) == 5
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    assert json.loads(rows[0]["detail"])["名字"] == "张三"
    with db.session() as s:  # the export itself is on the record
        (last,) = audit.search(s, limit=1)
    assert last.action == "audit.export" and last.actor == "auditor1"
    assert json.loads(last.detail)["rows"] == 5


def test_csv_export_defuses_spreadsheet_formulas(db):
    with db.session() as s:
        audit.record(s, actor="=cmd|' /C calc'!A0", role="", action="login.failed")
    _n, body = audit.export_csv(db, actor="a", role="auditor")
    assert "'=cmd" in body


def test_purge_blanks_old_reporter_data_and_snapshots_but_keeps_the_log(db, tmp_path):
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    with db.session() as s:
        for days, name in ((200, "张三"), (10, "李四")):
            s.add(
                Incident(
                    lon=102.7,
                    lat=25.0,
                    category_code="x",
                    reporter_name=name,
                    reporter_phone="13812345678",
                    created_at=now - dt.timedelta(days=days),
                )
            )
    _fill(db, 4)
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    old, new = snaps / "old.jpg", snaps / "new.jpg"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    import os

    stamp = (now - dt.timedelta(days=200)).timestamp()
    os.utime(old, (stamp, stamp))
    os.utime(new, (now.timestamp(), now.timestamp()))
    r = audit.purge_personal_data(db, older_than_days=180, snapshots_dir=snaps, now=now)
    assert (r.incidents_blanked, r.snapshots_deleted) == (1, 1)
    assert not old.exists() and new.exists()
    with db.session() as s:
        got = {i.reporter_phone for i in s.query(Incident)}
    assert got == {"", "13812345678"}
    report = audit.verify(db)
    assert report.ok and report.count == 5  # 4 entries kept + the purge's own entry
    with pytest.raises(audit.AuditError, match="older_than_days"):
        audit.purge_personal_data(db, older_than_days=0)


def _cli(*args, db_url, capsys=None):
    """Run ``python -m layers ...``: in-process with ``capsys`` (fast), else as a subprocess."""
    if capsys is None:
        return subprocess.run(
            [sys.executable, "-m", "layers", *args, "--db", db_url],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    from layers.__main__ import main

    capsys.readouterr()
    code = main([*args, "--db", db_url])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_cli_verify_exit_codes(db, tmp_path, capsys):
    url = db.url
    _fill(db, 6)
    ok = _cli("audit", "verify", db_url=url)
    assert ok.returncode == 0, ok.stderr
    assert "intact: 6 entries" in ok.stdout
    _sql(db, "UPDATE audit_log SET actor = 'x' WHERE seq = 4")
    bad = _cli("audit", "verify", db_url=url, capsys=capsys)
    assert bad.returncode == 1
    assert "BROKEN at seq 4" in bad.stdout and "edited" in bad.stdout


def test_cli_export_anchor_and_bad_input(db, tmp_path, capsys):
    url = db.url
    _fill(db, 4)
    out = tmp_path / "log.csv"
    r = _cli("audit", "export", str(out), "--action", "login.", db_url=url, capsys=capsys)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 audit entries" in r.stdout and len(out.read_text().splitlines()) == 3
    r = _cli("audit", "export", str(out), "--since", "last tuesday", db_url=url, capsys=capsys)
    assert r.returncode == 1 and "--since" in r.stderr and "Traceback" not in r.stderr
    anchor = tmp_path / "anchor.json"
    assert _cli("audit", "anchor", str(anchor), db_url=url, capsys=capsys).returncode == 0
    r = _cli(
        "audit", "verify", "--anchor", str(tmp_path / "missing.json"), db_url=url, capsys=capsys
    )
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert (
        _cli("audit", "verify", "--anchor", str(anchor), db_url=url, capsys=capsys).returncode == 0
    )
