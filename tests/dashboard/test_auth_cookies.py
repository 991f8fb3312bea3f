"""Cookie flags behind proxies (X-Forwarded-* believed only from trusted proxies) and the
private modes of the data dir, the SQLite file and the secret key."""

from __future__ import annotations

import re
import stat

from dashboard.app import create_app
from layers.settings import load_settings
from tests.helpers_auth import make_user


def _app(tmp_path, **kw):
    kw = {"seed_on_start": False, "simulator": False, **kw}
    data = tmp_path / "fresh" / "data"
    settings = load_settings(db_url=f"sqlite:///{data / 'gs.sqlite'}", data_dir=data, **kw)
    return create_app(settings, start_background=False)


def _sign_in(app, headers=None, address="127.0.0.1"):
    """Return the Set-Cookie headers of a successful sign-in sent with ``headers``."""
    name, pw = make_user(app, "operator")
    client = app.server.test_client()
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", headers=headers, environ_base=env).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post(
        "/login",
        data={"username": name, "password": pw, "csrf_token": token},
        headers=headers,
        environ_base=env,
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return {c.split("=", 1)[0]: c for c in r.headers.getlist("Set-Cookie")}


HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.23"}


def test_cookies_are_secure_only_over_https_from_a_trusted_proxy(tmp_path):
    app = _app(tmp_path / "a")
    plain = _sign_in(app)
    assert not any("Secure" in c for c in plain.values())
    spoofed = _sign_in(app, HTTPS)  # no trusted proxy: the header is anybody's claim
    assert not any("Secure" in c for c in spoofed.values())
    proxied = _app(tmp_path / "b", trusted_proxies="127.0.0.1, 10.0.0.0/8")
    cookies = _sign_in(proxied, HTTPS)
    for name in ("gridsight_session", "_csrf_token", "gridsight_device"):
        assert "Secure" in cookies[name], name
    untrusted = _sign_in(proxied, HTTPS, address="192.0.2.1")  # a peer not in the list
    assert not any("Secure" in c for c in untrusted.values())


def test_cookie_secure_always_and_never(tmp_path):
    assert all(
        "Secure" in c for c in _sign_in(_app(tmp_path / "a", cookie_secure="always")).values()
    )
    never = _app(tmp_path / "b", cookie_secure="never", trusted_proxies="127.0.0.1")
    assert not any("Secure" in c for c in _sign_in(never, HTTPS).values())


def test_the_client_address_comes_from_a_trusted_proxy_only(tmp_path):
    """Behind a trusted proxy each forwarded client has its own sign-in budget; a client
    talking directly cannot pick another address by sending the header."""
    app = _app(tmp_path, trusted_proxies="127.0.0.1", login_limit_per_address="2/minute")
    client = app.server.test_client()

    def attempt(forwarded: str, address: str = "127.0.0.1") -> int:
        env = {"REMOTE_ADDR": address}
        headers = {"X-Forwarded-For": forwarded}
        page = client.get("/login", environ_base=env).get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = {"username": "nobody", "password": "x", "csrf_token": token}
        return client.post("/login", data=data, headers=headers, environ_base=env).status_code

    assert [attempt("198.51.100.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("198.51.100.2") == 401  # another client behind the proxy
    assert [attempt(f"203.0.113.{i}", "192.0.2.5") for i in range(3)] == [401, 401, 429]


def test_data_dir_database_and_secret_key_are_private(tmp_path):
    app = _app(tmp_path)
    ctx = app.server.config["GRIDSIGHT"]
    make_user(app, "operator")  # writes: the WAL file exists now
    data = ctx.settings.data_dir

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(data) == 0o700
    assert mode(data / "secret_key") == 0o600
    assert mode(data / "gs.sqlite") == 0o600
    for side in ("gs.sqlite-wal", "gs.sqlite-shm"):
        if (data / side).exists():
            assert mode(data / side) == 0o600, side
