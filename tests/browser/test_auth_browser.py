"""Sign in through the real login form in headless Chromium against ``python -m dashboard``.

The server runs as its own process (waitress, exactly as deployed), so this test does not
depend on what other apps the test process has built. Skipped only where Chromium or
chromedriver is missing and ``CI`` is unset; in CI a missing browser fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from layers.db import Database
from layers.services import audit
from layers.services import users as user_service
from tests.browser.chromium import free_port, make_driver, require_browser

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    tmp = tmp_path_factory.mktemp("authbrowser")
    url = f"sqlite:///{tmp / 'gs.sqlite'}"
    db = Database(url)
    db.migrate()
    accounts = {}
    with db.session() as s:
        for role in ("operator", "auditor"):
            password = f"{role} browser password"
            user_service.create_user(s, f"{role}-b", role, password, actor="tests")
            accounts[role] = (f"{role}-b", password)
    port = free_port()
    env = dict(os.environ, GRIDSIGHT_DB_URL=url, GRIDSIGHT_DATA_DIR=str(tmp),
               GRIDSIGHT_PORT=str(port), GRIDSIGHT_SEED_ON_START="false",
               GRIDSIGHT_SIMULATOR="false", GRIDSIGHT_THREADS="8")  # fmt: skip
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("server did not answer /healthz within 120 s")
    yield {"url": base, "db": db, "accounts": accounts, "log": tmp / "server.log", "tmp": tmp}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    db.dispose()


@pytest.fixture(scope="module")
def browser(server):
    d = make_driver(1280, 900, lang="zh-CN")
    yield d
    d.quit()


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = cond()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the page is still rendering
            last = exc
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s: {what} (last {last!r})")


def _sign_in(d, name, password):
    from selenium.webdriver.common.by import By

    d.find_element(By.ID, "login-username").clear()
    d.find_element(By.ID, "login-username").send_keys(name)
    d.find_element(By.ID, "login-password").send_keys(password)
    d.find_element(By.ID, "login-submit").click()


def test_sign_in_through_the_form_and_see_the_map(server, browser):
    from selenium.webdriver.common.by import By

    d, base = browser, server["url"]
    d.get(base + "/")
    _wait(lambda: "/login" in d.current_url, 15, "redirect to /login")
    assert d.find_element(By.ID, "login-form").is_displayed()
    assert "用户名" in d.page_source and "Username" in d.page_source
    shot = server["tmp"] / "login.png"
    d.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    if os.environ.get("GRIDSIGHT_SCREENSHOT_DIR"):
        d.save_screenshot(str(Path(os.environ["GRIDSIGHT_SCREENSHOT_DIR"]) / "login.png"))

    name, password = server["accounts"]["operator"]
    _sign_in(d, name, "not the password")
    _wait(lambda: d.find_element(By.ID, "login-message").text, 15, "error message")
    assert "用户名或密码错误" in d.find_element(By.ID, "login-message").text

    _sign_in(d, name, password)
    _wait(lambda: "/login" not in d.current_url, 15, "leave /login")
    _wait(lambda: d.find_elements(By.CSS_SELECTOR, "#operator-map.leaflet-container"), 30,
          "the operator map")  # fmt: skip
    _wait(lambda: d.find_element(By.ID, "app-user-name").text == name, 15, "user in the shell")
    nav = {
        a.get_attribute("href").rsplit("/", 1)[-1]
        for a in d.find_elements(By.CSS_SELECTOR, ".gs-nav-link")
    }
    assert "admin" not in nav and "audit" not in nav  # links the role cannot open are hidden
    if os.environ.get("GRIDSIGHT_SCREENSHOT_DIR"):
        d.save_screenshot(str(Path(os.environ["GRIDSIGHT_SCREENSHOT_DIR"]) / "map.png"))

    # a page the role may not open, by direct URL
    d.get(base + "/admin")
    assert "无权访问" in d.page_source

    # sign out: the shell link opens the confirmation form, which POSTs with the CSRF token
    d.get(base + "/")
    _wait(lambda: d.find_element(By.ID, "app-logout"), 30, "sign-out link").click()
    _wait(lambda: d.find_element(By.ID, "logout-submit"), 15, "confirmation").click()
    _wait(lambda: "msg=logged_out" in d.current_url, 15, "back at /login")
    d.get(base + "/")
    _wait(lambda: "/login" in d.current_url, 15, "signed out for real")
    with server["db"].session() as s:
        actions = [e.action for e in audit.search(s, actor=name)][::-1]
    assert actions == ["login.failed", "login.ok", "logout"]


def test_auditor_lands_on_the_audit_log(server, browser):
    from selenium.webdriver.common.by import By

    d, base = browser, server["url"]
    d.delete_all_cookies()
    d.get(base + "/login")
    name, password = server["accounts"]["auditor"]
    _sign_in(d, name, password)
    _wait(lambda: d.current_url.endswith("/audit"), 15, "auditor lands on /audit")
    table = _wait(lambda: d.find_element(By.ID, "audit-table"), 30, "the audit table")
    assert "login.ok" in table.text
