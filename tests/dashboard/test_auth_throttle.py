"""Sign-in throttling: per address, per (account, client), per account for unknown browsers;
unknown and existing names answered alike; a stranger cannot lock the owner out, nor, from a
shared (NAT) address, the other people behind it; bounded argon2 verifications. Behaviour
only (statuses and messages), never timing."""

from __future__ import annotations

import base64
import re
import threading

import pytest

from dashboard import throttle
from dashboard.app import create_app
from layers.settings import load_settings
from tests.helpers_auth import make_user

BAD = "用户名或密码错误"
THROTTLED = "登录尝试过多"


def _app(tmp_path, **kw):
    kw = {"seed_on_start": False, "simulator": False, **kw}
    settings = load_settings(db_url=f"sqlite:///{tmp_path / 'gs.sqlite'}", data_dir=tmp_path, **kw)
    return create_app(settings, start_background=False)


def _attempt(client, username: str, password: str, address: str = "10.0.0.1"):
    """Return (status, message) of one sign-in from ``address``."""
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base=env,
    )
    m = re.search(r'id="login-message">([^<]*)<', r.get_data(as_text=True))
    return r.status_code, (m.group(1) if m else ""), r


def _logout(client) -> None:
    page = client.get("/logout").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_five_wrong_guesses_hold_back_that_client_only(tmp_path):
    """A stranger's five guesses do not lock the admin out: only the stranger's pair waits."""
    app = _app(tmp_path)
    name, pw = make_user(app, "admin", "boss")
    stranger, owner = app.server.test_client(), app.server.test_client()
    for _ in range(5):
        status, msg, _r = _attempt(stranger, name, "guess", "203.0.113.9")
        assert (status, BAD in msg) == (401, True)
    status, msg, r = _attempt(stranger, name, pw, "203.0.113.9")  # even the right password
    assert status == 429 and THROTTLED in msg and int(r.headers["Retry-After"]) > 0
    status, _msg, r = _attempt(owner, name, pw, "10.1.2.3")
    assert status == 302, "the owner was locked out by a stranger's guesses"


def test_unknown_and_existing_names_get_the_same_answers(tmp_path):
    app = _app(tmp_path)
    name, _pw = make_user(app, "operator", "real-user")
    answers = {}
    for who in (name, "no-such-user"):
        client = app.server.test_client()
        answers[who] = [_attempt(client, who, "wrong", f"10.9.0.{len(answers)}")[:2]
                        for _ in range(7)]  # fmt: skip
    assert answers[name] == answers["no-such-user"]
    statuses = [s for s, _m in answers[name]]
    assert statuses == [401] * 5 + [429] * 2


def test_a_disabled_account_is_answered_like_a_wrong_password(tmp_path):
    from layers.services import users

    app = _app(tmp_path)
    name, pw = make_user(app, "operator")
    with app.server.config["GRIDSIGHT"].db.session() as s:
        users.set_active(s, name, False, actor="tests")
    client = app.server.test_client()
    assert _attempt(client, name, pw)[:2] == _attempt(client, "ghost-1", pw)[:2]


def test_failures_count_per_address(tmp_path):
    app = _app(tmp_path, login_limit_per_address="3/minute")
    name, pw = make_user(app, "operator")
    client = app.server.test_client()
    for i in range(3):
        assert _attempt(client, f"user-{i}", "x", "198.51.100.7")[0] == 401
    status, msg, _r = _attempt(client, "user-9", "x", "198.51.100.7")
    assert status == 429 and THROTTLED in msg
    assert _attempt(client, "user-9", "x", "198.51.100.8")[0] == 401  # another address
    # an active account's right password still gets in there
    assert _attempt(app.server.test_client(), name, pw, "198.51.100.7")[0] == 302


def test_people_behind_one_address_sign_in_while_it_is_flooded(tmp_path):
    """A command centre: 30 operators behind one NAT address sign in, one after another,
    while an attacker at the same address hammers unknown names. The attacker is refused
    (no argon2 work once over the limit); no operator is."""
    app = _app(tmp_path, login_limit_per_address="10/minute")
    nat = "203.0.113.50"
    people = [make_user(app, "operator") for _ in range(30)]
    attacker = app.server.test_client()
    slots = app.server.config["GRIDSIGHT"].login_throttle.slots
    verified = {"n": 0}
    real_hold = slots.hold

    def counting_hold():
        verified["n"] += 1
        return real_hold()

    slots.hold = counting_hold
    attack: list[int] = []
    for k, (name, pw) in enumerate(people):
        for j in range(4):  # four guesses between two operators' sign-ins: 120 in all
            attack.append(_attempt(attacker, f"ghost-{k}-{j}", "guess", nat)[0])
        before = verified["n"]
        status, msg, _r = _attempt(app.server.test_client(), name, pw, nat)
        assert status == 302, f"operator {k} behind the shared address was refused: {msg}"
        assert verified["n"] == before + 1
    assert attack[:10] == [401] * 10 and set(attack[10:]) == {429}
    assert verified["n"] == 10 + len(people)  # the refused guesses cost no verification


def test_at_a_flooded_address_unknown_and_locked_names_answer_alike(tmp_path):
    app = _app(tmp_path, login_limit_per_address="5/minute")
    nat = "203.0.113.60"
    locked, pw = make_user(app, "dispatcher")
    disabled, dpw = make_user(app, "operator")
    from layers.services import users

    with app.server.config["GRIDSIGHT"].db.session() as s:
        users.set_active(s, disabled, False, actor="tests")
    client = app.server.test_client()
    for _ in range(5):  # five wrong guesses: this pair is locked and the address is full
        assert _attempt(client, locked, "guess", nat)[0] == 401
    answers = {}
    for who, password in ((locked, pw), ("no-such-user", "x"), (disabled, dpw)):
        status, msg, r = _attempt(app.server.test_client(), who, password, nat)
        answers[who] = (status, msg, r.headers.get("Retry-After"))
    assert answers[locked] == answers["no-such-user"] == answers[disabled]
    assert answers[locked][0] == 429 and THROTTLED in answers[locked][1]


def test_the_per_account_limit_spares_a_browser_that_signed_in_before(tmp_path):
    """Guesses spread over many addresses slow the account down for unknown browsers; the
    owner's browser (device cookie from an earlier sign-in) still gets in."""
    app = _app(tmp_path, login_limit_per_account="3/minute")
    name, pw = make_user(app, "dispatcher")
    owner = app.server.test_client()
    assert _attempt(owner, name, pw, "10.5.5.5")[0] == 302
    assert owner.get_cookie(throttle.DEVICE_COOKIE) is not None
    _logout(owner)  # the device cookie stays
    for i in range(3):
        stranger = app.server.test_client()
        assert _attempt(stranger, name, "guess", f"192.0.2.{i}")[0] == 401
    status, msg, _r = _attempt(app.server.test_client(), name, pw, "192.0.2.99")
    assert status == 429 and THROTTLED in msg  # an unknown browser waits, right password or not
    assert _attempt(owner, name, pw, "10.5.5.5")[0] == 302  # the owner's does not


def test_a_forged_device_cookie_counts_for_nothing(tmp_path):
    app = _app(tmp_path, login_limit_per_account="2/minute")
    name, _pw = make_user(app, "operator")
    for i in range(2):
        _attempt(app.server.test_client(), name, "guess", f"192.0.2.{i}")
    forged = app.server.test_client()
    forged.set_cookie(throttle.DEVICE_COOKIE, "eyJuIjoieCIsInUiOlsiYSJdfQ.forged")
    assert _attempt(forged, name, "guess", "192.0.2.50")[0] == 429


def test_http_basic_is_throttled_too(tmp_path):
    app = _app(tmp_path)
    name, _pw = make_user(app, "operator")
    client = app.server.test_client()
    bad = {"Authorization": "Basic " + base64.b64encode(f"{name}:nope".encode()).decode()}
    statuses = [client.get("/ogc", headers=bad).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    r = client.get("/ogc", headers=bad)
    assert "too many" in r.get_json()["error"] and int(r.headers["Retry-After"]) > 0


def test_verify_slots_bound_running_and_waiting_checks():
    slots = throttle.VerifySlots(1, wait_s=30)
    release = threading.Event()
    inside = threading.Event()
    results: list[bool] = []

    def holder():
        with slots.hold() as got:
            results.append(got)
            inside.set()
            release.wait(30)

    first = threading.Thread(target=holder)
    first.start()
    assert inside.wait(30)
    waiters = [threading.Thread(target=holder) for _ in range(throttle.WAITING_PER_SLOT)]
    for t in waiters:
        t.start()
    deadline = threading.Event()
    for _ in range(600):  # until all of them queue on the semaphore
        if slots._waiting == throttle.WAITING_PER_SLOT:
            break
        deadline.wait(0.05)
    assert slots._waiting == throttle.WAITING_PER_SLOT
    with slots.hold() as got:  # one too many: told at once, not queued
        assert got is False
    release.set()
    for t in [first, *waiters]:
        t.join(30)
    assert results == [True] * (1 + throttle.WAITING_PER_SLOT)


def test_a_busy_sign_in_is_told_to_retry(tmp_path, monkeypatch):
    app = _app(tmp_path)
    name, pw = make_user(app, "operator")
    gate = app.server.config["GRIDSIGHT"].login_throttle
    monkeypatch.setattr(gate, "slots", throttle.VerifySlots(1, wait_s=0.05))
    assert gate.slots._sem.acquire(timeout=1)  # every slot taken
    try:
        status, msg, r = _attempt(app.server.test_client(), name, pw)
    finally:
        gate.slots._sem.release()
    assert status == 503 and "登录繁忙" in msg and r.headers["Retry-After"]
    assert _attempt(app.server.test_client(), name, pw)[0] == 302


@pytest.mark.parametrize("value", ["lots", "5 per fortnight", ""], ids=["word", "unit", "empty"])
def test_bad_limit_settings_name_the_variable(value):
    with pytest.raises(ValueError, match="GRIDSIGHT_LOGIN_LIMIT_PER_CLIENT"):
        load_settings(login_limit_per_client=value)


def test_limits_are_shared_through_redis_between_apps(tmp_path, redis_url, stream_key):
    """Two apps (two workers) on one Redis count one budget."""
    a = _app(tmp_path / "a", redis_url=redis_url, redis_stream=stream_key)
    b = _app(tmp_path / "b", redis_url=redis_url, redis_stream=stream_key)
    try:
        for i in range(5):
            app = (a, b)[i % 2]
            assert _attempt(app.server.test_client(), "shared-name", "x", "10.7.7.7")[0] == 401
        assert _attempt(b.server.test_client(), "shared-name", "x", "10.7.7.7")[0] == 429
    finally:
        from dashboard.server import shutdown_services

        for app in (a, b):
            shutdown_services(app.server.config["GRIDSIGHT"])
