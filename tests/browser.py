"""Headless Chromium for tests that look at pages (the training report, the web server).

Chromium is Debian's `chromium` package, driven by the `playwright` Python package: Playwright's own
browser download (`playwright install`) is never used. Without either the tests are skipped, except in
CI (the `CI` variable set), where a missing browser must fail rather than quietly test nothing.

>>> def test_page(browser):  # doctest: +SKIP
...     page = open_page(browser, "file:///tmp/report.html")
...     assert not page.errors and not broken_images(page.page)
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

__all__ = ["CHROMIUM", "LoadedPage", "broken_images", "browser", "open_page", "pixel_std"]

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = (
    "install it with `apt-get install -y chromium` and `pip install playwright` (no `playwright install`)"
)


def _missing(what: str) -> None:
    message = f"{what}: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium for one test.

    One per test, not per session: a process forked while Playwright's driver runs (a DataLoader's
    worker, which lives on between epochs) inherits the pipe to the driver, and closing Playwright
    then waits forever for the driver to see that pipe close. Tests that use it build their data with
    `num_workers=0` and start the browser last.
    """
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        # Root in a container has no user namespaces for Chromium's sandbox; Playwright passes
        # --no-sandbox already, said here so that the reason is written down.
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@dataclass
class LoadedPage:
    """A page after its `load` event, with what went wrong while loading it."""

    page: Any
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, itself included


def open_page(browser: Any, url: str, width: int = 1000, height: int = 800) -> LoadedPage:
    """Open `url` in a new page of `width` x `height` CSS pixels and wait for it (and its images) to load."""
    page = browser.new_page(viewport={"width": width, "height": height})
    loaded = LoadedPage(page)
    page.on("console", lambda msg: loaded.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: loaded.errors.append(str(exc)))
    page.on("request", lambda req: loaded.requests.append(req.url))
    page.goto(url, wait_until="load")
    return loaded


def broken_images(page: Any) -> list[str]:
    """The alt text (or start of the src) of every `<img>` that did not decode to a picture."""
    return page.evaluate(
        """() => Array.from(document.images)
            .filter(img => !img.complete || img.naturalWidth === 0)
            .map(img => img.alt || img.src.slice(0, 80))"""
    )


def pixel_std(png: bytes) -> float:
    """The standard deviation of a PNG's grey levels: about 0 for a blank (all white) screenshot."""
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())
