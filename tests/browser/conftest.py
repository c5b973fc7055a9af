"""Browser test fixtures: the app on a temporary SQLite database served on 127.0.0.1 (one per
module), the headless Debian chromium (one per module) and a fresh tablet-sized page per test.
The module is skipped, with the reason, when playwright or /usr/bin/chromium is missing."""
from __future__ import annotations

import pytest

from browser_helpers import TABLET, LiveServer, launch, make_app, missing_reason


@pytest.fixture(scope="module")
def live(tmp_path_factory, analyzer):
    data_dir = tmp_path_factory.mktemp("web")
    app = make_app(data_dir, analyzer)
    with LiveServer(app) as server:
        yield server
    app.extensions["mesoscan"].storage.close()


@pytest.fixture(scope="module")
def browser():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, live):
    """A new browser context (no cookies) at tablet size; script errors and CSP refusals fail the test."""
    context = browser.new_context(viewport=TABLET, has_touch=True, base_url=live.url)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}")
          if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield pg
    context.close()
    assert not problems, problems
