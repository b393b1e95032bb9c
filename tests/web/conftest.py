"""Browser fixtures: Debian's headless Chromium driven by Playwright, against the real service
on 127.0.0.1 serving the real starter models in models/.

Nothing here skips: without Chromium, Playwright or the starter models the tests fail and say
how to get them. Screenshots go to test-artifacts/web/ (ignored by git).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from browsing import DESKTOP, DIGIT_MODELS, PHONE, PHOTO_MODEL, Visit, open_page

from testkit.live_server import REPO_ROOT, Server, running_server

MODELS = REPO_ROOT / "models"
# Browser builds cannot be downloaded here: Playwright drives the distribution's Chromium.
# Without the background-networking flags Chromium phones home, and this network refuses it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Module-scoped: Playwright's sync API keeps an event loop running on the thread while the browser
# is open, and under pytest-xdist the worker that ran the page tests goes on to other modules,
# whose asyncio.run() would then fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Chromium is not installed; the browser tests drive Debian's package: "
                    "`sudo apt-get install -y chromium` (Playwright's own browser downloads are not used)",
                    pytrace=False)
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: `.venv/bin/pip install -e '.[dev]'`", pytrace=False)
    # The CPU may be shared with training jobs: give the page time before calling it wrong.
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def starter_models() -> Path:
    """models/, holding the starter models the tests use (read-only: copy to change)."""
    needed = (*DIGIT_MODELS, PHOTO_MODEL)
    missing = [model for model in needed if not (MODELS / model / "card.json").exists()]
    assert not missing, (f"starter models missing from {MODELS}: {', '.join(missing)}; "
                         "train them and publish them with `make export-all`")
    return MODELS


@pytest.fixture(scope="session")
def web_server(starter_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service on the real starter models, on a free loopback port; stopped at the end."""
    with running_server(starter_models, tmp_path_factory.mktemp("web-server-logs")) as server:
        yield server


@pytest.fixture
def desktop(browser, web_server: Server) -> Iterator[Visit]:
    with open_page(browser, web_server, **DESKTOP) as visit:
        yield visit


@pytest.fixture
def phone(browser, web_server: Server) -> Iterator[Visit]:
    with open_page(browser, web_server, **PHONE) as visit:
        yield visit

