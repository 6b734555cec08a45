"""Fixtures for the portal tests: one real server with the demo data per test process, one Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from portal_server import AXE, CHROMIUM, CHROMIUM_ARGS, Portal, demo_database, serve


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    directory = tmp_path_factory.mktemp("portal")
    db_url = demo_database(directory, persons=8)
    with serve(db_url, directory / "var") as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium (tools/ensure-system-deps)"
    assert AXE.exists(), "axe-core is needed: npm ci"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh browser contexts (separate cookies): `new_page()` or `new_page(width=390)`."""
    contexts = []

    def make(width: int = 1200, height: int = 900) -> Any:
        # bypass_csp lets the test inject axe-core; the pages themselves never run inline script.
        ctx = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()
