"""The audit chain sealed with a key outside the database: an insider with the database alone
cannot delete the newest entries and move the head back unseen, nor edit an entry; an existing
plain chain is sealed from its next entry; writers and verify need the right key; ``detail``
JSON with a repeated key is refused at write and reported by verify."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from dashboard.app import create_app
from layers.db import Database
from layers.models import AuditEntry
from layers.services import audit
from layers.services.audit_key import AuditKey, default_key_path
from layers.settings import load_settings
from tests.dbs import db_url

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyed(db_backend, tmp_path):
    key = AuditKey(tmp_path / "keys" / "gs.audit-key")
    d = Database(db_url(tmp_path / "audit.sqlite", db_backend), audit_key=key)
    d.migrate()
    assert audit.ensure_keyed(d)
    yield d
    d.dispose()


def _fill(db, n):
    for i in range(n):
        with db.session() as s:
            audit.record(s, actor=f"user{i % 3}", role="operator", action="video.view",
                         target=f"camera:{i}", detail={"i": i, "名字": "张三"})  # fmt: skip


def _sql(db, stmt, **params):
    with db.engine.begin() as conn:
        conn.execute(text(stmt), params)


def _truncate_and_move_head(db, keep: int) -> None:
    """Delete every entry after ``keep`` and point the head row at entry ``keep``: what an
    insider with write access to the database (and nothing else) can do."""
    with db.session() as s:
        head = s.query(AuditEntry).filter_by(seq=keep).one().hash
    _sql(db, "DELETE FROM audit_log WHERE seq > :k", k=keep)
    _sql(db, "UPDATE audit_checkpoint SET seq = :k, hash = :h", k=keep, h=head)


def _cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "layers", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_truncation_with_a_moved_head_fails_verify_without_an_anchor(tmp_path):
    """Deleting the last rows and updating audit_checkpoint used to pass `audit verify`."""
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path / "data",
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    _fill(db, 8)
    url = settings.db.url
    key_file = settings.audit_key_path()
    assert key_file == tmp_path / "data.audit-key"  # beside the data folder, not in it
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    env = {"GRIDSIGHT_AUDIT_KEY_FILE": str(key_file)}
    ok = _cli("audit", "verify", "--db", url, env_extra=env)
    assert ok.returncode == 0 and "sealed with the audit key" in ok.stdout, ok.stdout + ok.stderr
    with db.session() as s:
        last = audit.search(s, limit=1)[0].seq
    _truncate_and_move_head(db, last - 3)
    bad = _cli("audit", "verify", "--db", url, env_extra=env)
    assert bad.returncode == 1, bad.stdout
    assert "truncated" in bad.stdout and "HMAC" in bad.stdout
    # the app's next write does not launder it: the mark stays in the chain
    _fill(db, 2)
    again = _cli("audit", "verify", "--db", url, env_extra=env)
    assert again.returncode == 1 and "head moved" in again.stdout
    # and without the key, verify cannot vouch for the sealed part at all
    nokey = _cli("audit", "verify", "--db", url, "--key", str(tmp_path / "nope"))
    assert nokey.returncode == 1 and "key" in nokey.stdout


def test_keyed_chain_verifies_and_an_edit_is_located(keyed):
    _fill(keyed, 6)
    report = audit.verify(keyed)
    assert report.ok and report.keyed_from == 1 and report.count == 7
    _sql(keyed, "UPDATE audit_log SET actor = 'x' WHERE seq = 4")
    report = audit.verify(keyed)
    assert not report.ok and report.first_broken_seq == 4 and report.problems[0].kind == "edited"


def test_recomputed_plain_hashes_do_not_pass(keyed):
    """Rewriting an entry and re-chaining everything after it with plain SHA-256 (all one can
    do without the key) breaks at the edited entry."""
    _fill(keyed, 5)
    with keyed.session() as s:
        rows = s.query(AuditEntry).order_by(AuditEntry.seq).all()
        rows[2].actor = "someone else"
        prev = rows[1].hash
        for row in rows[2:]:
            row.prev_hash = prev
            row.hash = audit.chain_hash(prev, audit.entry_body(row))
            prev = row.hash
    _sql(keyed, "UPDATE audit_checkpoint SET hash = :h", h=prev)
    report = audit.verify(keyed)
    assert not report.ok and report.first_broken_seq == 3


def test_writers_and_verify_need_the_right_key(keyed, tmp_path):
    _fill(keyed, 2)
    bare = Database(keyed.url)
    with pytest.raises(audit.AuditError, match="GRIDSIGHT_AUDIT_KEY_FILE"):
        with bare.session() as s:
            audit.record(s, actor="cli:x", role="", action="user.create")
    other = AuditKey(tmp_path / "other.key")
    other.create()
    bare.audit_key = other
    with pytest.raises(audit.AuditError, match="not the key this audit log is sealed with"):
        with bare.session() as s:
            audit.record(s, actor="cli:x", role="", action="user.create")
    report = audit.verify(bare)
    assert not report.ok and report.problems[0].kind == "key"
    assert audit.verify(keyed).ok  # nothing was written by the refused writers
    bare.dispose()


def test_a_plain_chain_is_sealed_from_its_next_entry(db_backend, tmp_path):
    plain = Database(db_url(tmp_path / "old.sqlite", db_backend))
    plain.migrate()
    _fill(plain, 4)
    assert audit.verify(plain).keyed_from is None
    key = AuditKey(default_key_path(tmp_path / "data"))
    plain.audit_key = key
    assert not key.exists()
    audit.ensure_keyed(plain)  # the app's first start after the upgrade
    _fill(plain, 2)
    report = audit.verify(plain)
    assert report.ok and report.keyed_from == 5 and report.notes == []
    with plain.session() as s:
        (sealing,) = audit.search(s, action="audit.key_enabled")
    detail = json.loads(sealing.detail)
    assert detail["plain_entries"] == 4 and detail["key_created_here"] is True
    # the plain entries are pinned by the keyed ones after them
    _sql(plain, "UPDATE audit_log SET actor = 'x' WHERE seq = 2")
    assert audit.verify(plain).first_broken_seq == 2
    plain.dispose()


def test_stripping_the_seal_is_reported_while_the_key_exists(keyed):
    _fill(keyed, 3)
    _sql(keyed, "UPDATE audit_checkpoint SET key_id = NULL, key_from_seq = NULL, mac = NULL")
    report = audit.verify(keyed)
    assert not report.ok and any(p.kind == "key" for p in report.problems)


WIPES = {
    # every entry gone, the head row put back to what a fresh database holds
    "all rows, head reset": [
        "DELETE FROM audit_log",
        "UPDATE audit_checkpoint SET seq = 0, hash = :genesis, key_id = NULL, "
        "key_from_seq = NULL, mac = NULL",
    ],
    # every entry and the head row gone
    "all rows and the head row": ["DELETE FROM audit_log", "DELETE FROM audit_checkpoint"],
    # the newest entries and the head row gone
    "newest rows and the head row": [
        "DELETE FROM audit_log WHERE seq > 4",
        "DELETE FROM audit_checkpoint",
    ],
}


@pytest.mark.parametrize("wipe", list(WIPES))
def test_a_wiped_log_fails_verify_while_the_key_file_exists(tmp_path, wipe):
    """An insider with the database alone empties the log (or cuts its tail and the head row):
    with the key file present, `audit verify --key FILE` reports it broken, seq and why."""
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path / "data",
                             seed_on_start=False, simulator=False)  # fmt: skip
    app = create_app(settings, start_background=False)
    db = app.server.config["GRIDSIGHT"].db
    _fill(db, 6)
    key_file = str(settings.audit_key_path())
    ok = _cli("audit", "verify", "--db", settings.db.url, "--key", key_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for stmt in WIPES[wipe]:
        _sql(db, stmt, genesis=audit.GENESIS)
    db.dispose()
    bad = _cli("audit", "verify", "--db", settings.db.url, "--key", key_file)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    kept = 0 if wipe.startswith("all") else 4
    assert f"BROKEN at seq {kept + 1}: truncated" in bad.stdout, bad.stdout
    assert "edited" not in bad.stdout  # the kept entries are whole: they are keyed from seq 1


def test_a_wiped_log_sealed_again_says_so(keyed):
    """The app restarted on an emptied log seals a new one with the key it finds: verify
    cannot prove the loss without an anchor, but it says the seal began over an old key."""
    _fill(keyed, 3)
    for stmt in WIPES["all rows, head reset"]:
        _sql(keyed, stmt, genesis=audit.GENESIS)
    assert not audit.verify(keyed).ok
    keyed.audit_key.created = False  # a later start: the key file was there already
    assert audit.ensure_keyed(keyed)
    report = audit.verify(keyed)
    assert report.ok and report.keyed_from == 1
    assert any("seq 1 with a key file that existed before" in n for n in report.notes)


def test_an_empty_log_without_a_key_file_is_intact(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    Database(url).migrate()
    r = _cli("audit", "verify", "--db", url, "--key", str(tmp_path / "none.audit-key"))
    assert r.returncode == 0 and "intact: 0 entries" in r.stdout, r.stdout + r.stderr


def test_the_cli_never_creates_a_key(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    Database(url).migrate()
    key = tmp_path / "k.audit-key"
    r = _cli("audit", "export", str(tmp_path / "out.csv"), "--db", url, "--key", str(key))
    assert r.returncode == 0, r.stderr
    assert not key.exists()


def test_concurrent_first_starts_make_one_key_and_one_seal(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    Database(url).migrate()
    path = tmp_path / "race.audit-key"
    dbs = [Database(url, audit_key=AuditKey(path)) for _ in range(4)]
    errors = []

    def start(d):
        try:
            audit.ensure_keyed(d)
            _fill(d, 3)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(d,)) for d in dbs]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    assert errors == []
    report = audit.verify(dbs[0])
    assert report.ok and report.count == 13, report.summary()
    with dbs[0].session() as s:
        assert len(audit.search(s, action="audit.key_enabled")) == 1
    for d in dbs:
        d.dispose()


def test_repeated_detail_keys_are_refused_at_write_and_found_by_verify(keyed):
    nan1, nan2 = float("nan"), float("nan")  # two distinct dict keys, both "NaN" as JSON
    with pytest.raises(audit.AuditError, match="appears twice"):
        with keyed.session() as s:
            audit.record(s, actor="a", role="", action="x.y", detail={nan1: 1, nan2: 2})
    with pytest.raises(audit.AuditError, match="appears twice"):
        with keyed.session() as s:
            audit.record(s, actor="a", role="", action="x.y", detail={"f": {nan1: 1, nan2: 2}})
    _fill(keyed, 3)
    assert audit.verify(keyed).ok
    # the same parsed value (json keeps the last), so the hash still matches: but a reader of
    # the raw text (CSV export, another parser) may see the first
    with keyed.session() as s:
        row = s.query(AuditEntry).filter_by(seq=3).one()
        original = row.detail
    forged = '{"i":999,' + original[1:]
    assert json.loads(forged) == json.loads(original)
    _sql(keyed, "UPDATE audit_log SET detail = :d WHERE seq = 3", d=forged)
    report = audit.verify(keyed)
    assert not report.ok and report.first_broken_seq == 3
    assert "appears twice" in report.problems[0].message
