"""A page view in the browser tests: the open page, what it requested, its script errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelrepo.starter import STARTER_SET
from testkit.live_server import REPO_ROOT, Server

# The starter models committed in models/: every digit model must read the drawn digits.
DIGIT_MODELS = tuple(m for m in STARTER_SET if m.endswith("-mnist"))
PHOTO_MODEL = "lenet5-cifar10"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "color_scheme": "dark"}


@dataclass
class Visit:
    """An open page and what it did: every request's URL, and every uncaught script error."""

    page: object
    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def predict_requests(self) -> list[str]:
        return [url for url in self.requests if "/predict/" in url]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


@contextmanager
def open_page(browser, server: Server, **context_options) -> Iterator[Visit]:
    """The page at `/` in a fresh browser context, once its pickers are filled; closed after."""
    from playwright.sync_api import expect

    context = browser.new_context(**context_options)
    page = context.new_page()
    visit = Visit(page)
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    try:
        page.goto(server.url + "/")
        # The pickers are filled from /models once the scripts have run.
        expect(page.locator("#digit-model")).to_be_enabled()
        expect(page.locator("#photo-model")).to_be_enabled()
        yield visit
        assert not visit.page_errors, f"uncaught script errors: {visit.page_errors}"
        # Nothing from a CDN or anywhere else: the page works offline. (blob: is the preview of
        # the photo being sent, made by the page itself.)
        own = (f"{server.url}/", f"blob:{server.url}/")
        foreign = [url for url in visit.requests if not url.startswith(own)]
        assert not foreign, f"the page fetched from elsewhere than {server.url}: {foreign}"
    finally:
        context.close()
