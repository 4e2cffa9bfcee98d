"""Debian's chromium, driven by Playwright, for tests that need a real browser.

Playwright brings no browser of its own here (its download fails on our machines):
it drives ``/usr/bin/chromium``, which the set-up installs with apt when it is
missing. Without it a test fails under ``CI=true`` and skips elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PACKAGE = "chromium"
CHINESE_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
CHINESE_FONT_PACKAGE = "fonts-wqy-microhei"
# Headless, and quiet: no update checks, sync, or first-run pages calling out.
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium() -> Path:
    """The browser, installed with apt when missing and we may; else fail or skip.
    A Chinese font comes with it: without one, the console's Chinese pages render
    as empty boxes in screenshots (the text itself is right either way)."""
    if os.geteuid() == 0:
        for package, path in ((CHROMIUM_PACKAGE, CHROMIUM), (CHINESE_FONT_PACKAGE, CHINESE_FONT)):
            if not path.exists():
                _apt_install(package)
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing and could not be installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the browser tests are mandatory)")
    pytest.skip(message)


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        # A fresh machine may not have the package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)


@contextmanager
def headless_chromium(*args: str) -> Iterator[Browser]:
    """The browser, with ``args`` added to ``ARGS``."""
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=[*ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()
