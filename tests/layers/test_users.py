"""Accounts and tokens on a real SQLite file: argon2 hashes only, lockout, tokens hashed and
revocable, provisioning CLI prints secrets exactly once and never stores them in clear."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from layers.db import Database
from layers.models import ApiToken, AuditEntry, User
from layers.services import audit
from layers.services import users as svc
from tests.dbs import db_url


@pytest.fixture
def db(db_backend, tmp_path):
    d = Database(db_url(tmp_path / "users.sqlite", db_backend))
    d.migrate()
    yield d
    d.dispose()


def _db_bytes(db) -> bytes:
    """Return the stored bytes where a clear-text secret would show up.

    SQLite: the database file and its WAL. PostgreSQL: every row of every table as text.
    """
    if db.dialect == "postgresql":
        from sqlalchemy import inspect, text

        with db.engine.connect() as conn:
            names = inspect(conn).get_table_names()
            rows = [conn.execute(text(f'SELECT t::text FROM "{n}" t')).scalars().all()
                    for n in names]  # fmt: skip
        return "\n".join(r for table in rows for r in table).encode()
    path = Path(db.engine.url.database)
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def test_password_is_stored_as_argon2_only(db):
    with db.session() as s:
        user, generated = svc.create_user(s, "alice", "operator", "correct horse battery")
    assert generated is None
    with db.session() as s:
        stored = svc.get_user(s, "alice").password_hash
    assert stored.startswith("$argon2id$")
    assert b"correct horse battery" not in _db_bytes(db)
    assert svc.check_password(stored, "correct horse battery")
    assert not svc.check_password(stored, "correct horse batterY")
    assert not svc.check_password("not-a-hash", "x")


@pytest.mark.parametrize(
    "args,match",
    [
        (("a", "operator", "long enough pw"), "username 'a' is not valid"),
        (("bob smith", "operator", "long enough pw"), "is not valid"),
        (("bob", "root", "long enough pw"), "role 'root' is not valid; choose one of"),
        (("bob", "operator", "short"), "at least 10 characters"),
        (("bob-the-user", "operator", "BOB-THE-USER"), "must not be the username"),
    ],
)
def test_bad_accounts_are_refused_naming_the_field(db, args, match):
    with db.session() as s, pytest.raises(svc.UserError, match=match):
        svc.create_user(s, *args)


def test_scopes_are_validated(db):
    assert svc.parse_scopes('{"districts": ["530102"]}') == {"districts": ["530102"], "cameras": []}
    with pytest.raises(svc.UserError, match="scopes.districts"):
        svc.parse_scopes({"districts": ["5301"]})
    with pytest.raises(svc.UserError, match="unknown keys"):
        svc.parse_scopes({"grids": []})
    with pytest.raises(svc.UserError, match="not JSON"):
        svc.parse_scopes("{districts")


def test_generated_password_is_one_time(db):
    with db.session() as s:
        user, pw = svc.create_user(s, "carol", "dispatcher")
        assert user.must_change_password and len(pw) >= 16
    assert pw.encode() not in _db_bytes(db)
    with db.session() as s:
        assert svc.authenticate(s, "carol", pw).ok


def test_wrong_guesses_never_lock_the_account_itself(db):
    """Lockout is per (account, client) in the web tier: a stranger's guesses at the service
    level must not lock the owner out (the old account-wide lock did after five)."""
    with db.session() as s:
        svc.create_user(s, "dave", "operator", "the right password")
    for i in range(12):
        with db.session() as s:
            r = svc.authenticate(s, "dave", "wrong")
            assert (r.ok, r.reason) == (False, "password"), i
    with db.session() as s:
        assert svc.get_user(s, "dave").failed_logins == 12
        assert svc.authenticate(s, "dave", "the right password").ok
    with db.session() as s:
        actions = [e.action for e in audit.search(s, actor="dave")][::-1]
    assert actions == ["login.failed"] * 12 + ["login.ok"]
    assert audit.verify(db).ok


def test_success_resets_the_failure_count(db):
    with db.session() as s:
        svc.create_user(s, "erin", "operator", "the right password")
    for _ in range(3):
        with db.session() as s:
            svc.authenticate(s, "erin", "nope")
    with db.session() as s:
        assert svc.authenticate(s, "erin", "the right password").ok
    with db.session() as s:
        assert svc.get_user(s, "erin").failed_logins == 0


def test_disabled_and_unknown_users_cannot_log_in(db):
    with db.session() as s:
        svc.create_user(s, "frank", "operator", "the right password")
        svc.set_active(s, "frank", False, actor="admin")
    with db.session() as s:
        assert svc.authenticate(s, "frank", "the right password").reason == "disabled"
        assert svc.authenticate(s, "nobody", "whatever").reason == "unknown"
    with db.session() as s:
        assert audit.search(s, actor="nobody")[0].action == "login.failed"


def test_tokens_are_hashed_found_and_revoked(db):
    with db.session() as s:
        row, token = svc.create_token(s, "intake-12345", "intake", actor="admin")
    assert token.startswith(svc.TOKEN_PREFIX) and len(token) > 40
    assert token.encode() not in _db_bytes(db)
    with db.session() as s:
        assert svc.find_token(s, token).name == "intake-12345"
        assert svc.find_token(s, token + "x") is None
        assert svc.find_token(s, "") is None
        svc.revoke_token(s, "intake-12345", actor="admin")
    with db.session() as s:
        assert svc.find_token(s, token) is None
        with pytest.raises(svc.UserError, match="role 'boss'"):
            svc.create_token(s, "t2", "boss")
        with pytest.raises(svc.UserError, match="no token called"):
            svc.revoke_token(s, "nope")


def test_first_admin_only_once(db):
    with db.session() as s:
        pw = svc.ensure_first_admin(s)
    assert pw and len(pw) >= 16
    with db.session() as s:
        admin = svc.get_user(s, "admin")
        assert admin.role == "admin" and admin.must_change_password
        assert svc.ensure_first_admin(s) is None
    assert pw.encode() not in _db_bytes(db)


def _main(capsys, *argv, stdin: str | None = None, monkeypatch=None):
    from layers.__main__ import main

    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_users_add_list_disable(db, capsys, monkeypatch):
    url = db.url
    code, out, _ = _main(capsys, "users", "add", "gina", "--role", "operator", "--db", url)
    assert code == 0
    (pw_line,) = [line for line in out.splitlines() if "one-time password" in line]
    password = pw_line.rsplit(" ", 1)[1]
    assert out.count(password) == 1
    assert password.encode() not in _db_bytes(db)
    code, out, _ = _main(
        capsys,
        "users",
        "add",
        "hank",
        "--role",
        "auditor",
        "--password-stdin",
        "--db",
        url,
        stdin="hank's long password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and "password" not in out.replace("one-time", "")
    with db.session() as s:
        assert svc.authenticate(s, "hank", "hank's long password").ok
        assert svc.authenticate(s, "gina", password).ok
    code, out, _ = _main(capsys, "users", "list", "--db", url)
    assert code == 0 and "gina" in out and "hank" in out and "argon2" not in out
    code, out, _ = _main(capsys, "users", "disable", "gina", "--db", url)
    assert code == 0
    with db.session() as s:
        assert not svc.get_user(s, "gina").active


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["users", "add", "x y", "--role", "operator"], 1, "username 'x y' is not valid"),
        (["users", "disable", "ghost"], 1, "no user called 'ghost'"),
        (["users", "add", "ivan", "--role", "operator", "--scopes", "[1]"], 1, "scopes must be"),
        (["tokens", "revoke", "ghost"], 1, "no token called 'ghost'"),
    ],
)
def test_cli_refusals_exit_1_with_a_message(db, capsys, argv, code, message):
    got, _out, err = _main(capsys, *argv, "--db", db.url)
    assert got == code and message in err and "Traceback" not in err


def test_cli_unknown_role_is_a_usage_error(db, capsys):
    with pytest.raises(SystemExit) as exc:
        _main(capsys, "users", "add", "ivan", "--role", "boss", "--db", db.url)
    assert exc.value.code == 2


def test_cli_tokens_printed_once_and_revocable(db, capsys):
    url = db.url
    code, out, _ = _main(capsys, "tokens", "create", "qgis-office", "--role", "gis", "--db", url)
    assert code == 0
    token = out.split("token (shown once): ", 1)[1].split()[0]
    assert token.encode() not in _db_bytes(db)
    with db.session() as s:
        assert svc.find_token(s, token).role == "gis"
    code, out, _ = _main(capsys, "tokens", "list", "--db", url)
    assert token not in out and "qgis-office" in out and "active" in out
    assert _main(capsys, "tokens", "revoke", "qgis-office", "--db", url)[0] == 0
    with db.session() as s:
        assert svc.find_token(s, token) is None
        assert s.query(ApiToken).one().revoked_at is not None


def test_cli_as_a_real_process(db):
    """One end-to-end run through ``python -m layers`` (the rest run in-process for speed)."""
    repo = Path(__file__).resolve().parents[2]
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "layers",
            "users",
            "add",
            "jane",
            "--role",
            "admin",
            "--db",
            db.url,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    password = r.stdout.split("change at first login): ", 1)[1].split()[0]
    assert password not in r.stderr
    with db.session() as s:
        entry = s.query(AuditEntry).one()
        assert entry.action == "user.create" and entry.actor.startswith("cli:")
        assert json.loads(entry.detail)["generated_password"] is True
        assert password not in entry.detail
        assert s.query(User).one().must_change_password
