"""The privacy officer draws a mask on a camera's snapshot in headless Chromium, saves the
rule, and sees the mask burned into the live redacted view. With the two-person rule on, a
change that lowers protection waits in the console until a second officer approves it there.

The camera's source is a still white image, so the only dark pixels in its frames are the ones
our mask puts there. The server runs as ``python -m dashboard`` in its own process. Skipped
only where Chromium/chromedriver is missing and ``CI`` is unset; in CI that fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from layers.db import Database
from layers.models import Camera
from layers.services import audit
from layers.services import rules as rule_service
from layers.services import users as user_service
from tests.browser.chromium import free_port, make_driver, require_browser

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    import cv2

    tmp = tmp_path_factory.mktemp("privacybrowser")
    still = tmp / "white.png"
    cv2.imwrite(str(still), np.full((360, 640, 3), 235, np.uint8))
    url = f"sqlite:///{tmp / 'gs.sqlite'}"
    db = Database(url)
    db.migrate()
    with db.session() as s:
        s.add(Camera(id=7, gb_id="53010200001310000007", name="翠湖东门", cls=1, lon=102.7,
                     lat=25.05, stream_url=str(still)))  # fmt: skip
        user_service.create_user(s, "po-browser", "privacy_officer", "privacy officer pw",
                                 actor="tests")  # fmt: skip
        user_service.create_user(s, "po-second", "privacy_officer", "second officer pw",
                                 actor="tests")  # fmt: skip
    port = free_port()
    env = dict(os.environ, GRIDSIGHT_DB_URL=url, GRIDSIGHT_DATA_DIR=str(tmp),
               GRIDSIGHT_PORT=str(port), GRIDSIGHT_SEED_ON_START="false",
               GRIDSIGHT_SIMULATOR="false", GRIDSIGHT_THREADS="8",
               GRIDSIGHT_UNMASK_REQUIRES_SECOND_APPROVER="true")  # fmt: skip
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
    yield {"url": base, "db": db, "tmp": tmp}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    db.dispose()


@pytest.fixture(scope="module")
def browser(server):
    d = make_driver(1400, 1000)
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
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s: {what} (last {last!r})")


def _live_pixels(d):
    """Return the live view element's screenshot as an RGB array."""
    import cv2
    from selenium.webdriver.common.by import By

    png = d.find_element(By.ID, "privacy-live").screenshot_as_png
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return img


def _dark_fraction(img, x0, y0, x1, y1) -> float:
    h, w = img.shape[:2]
    patch = img[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
    return float((patch.mean(axis=2) < 100).mean())


def _sign_in(d, base, name, password):
    from selenium.webdriver.common.by import By

    d.delete_all_cookies()
    d.get(base + "/login?next=/privacy")
    d.find_element(By.ID, "login-username").send_keys(name)
    d.find_element(By.ID, "login-password").send_keys(password)
    d.find_element(By.ID, "login-submit").click()
    _wait(lambda: d.current_url.endswith("/privacy"), 15, "land on /privacy")


def _choose_camera(d):
    from selenium.webdriver.common.by import By

    # Dash 4's dropdown is a button that opens a listbox of options
    _wait(lambda: d.find_element(By.ID, "privacy-camera"), 30, "camera dropdown").click()
    _wait(lambda: d.find_element(By.XPATH, "//*[@role='option'][contains(., '翠湖')]"), 15,
          "camera option").click()  # fmt: skip


def test_draw_a_mask_and_see_it_on_the_live_view(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d, base = browser, server["url"]
    _sign_in(d, base, "po-browser", "privacy officer pw")
    floor = _wait(lambda: d.find_element(By.ID, "privacy-floor").text, 30, "the floor note")
    assert "privacy floor: faces" in floor
    _choose_camera(d)
    _wait(lambda: (d.find_element(By.ID, "privacy-live").get_attribute("src") or "").endswith(
        "/video/7.mjpg"), 30, "live view of camera 7")  # fmt: skip
    # before: the frame is plain light grey
    _wait(lambda: _live_pixels(d).mean() > 150, 60, "first live frame")
    before = _live_pixels(d)
    assert _dark_fraction(before, 0.3, 0.3, 0.5, 0.5) < 0.05

    # draw a closed path over the middle-left of the snapshot (plotly drawclosedpath)
    canvas = _wait(lambda: d.find_element(By.CSS_SELECTOR, "#privacy-canvas .nsewdrag"), 30,
                   "drawing canvas")  # fmt: skip
    w, h = canvas.size["width"], canvas.size["height"]

    def at(fx, fy):
        return int(fx * w - w / 2), int(fy * h - h / 2)

    chain = ActionChains(d).move_to_element_with_offset(canvas, *at(0.2, 0.2)).click_and_hold()
    for fx, fy in ((0.6, 0.2), (0.6, 0.6), (0.2, 0.6), (0.2, 0.21)):
        chain = chain.move_to_element_with_offset(canvas, *at(fx, fy))
    chain.release().perform()
    _wait(lambda: d.find_elements(By.CSS_SELECTOR, "#privacy-canvas .shapelayer path"), 15,
          "the drawn shape")  # fmt: skip

    d.find_element(By.ID, "privacy-save").click()
    message = _wait(lambda: d.find_element(By.ID, "privacy-message").text, 30, "save message")
    assert "v1" in message and "1 masks" in message, message

    # after: the mask is burned into the live frames within a few seconds
    _wait(lambda: _dark_fraction(_live_pixels(d), 0.3, 0.3, 0.5, 0.5) > 0.9, 30,
          "mask on the live view")  # fmt: skip
    after = _live_pixels(d)
    assert _dark_fraction(after, 0.75, 0.75, 0.95, 0.95) < 0.05  # outside the mask: untouched
    if os.environ.get("GRIDSIGHT_SCREENSHOT_DIR"):
        d.save_screenshot(str(Path(os.environ["GRIDSIGHT_SCREENSHOT_DIR"]) / "privacy.png"))

    rules = rule_service.rules_for_camera(server["db"], 7)
    (mask,) = rules.masks
    xs, ys = zip(*mask.points, strict=True)
    assert 0.15 < min(xs) < 0.25 and 0.55 < max(xs) < 0.65
    assert 0.15 < min(ys) < 0.25 and 0.55 < max(ys) < 0.65
    with server["db"].session() as s:
        assert audit.search(s, action="rules.save")[0].actor == "po-browser"
        assert audit.search(s, action="video.view.start", actor="po-browser")


def test_lowering_waits_for_a_second_officer_in_the_console(server, browser):
    from selenium.webdriver.common.by import By

    d, base, db = browser, server["url"], server["db"]
    _sign_in(d, base, "po-browser", "privacy officer pw")
    _choose_camera(d)
    _wait(lambda: (d.find_element(By.ID, "privacy-live").get_attribute("src") or "").endswith(
        "/video/7.mjpg"), 30, "camera 7 loaded")  # fmt: skip
    d.find_element(By.XPATH, "//*[@id='privacy-method']//label[contains(., 'blur')]").click()
    d.find_element(By.ID, "privacy-save").click()
    message = _wait(lambda: d.find_element(By.ID, "privacy-message").text, 30, "save message")
    assert "awaiting a second privacy officer" in message and "pixelate → blur" in message
    change = _wait(lambda: d.find_element(By.ID, "privacy-changes-table").text, 15, "pending")
    assert "po-browser" in change and "pixelate → blur" in change
    assert rule_service.rules_for_camera(db, 7).method == "pixelate"  # the old rule stays

    _sign_in(d, base, "po-second", "second officer pw")
    table = _wait(lambda: d.find_element(By.ID, "privacy-changes-table").text, 30, "pending")
    change_id = next(w for w in table.split() if w.startswith("#"))[1:]
    d.find_element(By.ID, "privacy-change-id").send_keys(change_id)
    d.find_element(By.ID, "privacy-change-approve").click()
    msg = _wait(lambda: d.find_element(By.ID, "privacy-change-message").text, 30, "approval")
    assert f"approved #{change_id}" in msg, msg
    assert rule_service.rules_for_camera(db, 7).method == "blur"
    with db.session() as s:
        (approved,) = audit.search(s, action="rules.approve")
        assert approved.actor == "po-second"
        assert json.loads(approved.detail)["requested_by"] == "po-browser"
