"""Playwright fixtures: Debian's chromium, launched once per module; skipped cleanly if absent.

The studio itself (`app.py --fake-engine` on a free port) is started by each module's `studio`
fixture through helpers.start_app. Every wait is on a condition, never a fixed sleep.
Screenshots go to tests/artifacts/ (gitignored).
"""
from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def studio(browser, tmp_path_factory):
    """The studio over the fake engine on a free port, one per test module: (url, sessions folder).
    A module that needs another studio (the real engine, a stand-in `spaces`) defines its own."""
    from .helpers import start_app
    sessions = tmp_path_factory.mktemp("sessions")
    proc, url = start_app(sessions)
    yield url, sessions
    proc.terminate()
    proc.wait(timeout=30)
