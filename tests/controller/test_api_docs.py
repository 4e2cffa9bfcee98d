"""The documentation: served offline, locked down, and rendered by a real browser."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Error, Route

from edgefleet.controller.api import docs
from edgefleet.controller.api.app import openapi_document
from edgefleet.controller.api.console import console_files
from tests.api_client import ApiClient
from tests.browser import headless_chromium
from tests.server_process import edgefleet_serve

ROOT = Path(__file__).parents[2]
VENDORED = docs.STATIC_DIR / "swagger-ui"
# The browser reaches the server under a name, as a user would: Swagger UI treats
# localhost and 127.0.0.1 specially (it skips its online validator for them).
HOST = "docs.edgefleet.test"


async def test_docs_page_has_no_inline_script_and_a_strict_policy(api: ApiClient) -> None:
    async with api.session.get(api.base_url + "/api/docs") as response:
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        page = await response.text()
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "https://" not in page and "http://" not in page  # no CDN
    assert 'data-openapi-url="/api/v1/openapi.json"' in page


async def test_static_files_are_served_and_anything_else_is_404(api: ApiClient) -> None:
    bundle = "/api/docs/static/swagger-ui/swagger-ui-bundle.js"
    async with api.session.get(api.base_url + bundle) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert len(await response.read()) > 1_000_000
    for missing in [
        "/api/docs/static/",  # was 403 AUTH_ERROR: a directory listing refused
        "/api/docs/static/nothing.js",
        "/api/docs/static/swagger-ui/README.md",
        "/api/docs/static/swagger-ui/LICENSE",
    ]:
        (await api.get(missing, token=None)).failure(404, "GENERAL_ERROR")


def test_vendored_swagger_ui_matches_its_readme() -> None:
    """The README beside the vendored files names their version and checksums."""
    readme = (VENDORED / "README.md").read_text()
    version = (VENDORED / "VERSION").read_text().strip()
    assert f"swagger-ui-dist` **{version}**" in readme
    listed = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme, re.M))
    present = {p.name for p in VENDORED.iterdir()} - {"README.md", "VERSION"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest, name


def test_the_page_renders_every_operation_in_a_browser_offline(tmp_path: Path) -> None:
    """Chromium loads /api/docs from a real ``edgefleet serve``: every operation of
    the document is listed, the console shows no error (a script error or a
    Content-Security-Policy violation would), and every request the page makes
    goes to the server on 127.0.0.1 — anything else is recorded and refused."""
    document = openapi_document()
    expected = sorted(
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    )
    tags = {op["tags"][0] for ops in document["paths"].values() for op in ops.values()}
    requests: list[str] = []
    errors: list[str] = []

    def route(route: Route) -> None:
        requests.append(route.request.url)
        if urlsplit(route.request.url).hostname == HOST:
            route.continue_()
        else:
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            errors.append(f"{message.type}: {message.text}")

    def page_error(error: Error) -> None:
        errors.append(f"uncaught: {error}")

    with (
        edgefleet_serve(tmp_path, "--api-token", "t", "--log-level", "WARNING") as server,
        headless_chromium(f"--host-resolver-rules=MAP {HOST} 127.0.0.1") as browser,
    ):
        context = browser.new_context()
        context.route("**/*", route)
        page = context.new_page()
        page.on("console", console)
        page.on("pageerror", page_error)
        base_url = server.base_url.replace("127.0.0.1", HOST)
        page.goto(base_url + "/api/docs")
        page.locator(".opblock").nth(len(expected) - 1).wait_for(timeout=30_000)
        listed = page.eval_on_selector_all(
            ".opblock",
            """blocks => blocks.map(b => [
                b.querySelector('.opblock-summary-method').textContent,
                b.querySelector('.opblock-summary-path').getAttribute('data-path')])""",
        )
        assert page.get_by_text("OAS 3.1").is_visible()
        # Open the first operation of every tag: parameters, bodies and schemas render
        # too, under the policy. Opening all 77 took Chromium over a minute on two
        # cores and proved nothing more: each operation renders with the same parts.
        opened = page.eval_on_selector_all(
            ".opblock-tag-section",
            """sections => sections.map(s => {
                s.querySelector('.opblock-summary-control').click();
                return s.querySelector('.opblock-summary-path').getAttribute('data-path');
            })""",
        )
        # Polled on a timer, from here: ``wait_for_function``'s in-page polling
        # evaluates a string, which the page's Content-Security-Policy (no eval)
        # refuses after the first check.
        deadline = time.monotonic() + 60
        while page.eval_on_selector_all(".opblock-body", "bs => bs.length") != len(opened):
            assert time.monotonic() < deadline, "not every opened operation rendered in 60 s"
            page.wait_for_timeout(250)
        page.wait_for_load_state("networkidle")
        context.close()

    assert sorted(tuple(op) for op in listed) == expected
    assert len(opened) == len(tags)
    assert errors == []
    assert requests, "the route saw no request"
    leaving = [url for url in requests if urlsplit(url).hostname != HOST]
    assert leaving == []
    assert base_url + "/api/v1/openapi.json" in requests


def test_a_built_wheel_carries_the_docs_and_console_files(tmp_path: Path) -> None:
    """The images install a wheel, not the checkout: the pages' files must be in it
    (one wheel built for both: it takes a while)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)  # a copy: the build writes beside its sources
    for name in ("agent", "controller", "southbound"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("edgefleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for relative in docs.static_files():
        assert f"edgefleet/controller/api/docs-static/{relative}" in names, relative
    for relative in console_files().files:
        assert f"edgefleet/controller/api/console-static/{relative}" in names, relative
