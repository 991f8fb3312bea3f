"""Real browser: a dispatcher assigns, escalates and closes a case on /dispatch.

Headless Chromium (Debian ``chromium`` + ``chromium-driver``) against ``python -m dashboard``
on 127.0.0.1 with a fixture city. Also checks that a case filed through the API while the
page is open appears in the queue without a reload, and saves 1920x1080 screenshots of the
page in Chinese and English (``GRIDSIGHT_SCREENSHOTS`` folder, else the test's tmp dir).

The page re-renders on its own (the queue every few seconds, the detail after each action),
so every step waits for the state it needs with a generous deadline and clicks through
``click``, which tries again when the element it found was re-rendered meanwhile: on a
loaded machine those re-renders land between finding an element and clicking it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bench.incident_city import free_port, grid_center, start_server
from tests.browser.chromium import make_driver
from tests.dbs import new_db

pytestmark = pytest.mark.browser

PASSWORD = "dispatch-pass-2026"
#: what a re-render between finding an element and using it raises: try again
RERENDERED = (StaleElementReferenceException, ElementClickInterceptedException,
              ElementNotInteractableException)  # fmt: skip
#: seconds a step may take on a loaded machine (a 2-core box running other suites)
STEP_S = 90


def _driver():
    return make_driver(1920, 1080, lang="zh-CN")


@pytest.fixture(scope="module")
def server(db_backend, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dispatch_browser")
    db = new_db(tmp / "b.sqlite", db_backend)
    from layers.services import incidents, users

    with db.session() as s:
        users.create_user(s, "disp1", "dispatcher", PASSWORD, actor="tests",
                          must_change_password=False)  # fmt: skip
        _row, token = users.create_token(s, "browser-intake", "intake", actor="tests")
        lon, lat = grid_center(2, 0)
        first = incidents.create_incident(s, {"lon": lon, "lat": lat, "category": "ENV",
                                              "description": "占道堆放杂物"})  # fmt: skip
        lon, lat = grid_center(5, 1)
        incidents.create_incident(s, {"lon": lon, "lat": lat, "category": "SAFETY.FIRE",
                                      "description": "楼道堆放易燃物", "priority": 2})  # fmt: skip
        first_id = first.id
        # a few cases due this month, closed on time or late, so the KPI chart has bars
        import datetime as dt

        from layers.services import workflow

        now = dt.datetime.now(dt.UTC)
        for k, days in enumerate((3, 3, 10, 10, 12)):
            lon, lat = grid_center(k, k % 2)
            row = incidents.create_incident(s, {
                "lon": lon, "lat": lat, "category": "SAFETY.FIRE" if days == 3 else "ENV",
                "occurred_at": (now - dt.timedelta(days=days)).isoformat()})  # fmt: skip
            for action in ("register", "dispatch", "accept", "report", "close"):
                workflow.apply(s, row.id, action, actor="seed", role="dispatcher")
    db.dispose()
    port = free_port()
    proc = start_server(db.url, tmp, port)
    yield {"url": f"http://127.0.0.1:{port}", "db": db.url, "token": token,
           "first": first_id, "tmp": tmp}  # fmt: skip
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser(server):
    d = _driver()
    d.set_window_size(1920, 1080)
    d.get(server["url"] + "/login")
    d.find_element(By.NAME, "username").send_keys("disp1")
    d.find_element(By.NAME, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form button, form input[type=submit]").click()
    WebDriverWait(d, 20).until(lambda x: "/login" not in x.current_url)
    yield d
    d.quit()


def wait(d, cond, timeout: float = STEP_S):
    """Return ``cond``'s first truthy answer; a re-rendered element just means "not yet"."""
    return WebDriverWait(d, timeout, poll_frequency=0.2, ignored_exceptions=RERENDERED).until(cond)


def click(d, locator, keys: str | None = None) -> None:
    """Click (or type ``keys`` into) the element at ``locator`` once it is clickable.

    Finding and clicking are one attempt: when the page re-rendered the element in between,
    Selenium raises (nothing was clicked) and the attempt is made again on the new element.
    """

    def attempt(x) -> bool:
        element = EC.element_to_be_clickable(locator)(x)
        if not element:
            return False
        element.send_keys(keys) if keys is not None else element.click()
        return True

    wait(d, attempt)


def message(d) -> str:
    return d.find_element(By.ID, "dispatch-message").text


def click_action(d, action: str, incident_id: int, expect_status_zh: str) -> None:
    before = wait(d, lambda x: (message(x),))[0]
    click(d, (By.ID, f"dispatch-btn-{action}"))
    text = wait(d, lambda x: (m := message(x)) not in ("", before) and m)
    assert f"#{incident_id}" in text and expect_status_zh in text, text


def db_state(url: str, incident_id: int):
    from layers.db import Database
    from layers.services import workflow

    db = Database(url)
    try:
        with db.session() as s:
            from layers.models import Incident

            row = s.get(Incident, incident_id)
            return (
                row.status,
                row.escalation_level,
                row.assignee_id,
                workflow.history(s, incident_id),
            )
    finally:
        db.dispose()


def test_dispatcher_assigns_escalates_and_closes(server, browser):
    d = browser
    d.get(server["url"] + "/dispatch")
    iid = server["first"]
    click(d, (By.CSS_SELECTOR, f".ag-center-cols-container .ag-row[row-id='{iid}'] .ag-cell"))
    wait(d, EC.text_to_be_present_in_element((By.ID, "dispatch-detail-title"), f"#{iid}"))
    # the detail shows the map of its grid and the camera-less note / responders
    wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, "#dispatch-map .leaflet-interactive"))
    click_action(d, "register", iid, "已立案")
    click(d, (By.ID, "dispatch-reason"), keys="现场核实")
    wait(d, lambda x: x.find_element(By.ID, "dispatch-reason").get_attribute("value") == "现场核实")
    click_action(d, "dispatch", iid, "已派遣")
    click_action(d, "escalate", iid, "已派遣")
    click_action(d, "accept", iid, "处理中")
    click_action(d, "report", iid, "已反馈")
    # keyboard: the close button's access key is C (Alt+Shift+C); focus + Enter works too
    close = (By.ID, "dispatch-btn-close")
    assert wait(d, lambda x: x.find_element(*close).get_attribute("accesskey")) == "c"
    click(d, close, keys="\n")
    wait(d, EC.text_to_be_present_in_element((By.ID, "dispatch-message"), "已结案"))
    status, level, assignee, history = db_state(server["db"], iid)
    assert status == "closed" and level == "community" and assignee is not None
    actions = [e["action"] for e in history]
    assert actions == ["create", "register", "dispatch", "escalate", "accept", "report", "close"]
    assert all(e["actor"] == "disp1" and e["role"] == "dispatcher" for e in history[1:])
    assert "现场核实" in history[2]["reason"]
    # a closed case leaves the queue
    wait(d, lambda x: not x.find_elements(
        By.CSS_SELECTOR, f".ag-center-cols-container .ag-row[row-id='{iid}']"))  # fmt: skip


def test_new_cases_appear_without_reload(server, browser):
    import requests

    d = browser
    if not d.current_url.endswith("/dispatch"):
        d.get(server["url"] + "/dispatch")
    wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, ".ag-row")))
    lon, lat = grid_center(6, 1)
    r = requests.post(server["url"] + "/api/v1/incidents",
                      json={"lon": lon, "lat": lat, "category": "SECURITY", "description": "新"},
                      headers={"Authorization": f"Bearer {server['token']}"}, timeout=10)  # fmt: skip
    assert r.status_code == 201
    new_id = r.json()["id"]
    wait(d, EC.presence_of_element_located(
        (By.CSS_SELECTOR, f".ag-center-cols-container .ag-row[row-id='{new_id}']")))  # fmt: skip


def test_screenshots_in_both_languages(server, browser):
    d = browser
    out = Path(os.environ.get("GRIDSIGHT_SCREENSHOTS") or server["tmp"])
    out.mkdir(parents=True, exist_ok=True)
    d.get(server["url"] + "/dispatch")
    rows = wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container .ag-row"))
    rows[0].find_element(By.CSS_SELECTOR, ".ag-cell").click()
    wait(d, EC.presence_of_element_located((By.ID, "dispatch-detail-title")))
    time.sleep(1.5)
    # exactly 1920x1080 of page (the window size includes no browser chrome when headless,
    # but Chromium reserves some; the device-metrics override makes the viewport exact)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    for lang in ("zh", "en"):
        d.execute_script(f"window.localStorage.setItem('app-lang', JSON.stringify('{lang}'));")
        d.refresh()
        rows = wait(
            d, lambda x: x.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container .ag-row")
        )
        rows[0].find_element(By.CSS_SELECTOR, ".ag-cell").click()
        wait(d, EC.presence_of_element_located((By.ID, "dispatch-detail-title")))
        time.sleep(2)
        title = d.find_element(By.ID, "dispatch-queue-title").text
        assert title == ("待办事件队列" if lang == "zh" else "Case queue")
        path = out / f"dispatch_{lang}_1920x1080.png"
        d.save_screenshot(str(path))
        assert path.stat().st_size > 20_000


def test_keyboard_selects_a_case(server, browser):
    """Arrow keys move through the queue and Space selects the case (no mouse)."""
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server["url"] + "/dispatch")
    rows = wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container .ag-row"))
    assert len(rows) >= 2
    first_cell = rows[0].find_element(By.CSS_SELECTOR, ".ag-cell")
    d.execute_script("arguments[0].focus();", first_cell)
    active = d.switch_to.active_element
    active.send_keys(Keys.ARROW_DOWN)
    d.switch_to.active_element.send_keys(Keys.SPACE)
    second = d.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container .ag-row")[1]
    wanted = second.get_attribute("row-id")
    wait(d, EC.text_to_be_present_in_element((By.ID, "dispatch-detail-title"), f"#{wanted}"))
