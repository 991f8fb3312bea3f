"""Two admins in headless Chromium: the requester cannot approve its own request for an
auditor account, a second admin can, and the one-time password appears only to them.

The server runs as its own process (``python -m dashboard``, waitress). Skipped only where
Chromium or chromedriver is missing and ``CI`` is unset; in CI a missing browser fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from layers.db import Database
from layers.services import audit, role_requests
from layers.services import users as user_service
from tests.browser.chromium import free_port, make_driver, require_browser
from tests.browser.test_auth_browser import _sign_in, _wait

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin-a": "first admin password", "admin-b": "second admin password"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    tmp = tmp_path_factory.mktemp("sodbrowser")
    url = f"sqlite:///{tmp / 'gs.sqlite'}"
    db = Database(url)
    db.migrate()
    with db.session() as s:
        for name, password in PASSWORDS.items():  # from the shell: one person may
            user_service.create_user(s, name, "admin", password, actor="tests")
        row = role_requests.request_change(
            s, "create", "aud-new", "auditor", actor="admin-a", actor_role="admin"
        )
        request_id = row.id
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
    yield {"url": base, "db": db, "request": request_id}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    db.dispose()


def _approve_as(d, base: str, name: str, request_id: int) -> str:
    """Return the request message after ``name`` signs in and clicks Approve."""
    from selenium.webdriver.common.by import By

    d.delete_all_cookies()
    d.get(base + "/login")
    _sign_in(d, name, PASSWORDS[name])
    _wait(lambda: "/login" not in d.current_url, 15, "leave /login")
    d.get(base + "/admin")
    table = _wait(lambda: d.find_element(By.ID, "admin-requests-table"), 30, "requests table")
    assert f"#{request_id}" in table.text and "aud-new" in table.text
    box = d.find_element(By.ID, "admin-request-id")
    box.clear()
    box.send_keys(str(request_id))
    d.find_element(By.ID, "admin-approve-request").click()
    return _wait(lambda: d.find_element(By.ID, "admin-request-message").text, 30, "a message")


def test_a_second_admin_approves_an_auditor_account(server):
    d = make_driver(1280, 900, lang="zh-CN")
    try:
        msg = _approve_as(d, server["url"], "admin-a", server["request"])
        assert "错误 error" in msg and "second admin" in msg
        with server["db"].session() as s:
            assert user_service.get_user(s, "aud-new") is None
        msg = _approve_as(d, server["url"], "admin-b", server["request"])
        assert "approved" in msg and "one-time password" in msg
    finally:
        d.quit()
    with server["db"].session() as s:
        assert user_service.get_user(s, "aud-new").role == "auditor"
        (created,) = [e for e in audit.search(s, action="user.create") if e.target == "aud-new"]
    detail = json.loads(created.detail)
    assert (detail["requested_by"], detail["approved_by"]) == ("admin-a", "admin-b")
