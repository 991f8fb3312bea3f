"""Real headless Chromium for the browser tests (Debian's chromium + chromedriver).

Browser tests skip where Chromium is absent on a developer's machine, but fail in CI (``CI``
set): CI installs it from .ci/apt-packages.txt, so a skip there would hide a broken page.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.absent import require_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage")  # fmt: skip


def require_browser() -> None:
    """Return if Chromium and ChromeDriver are installed; skip (fail in CI) otherwise."""
    require_service("chromium / chromium-driver", "apt-get install chromium chromium-driver; "
                    ".ci/apt-packages.txt", available=CHROMIUM.exists() and CHROMEDRIVER.exists())  # fmt: skip


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_driver(width: int = 1920, height: int = 1080, *, lang: str | None = None):
    """Return a headless Chromium WebDriver of the given window size (never downloads one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser()
    opts = webdriver.ChromeOptions()
    for arg in (*FLAGS, f"--window-size={width},{height}"):
        opts.add_argument(arg)
    if lang:
        opts.add_argument(f"--lang={lang}")
    opts.binary_location = str(CHROMIUM)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
