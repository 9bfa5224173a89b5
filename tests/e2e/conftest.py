"""End-to-end tests run the real service processes (see tests/service_fixtures.py)."""

from tests.browser_support import browser  # noqa: F401  (pytest fixture: headless chromium)
from tests.service_fixtures import *  # noqa: F403  (pytest fixtures)
