"""A headless Debian chromium driven through its chromedriver (selenium): the ``browser`` fixture.

Nothing is downloaded: the browser is the distribution's package (``scripts/browser.sh``
installs it). Without it these tests skip, unless ``LELP_REQUIRE_BROWSER=1`` (set by
``scripts/test.sh``, so CI fails instead). The browser's own background traffic is switched
off, so every request in its log comes from the page under test.

The browser tests live in ``tests/e2e`` (its conftest imports ``browser``): the console test
needs the real service, and a second set of service fixtures in another directory would start
a second worker on the same Redis broker, stealing the other's jobs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LELP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LELP_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
         "--window-size=1280,900")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("LELP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/browser.sh")
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER} (scripts/browser.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lelp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """SEVERE console messages since the last call (uncaught errors, CSP violations, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# The browser's own pages (a download bubble, an internal dialog) load chrome:// resources from
# inside the browser; they are not requests a page made and never reach a network.
BROWSER_INTERNAL = ("chrome://", "chrome-untrusted://", "devtools://")


def requested_urls(driver) -> list[str]:
    """URLs the page asked for since the last call, from the DevTools network log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(BROWSER_INTERNAL):
                urls.append(url)
    return urls


def ink_share(png: bytes) -> float:
    """Share of pixels that are not (near) white: a blank figure scores about 0."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    pixels = list(image.getdata())
    return sum(1 for p in pixels if p < 235) / max(len(pixels), 1)
