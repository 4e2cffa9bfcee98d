"""The web console in a real browser: headless Chromium (Debian's, through
Playwright) against a real ``edgefleet serve`` with real agents connected.

One server serves the module: an administrator, a viewer and a user limited to
one group; two groups with a camera each. Camera A runs an agent with a custom
command for the whole module; the test of live state changes starts and stops
an agent of its own. Every browser test watches the browser's console: a script
error, a refused Content-Security-Policy or a failed request fails the test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from edgefleet.controller.api.console import console_files
from edgefleet.controller.api.errors import ErrorType
from tests.browser import headless_chromium
from tests.server_process import (
    FAST_PROTOCOL,
    ServerProcess,
    agent_cli,
    call,
    edgefleet_serve,
    wait_for,
)
from tests.vision_server import VisionServer, vision_server

ROOT = Path(__file__).parents[2]
PASSWORD = "console-pass-1234"
ADMIN_PASSWORD = "console-admin-1234"
COMMANDS = (
    "from edgefleet.agent import command\n\n"
    "@command('set_exposure')\n"
    "def set_exposure(value: int) -> dict:\n"
    "    return {'exposure': value}\n"
)
SCREENSHOTS = ROOT / "docs"
"""Where the README's screenshots live; refreshed with EDGEFLEET_UPDATE_SCREENSHOTS=1."""


@dataclass
class Fleet:
    server: ServerProcess
    tmp: Path
    cameras: dict[str, dict[str, Any]]
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def console(self) -> str:
        return self.server.base_url + "/console/"

    def api(self, method: str, path: str, body: Any = None, token: str = "t") -> Any:
        return call(self.server.base_url, method, path, body, token)

    def register(self, name: str, group_id: str) -> dict[str, Any]:
        body = {"name": name, "hardware_sn": f"SN-{name}", "hardware_model": "M1", "type": "camera",
                "labels": {"site": name.removeprefix("cam-")}}  # fmt: skip
        device = self.api("POST", "/devices", body)
        self.api("PUT", f"/devices/{device['device_id']}/groups", {"group_ids": [group_id]})
        return device

    def start_agent(self, device: dict[str, Any], *extra: str) -> subprocess.Popen[bytes]:
        """The device's agent, with the custom command ``set_exposure``, once its
        status has arrived."""
        folder = self.tmp / device["name"]
        folder.mkdir(exist_ok=True)
        (folder / "camera_commands.py").write_text(COMMANDS)
        agent = agent_cli(self.server, device, folder, "--commands", "camera_commands", *extra)
        self.agents.append(agent)
        path = f"/devices/{device['device_id']}"
        wait_for(lambda: self.api("GET", path + "/status").get("cpu_percent") is not None)
        return agent


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, for the browser to draw as a thumbnail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def publish_snapshot(folder: Path) -> Path:
    """A record with an image, waiting in the agent's spool folder (as a device's
    own program puts it there): the agent uploads it once connected."""
    folder.mkdir(parents=True)
    (folder / "snapshot.png").write_bytes(png(64, 48, (29, 78, 216)))
    spool = folder / "spool"
    published = subprocess.run(
        [sys.executable, "-m", "edgefleet.agent.cli", "publish", "--spool-dir", str(spool),
         "--kind", "snapshot", "--payload", '{"lane": 2}', "--file", str(folder / "snapshot.png")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    return spool


@contextmanager
def vision_in_a_thread() -> Iterator[VisionServer]:
    """The stand-in vision endpoint on its own event loop, beside the browser's
    synchronous driver, for the whole module."""
    loop = asyncio.new_event_loop()
    started: queue.Queue[VisionServer] = queue.Queue()
    stop = asyncio.Event()

    async def serve() -> None:
        async with vision_server() as server:
            started.put(server)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield started.get(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("console")
    env = {"EDGEFLEET_API_TOKEN": "t", "EDGEFLEET_ADMIN_PASSWORD": ADMIN_PASSWORD}
    flags = [*FAST_PROTOCOL, "--files-dir", str(tmp / "files"), "--analyse-kinds", "snapshot",
             "--log-level", "WARNING"]  # fmt: skip
    with (
        vision_in_a_thread() as vision,
        edgefleet_serve(tmp, *flags, "--classifier-url", vision.url, env=env) as server,
    ):
        fleet = Fleet(server, tmp, {})
        north = fleet.api("POST", "/groups", {"name": "north"})
        south = fleet.api("POST", "/groups", {"name": "south"})
        fleet.cameras["a"] = fleet.register("cam-north", north["group_id"])
        fleet.cameras["b"] = fleet.register("cam-south", south["group_id"])
        fleet.api("POST", "/users", {"username": "viewer", "password": PASSWORD,
                                     "roles": [{"role": "viewer"}]})  # fmt: skip
        fleet.api("POST", "/users", {"username": "vendor", "password": PASSWORD,
                                     "roles": [{"role": "operator",
                                                "group_id": south["group_id"]}]})  # fmt: skip
        spool = publish_snapshot(tmp / "cam-north")
        fleet.start_agent(fleet.cameras["a"], "--spool-dir", str(spool))
        wait_for(lambda: fleet.api("GET", "/records?kind=snapshot&status=analysed")["items"])
        try:
            yield fleet
        finally:
            for agent in fleet.agents:
                if agent.poll() is None:
                    agent.kill()
                    agent.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@dataclass
class Console:
    """A browser tab on the console, with what its console printed."""

    page: Page
    fleet: Fleet
    messages: list[str]

    def sign_in(self, username: str, password: str = PASSWORD, button: str = "Sign in") -> None:
        self.page.goto(self.fleet.server.base_url + "/")
        self.page.locator("input[name=username]").fill(username)
        self.page.locator("input[name=password]").fill(password)
        self.page.get_by_role("button", name=button).click()
        expect(self.page.get_by_test_id("user")).to_have_text(username)

    def open(self, route: str) -> None:
        self.page.evaluate("route => { window.location.hash = route }", f"#/{route}")

    def device_row(self, name: str) -> Any:
        return self.page.locator("tr[data-device]", has_text=name)


@contextmanager
def console(
    browser: Browser, fleet: Fleet, locale: str = "en-US", allowed: tuple[str, ...] = ()
) -> Iterator[Console]:
    """A fresh browser profile; afterwards, the console must have printed no error
    or warning but those ``allowed`` (regular expressions)."""
    viewport = {"width": 1200, "height": 900}
    context: BrowserContext = browser.new_context(locale=locale, viewport=viewport)
    page = context.new_page()
    messages: list[str] = []

    def printed(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            messages.append(f"{message.type}: {message.text}")

    page.on("console", printed)
    page.on("pageerror", lambda error: messages.append(f"uncaught: {error}"))
    try:
        yield Console(page, fleet, messages)
    finally:
        context.close()
    unexpected = [m for m in messages if not any(re.search(a, m) for a in allowed)]
    assert unexpected == []


def test_sign_in_shows_a_device_online_and_it_goes_offline_without_reloading(
    browser: Browser, fleet: Fleet
) -> None:
    device = fleet.register("cam-roaming", fleet.api("GET", "/groups")["items"][0]["group_id"])
    agent = fleet.start_agent(device)
    with console(browser, fleet) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.page.get_by_role("link", name="Devices", exact=True).click()
        row = tab.device_row("cam-roaming")
        expect(row.locator("[data-state]")).to_have_text("online")
        tab.page.evaluate("window.notReloaded = true")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        expect(row.locator("[data-state]")).to_have_text("offline", timeout=10_000)
        assert tab.page.evaluate("window.notReloaded") is True


def test_the_device_list_is_filtered_and_paged_by_the_server(
    browser: Browser, fleet: Fleet
) -> None:
    # A selector typed half-way is answered 400, which the browser reports; that one
    # message is expected.
    with console(browser, fleet, allowed=(r"status of 400",)) as tab:
        tab.sign_in("viewer")
        tab.open("devices")
        rows = tab.page.locator("tr[data-device]")
        expect(tab.device_row("cam-north")).to_be_visible()
        tab.page.get_by_label("Name or serial number").fill("SN-cam-south")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("cam-south")
        assert tab.page.evaluate("location.hash") == "#/devices?q=SN-cam-south"
        tab.page.get_by_label("Name or serial number").fill("")
        tab.page.get_by_label("State").select_option("online")
        expect(rows.locator("[data-state=offline]")).to_have_count(0)
        expect(tab.device_row("cam-north")).to_be_visible()
        tab.page.get_by_label("State").select_option("")
        tab.page.get_by_label("Group").select_option(label="south")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("cam-south")
        tab.page.get_by_label("Group").select_option("")
        # The whole list again before the next filter: a count of one could otherwise
        # be the group's list still showing, and the label filter's answer come later.
        expect(tab.device_row("cam-north")).to_be_visible()
        labels = tab.page.get_by_label("Labels")
        labels.fill("site in (north, east)")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("cam-north")
        labels.fill("site in (north")  # the server's message, not a silent empty list
        expect(tab.page.get_by_role("alert")).to_contain_text("selector")
        labels.fill("")
        # Every filter in the address goes to the API as it is: a page of one.
        tab.open("devices?per_page=1")
        total = fleet.api("GET", "/devices")["total"]
        pages = tab.page.get_by_role("navigation", name="Pages")
        expect(pages).to_contain_text(f"Page 1 of {total}")
        pages.get_by_role("button", name="Next").click()
        expect(pages).to_contain_text(f"Page 2 of {total}")
        expect(rows).to_have_count(1)


def test_a_reload_keeps_the_sign_in_and_sign_out_revokes_the_refresh_token(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet) as tab:
        tab.sign_in("viewer")
        tab.page.reload()
        expect(tab.page.get_by_test_id("user")).to_have_text("viewer")
        [cookie] = [c for c in tab.page.context.cookies() if c["name"] == "edgefleet_refresh"]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert tab.page.evaluate("document.cookie") == ""  # scripts cannot read it
        tab.page.get_by_role("button", name="Sign out").click()
        expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()
        refreshed = fleet.api("POST", "/auth/refresh", {"refresh_token": cookie["value"]})
        assert refreshed == {"error": 401}
        tab.page.reload()
        expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()


def test_the_device_page_sends_a_custom_command_and_shows_its_result_or_error(
    browser: Browser, fleet: Fleet, tmp_path: Path
) -> None:
    camera = fleet.cameras["a"]
    with console(browser, fleet) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(tab.page.get_by_test_id("tiles")).to_contain_text("Connected now")
        tab.page.screenshot(path=tmp_path / "console-overview.png")
        tab.open(f"devices/{camera['device_id']}")
        page = tab.page
        expect(page.get_by_role("heading", level=1)).to_contain_text("cam-north")
        expect(page.get_by_test_id("state")).to_have_text("online")
        expect(page.locator(".chart .legend")).to_contain_text("%")  # a CPU figure, live
        expect(page.get_by_role("img", name=re.compile("over the last hour"))).to_be_visible()
        page.get_by_label("Command", exact=True).fill("set_exposure")
        page.get_by_label("Parameters (JSON)").fill('{"value": 7}')
        page.get_by_role("button", name="Send").click()
        result = page.get_by_test_id("command-result")
        expect(result).to_contain_text("Succeeded")
        expect(result).to_contain_text('"exposure": 7')
        expect(page.get_by_role("table", name="Event log")).to_contain_text("command result")
        thumbnail = page.get_by_role("img", name="Image of a snapshot record")
        expect(thumbnail).to_be_visible()
        assert thumbnail.evaluate("img => img.complete && img.naturalWidth") == 64
        page.screenshot(path=tmp_path / "console-device.png", full_page=True)

        page.get_by_label("Command", exact=True).fill("set_exposure")
        page.get_by_label("Parameters (JSON)").fill("[7]")
        page.get_by_role("button", name="Send").click()
        expect(result).to_contain_text("Parameters must be a JSON object")
        page.get_by_label("Command", exact=True).fill("no_such_command")
        page.get_by_label("Parameters (JSON)").fill("")
        page.get_by_role("button", name="Send").click()
        expect(result).to_contain_text("Failed")
    for name in ("console-overview.png", "console-device.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
        if os.environ.get("EDGEFLEET_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(tmp_path / name, SCREENSHOTS / name)


def test_the_records_and_the_overview_show_what_a_device_uploaded(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        uploads = tab.page.get_by_role("img", name="Records received per hour, last 24 hours")
        expect(uploads.locator("rect.column[height='0']")).to_have_count(23)  # one hour had it
        expect(tab.page.get_by_test_id("tiles")).to_contain_text("Records, last hour")
        tab.page.get_by_role("navigation", name="Main").get_by_role("link", name="Records").click()
        table = tab.page.get_by_role("table", name="Records")
        expect(table).to_contain_text("snapshot")
        table.get_by_role("link").first.click()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Record: snapshot")
        expect(tab.page.locator("pre.json")).to_contain_text('"lane": 2')
        image = tab.page.get_by_role("img", name="Image from the device")
        expect(image).to_be_visible()
        expect(tab.page.locator("figure.file")).to_contain_text("pets (91%)")  # analysed
        assert image.evaluate("img => img.naturalHeight") == 48


def test_an_administrator_makes_a_user_and_a_key_and_finds_both_in_the_audit_log(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        nav = tab.page.get_by_role("navigation", name="Main")
        nav.get_by_role("link", name="Users").click()
        form = tab.page.locator("form", has=tab.page.get_by_role("button", name="Create"))
        form.get_by_label("User name").fill("night-shift")
        form.get_by_label("Password (leave empty for a service account)").fill(PASSWORD)
        form.get_by_label("Role").select_option("operator")
        form.get_by_role("button", name="Create").click()
        users = tab.page.get_by_role("table", name="Users")
        expect(users.get_by_role("row", name=re.compile("night-shift"))).to_contain_text("operator")
        nav.get_by_role("link", name="API keys").click()
        tab.page.get_by_label("Name", exact=True).fill("dashboard")
        tab.page.get_by_role("button", name="Create").click()
        expect(tab.page.get_by_test_id("new-key")).to_have_text(re.compile(r"^efk_"))
        key = tab.page.get_by_test_id("new-key").text_content()
        assert fleet.api("GET", "/auth/me", token=key)["key"]["name"] == "dashboard"  # it works
        nav.get_by_role("link", name="Audit log").click()
        log = tab.page.get_by_role("table", name="Audit log")
        expect(log.get_by_role("row", name=re.compile(r"admin create_user user:"))).to_have_count(1)
        expect(log.get_by_role("row", name=re.compile("create_api_key"))).to_have_count(1)


def test_the_classification_page_shows_the_category_of_a_dropped_image(
    browser: Browser, fleet: Fleet
) -> None:
    image = png(32, 32, (200, 40, 40))
    with console(browser, fleet) as tab:
        tab.sign_in("viewer")
        tab.page.get_by_role("link", name="Classification test").click()
        # Dropped, as a person drags a file from their desktop.
        tab.page.evaluate(
            """bytes => {
                const file = new File([new Uint8Array(bytes)], "red.png", {type: "image/png"});
                const data = new DataTransfer();
                data.items.add(file);
                const zone = document.querySelector(".drop");
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
            }""",
            list(image),
        )
        result = tab.page.get_by_test_id("classify-result")
        expect(result).to_contain_text("pets")
        expect(result).to_contain_text("91%")
        expect(tab.page.get_by_role("img", name="red.png")).to_be_visible()
        # Chosen with the keyboard's file dialog instead: the same image is cached.
        tab.page.get_by_label(re.compile("Drop an image here")).set_input_files(
            files=[{"name": "again.png", "mimeType": "image/png", "buffer": image}]
        )
        expect(result.get_by_text("From the cache")).to_be_visible()
        expect(result.locator("dd").nth(2)).to_have_text("yes")


def test_a_viewer_sees_the_device_but_no_command_form_and_no_admin_pages(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet) as tab:
        tab.sign_in("viewer")
        nav = tab.page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Devices")).to_be_visible()
        expect(nav.get_by_role("link", name="Users")).to_have_count(0)
        expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
        tab.open(f"devices/{fleet.cameras['a']['device_id']}")
        expect(tab.page.get_by_role("heading", name="Event log")).to_be_visible()
        expect(tab.page.get_by_test_id("state")).to_have_text("online")
        expect(tab.page.get_by_test_id("command-form")).to_have_count(0)
        expect(tab.page.get_by_role("heading", name="Send a command")).to_have_count(0)


def test_a_user_limited_to_a_group_sees_only_that_groups_devices(
    browser: Browser, fleet: Fleet
) -> None:
    # Opening the other group's device by its address is answered 404, which the
    # browser reports; that one message is expected.
    not_found = r"status of 404"
    with console(browser, fleet, allowed=(not_found,)) as tab:
        tab.sign_in("vendor")
        tab.open("devices")
        expect(tab.device_row("cam-south")).to_be_visible()
        expect(tab.page.locator("tr[data-device]")).to_have_count(1)
        expect(tab.page.get_by_label("Group")).to_contain_text("south")
        expect(tab.page.get_by_label("Group")).not_to_contain_text("north")
        # An operator of its group: it may command its own camera.
        tab.open(f"devices/{fleet.cameras['b']['device_id']}")
        expect(tab.page.get_by_test_id("command-form")).to_be_visible()
        tab.open(f"devices/{fleet.cameras['a']['device_id']}")
        expect(tab.page.get_by_role("alert")).to_contain_text("The device operation failed")
        expect(tab.page.get_by_role("heading", name="cam-north")).to_have_count(0)


def test_the_console_speaks_chinese_to_a_chinese_browser_and_switches(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet, locale="zh-CN") as tab:
        tab.sign_in("admin", ADMIN_PASSWORD, button="登录")
        assert tab.page.evaluate("document.documentElement.lang") == "zh-CN"
        nav = tab.page.get_by_role("navigation", name="主菜单")
        expect(nav.get_by_role("link", name="设备", exact=True)).to_be_visible()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("概览")
        tab.open("devices")
        expect(tab.device_row("cam-north").locator("[data-state]")).to_have_text("在线")
        expect(tab.page.get_by_label("状态")).to_be_visible()
        tab.page.get_by_label("语言").select_option("en")
        english = tab.page.get_by_role("navigation", name="Main")
        expect(english.get_by_role("link", name="Devices", exact=True)).to_be_visible()
        tab.page.reload()  # the choice is remembered
        expect(tab.page.get_by_role("link", name="Devices", exact=True)).to_be_visible()


def test_the_console_is_usable_360_pixels_wide(browser: Browser, fleet: Fleet) -> None:
    with console(browser, fleet) as tab:
        tab.page.set_viewport_size({"width": 360, "height": 740})
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open(f"devices/{fleet.cameras['a']['device_id']}")
        expect(tab.page.get_by_role("button", name="Send")).to_be_visible()
        overflow = tab.page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 360
        # Keyboard only: the skip button, then the menu's links in order.
        tab.page.keyboard.press("Tab")
        expect(tab.page.get_by_role("button", name="Skip to content")).to_be_focused()
        tab.page.keyboard.press("Tab")
        tab.page.keyboard.press("Tab")
        expect(tab.page.get_by_role("link", name="Overview")).to_be_focused()
        tab.page.keyboard.press("Enter")
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Overview")


def config_of(fleet: Fleet, device: dict[str, Any]) -> dict[str, Any]:
    return fleet.api("GET", f"/devices/{device['device_id']}/config?effective=true")


CONFIG_HOOK = "import json, sys\njson.load(sys.stdin)\n"
"""A device's own program taking its configuration (it reads it, exit status 0)."""


def test_the_device_page_shows_desired_and_reported_configuration_and_edits_it(
    browser: Browser, fleet: Fleet
) -> None:
    """A camera whose agent takes configurations applies what is saved and reports
    it: the panel turns in sync by itself. A save over someone else's change is
    refused (412) with a clear message, and goes through on the second try."""
    group = fleet.api("GET", "/groups")["items"][0]["group_id"]
    camera = fleet.register("cam-config", group)
    hook = fleet.tmp / "config_hook.py"
    hook.write_text(CONFIG_HOOK)
    fleet.start_agent(camera, "--config-hook", f"{sys.executable} {hook}")
    path = f"/devices/{camera['device_id']}/config"
    wait_for(lambda: config_of(fleet, camera)["in_sync"] is not None)  # it takes them
    # Someone else's concurrent save is answered 412, which the browser reports.
    with console(browser, fleet, allowed=(r"status of 412",)) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open(f"devices/{camera['device_id']}")
        panel = tab.page.get_by_role("region", name="Configuration")
        expect(panel.locator("[data-sync]")).not_to_have_text("unsupported")
        editor = panel.get_by_label("Configuration (JSON)")
        editor.fill('{"exposure": 30}')
        panel.get_by_role("button", name="Save").click()
        message = panel.get_by_test_id("config-message")
        expect(message).to_contain_text("Saved as version")
        expect(panel.get_by_test_id("config-desired")).to_contain_text('"exposure": 30')
        # The agent applies it and reports: the panel follows without a reload.
        expect(panel.get_by_test_id("config-reported")).to_contain_text('"exposure": 30')
        expect(panel.locator("[data-sync]")).to_have_attribute("data-sync", "in_sync")

        version = fleet.api("GET", path)["desired_version"]
        fleet.api("PUT", path, {"config": {"exposure": 40}})  # another person, meanwhile
        editor.fill('{"exposure": 35}')
        panel.get_by_role("button", name="Save").click()
        expect(message).to_contain_text("changed this configuration meanwhile")
        expect(message).to_contain_text(f"version {version + 1}")
        expect(editor).to_have_value('{"exposure": 35}')  # what the user typed is kept
        expect(panel.get_by_test_id("config-desired")).to_contain_text('"exposure": 40')
        panel.get_by_role("button", name="Save").click()
        expect(message).to_contain_text(f"Saved as version {version + 2}")
        assert fleet.api("GET", path)["desired"] == {"exposure": 35}
        editor.fill("[1, 2]")
        panel.get_by_role("button", name="Save").click()
        expect(message).to_contain_text("must be a JSON object")


def test_a_version_1_device_shows_unsupported_and_a_viewer_cannot_edit(
    browser: Browser, fleet: Fleet
) -> None:
    """Camera A's agent runs without a configuration hook: it logs in as a
    version-1 device would, without the config extension."""
    camera = fleet.cameras["a"]
    assert config_of(fleet, camera)["in_sync"] is None
    with console(browser, fleet) as tab:
        tab.sign_in("viewer")
        tab.open(f"devices/{camera['device_id']}")
        panel = tab.page.get_by_role("region", name="Configuration")
        expect(panel.locator("[data-sync]")).to_have_text("unsupported")
        expect(panel).to_contain_text("version-1 device")
        expect(panel.get_by_test_id("config-reported")).to_contain_text("Not reported yet.")
        expect(panel.get_by_test_id("config-form")).to_have_count(0)


def start_job(fleet: Fleet, name: str, value: int) -> dict[str, Any]:
    """Camera A (online) runs it at once; camera B is offline: its command waits."""
    ids = [fleet.cameras["a"]["device_id"], fleet.cameras["b"]["device_id"]]
    body = {"name": name, "target": {"device_ids": ids},
            "action": {"command": {"order": "set_exposure", "params": {"value": value}}},
            "rollout": {"max_per_minute": 600}}  # fmt: skip
    return fleet.api("POST", "/jobs", body)


def test_jobs_list_and_job_page_follow_progress_live_and_pause_resume_cancel(
    browser: Browser, fleet: Fleet
) -> None:
    with console(browser, fleet) as tab:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Jobs")
        found = start_job(fleet, "exposure-night", 3)
        row = tab.page.locator(f"tr[data-job='{found['job_id']}']")  # live: no reload
        expect(row).to_contain_text("command set_exposure")
        expect(row).to_contain_text("1 of 2 done, 0 failed", timeout=10_000)
        expect(row.locator("[data-job-state]")).to_have_text("running")
        expect(row).to_contain_text("devices a minute")
        row.get_by_role("link", name="exposure-night").click()

        page = tab.page
        expect(page.get_by_role("heading", level=1)).to_contain_text("Job: exposure-night")
        runs = page.get_by_role("table", name="Devices of the job")
        expect(runs.locator("[data-execution=succeeded]")).to_have_count(1)
        expect(runs).to_contain_text("Succeeded:")
        expect(runs.locator("[data-execution=queued]")).to_have_count(1)
        settings = page.get_by_role("region", name="Settings")
        expect(settings).to_contain_text("2 devices chosen by id")
        expect(settings).to_contain_text('"value": 3')
        state = page.get_by_role("heading", level=1).locator("[data-job-state]")
        page.get_by_role("button", name="Pause").click()
        expect(state).to_have_text("paused")
        page.get_by_role("button", name="Resume").click()
        expect(state).to_have_text("running")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel job exposure-night").click()
        expect(state).to_have_text("canceled")
        expect(runs.locator("[data-execution=canceled]")).to_have_count(1)  # camera B's
        expect(page.get_by_test_id("job-controls").get_by_role("button")).to_have_count(0)
        assert fleet.api("GET", f"/jobs/{found['job_id']}")["state"] == "canceled"


def test_a_viewer_follows_jobs_without_buttons_and_a_group_user_has_no_jobs(
    browser: Browser, fleet: Fleet
) -> None:
    found = start_job(fleet, "viewer-sees", 4)
    with console(browser, fleet) as tab:
        tab.sign_in("viewer")
        tab.page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
        tab.page.get_by_role("link", name="viewer-sees").click()
        expect(tab.page.get_by_role("heading", level=1)).to_contain_text("viewer-sees")
        expect(tab.page.get_by_test_id("job-progress")).to_contain_text("of 2 done")
        expect(tab.page.get_by_role("button", name="Pause")).to_have_count(0)
        expect(tab.page.get_by_test_id("job-controls")).to_have_count(0)
    fleet.api("POST", f"/jobs/{found['job_id']}/cancel")
    with console(browser, fleet) as tab:
        tab.sign_in("vendor")
        nav = tab.page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Devices")).to_be_visible()
        expect(nav.get_by_role("link", name="Jobs")).to_have_count(0)


def test_the_configuration_panel_and_the_jobs_pages_speak_chinese(
    browser: Browser, fleet: Fleet
) -> None:
    found = start_job(fleet, "zh-job", 5)
    with console(browser, fleet, locale="zh-CN") as tab:
        tab.sign_in("admin", ADMIN_PASSWORD, button="登录")
        tab.open(f"devices/{fleet.cameras['a']['device_id']}")
        panel = tab.page.get_by_role("region", name="配置")
        expect(panel.locator("[data-sync]")).to_have_text("不支持")  # camera A: version 1
        expect(panel.get_by_role("button", name="保存")).to_be_visible()
        expect(panel.get_by_test_id("config-desired")).to_contain_text("期望配置")
        tab.page.get_by_role("navigation", name="主菜单").get_by_role("link", name="任务").click()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("任务")
        row = tab.page.locator(f"tr[data-job='{found['job_id']}']")
        expect(row.locator("[data-job-state]")).to_have_text("运行中")
        expect(row).to_contain_text("命令 set_exposure")
        row.get_by_role("link", name="zh-job").click()
        expect(tab.page.get_by_role("heading", level=1)).to_contain_text("zh-job")
        assert tab.page.title().startswith("任务")
        expect(tab.page.get_by_role("button", name="暂停")).to_be_visible()
        expect(tab.page.get_by_role("table", name="任务中的设备")).to_contain_text("已排队")
    fleet.api("POST", f"/jobs/{found['job_id']}/cancel")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_page_has_a_strict_policy_and_no_inline_script(fleet: Fleet) -> None:
    status, headers, body = _get(fleet.console)
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "require-trusted-types-for 'script'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    page = body.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all("src=" in attrs and not text.strip() for attrs, text in scripts)
    assert not re.search(r"<[^>]*\s(style|on\w+)=", page)  # no inline style or handler
    assert "http://" not in page and "https://" not in page  # no CDN


def test_the_root_redirects_to_the_console_and_its_files_come_compressed(fleet: Fleet) -> None:
    opener = urllib.request.build_opener(NoRedirect)
    for path in ("/", "/console"):
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(fleet.server.base_url + path, timeout=10)
        assert (redirect.value.code, redirect.value.headers["Location"]) == (302, "/console/")
    status, headers, body = _get(fleet.console + "js/main.js", {"Accept-Encoding": "gzip"})
    assert (status, headers["Content-Encoding"]) == (200, "gzip")
    assert headers["Content-Type"].startswith("text/javascript")
    assert b"import" in gzip.decompress(body)
    again = _get(fleet.console + "js/main.js", {"If-None-Match": headers["ETag"]})
    assert again[0] == 304
    for missing in ("nothing.js", "../app.py", "js/", "i18n/fr.json"):
        assert _get(fleet.console + missing)[0] == 404, missing


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


# --- the files themselves: no prose outside the catalogues, nothing missing -------

CONSOLE = console_files()
CATALOGUES = {name: json.loads(CONSOLE.files[f"i18n/{name}.json"].body) for name in ("en", "zh-CN")}
NOT_PROSE = {"Content-Type", "Authorization", "Last-Event-ID", "Bearer ${access}", "Enter"}
"""Literals that look like words but that only the browser reads (HTTP headers, a
key's name), never a person."""


def _literals(source: str) -> list[str]:
    """The string and template literals of a script, comments left out (enough of
    JavaScript for our own files, whose regular expressions hold no quotes)."""
    found, i = [], 0
    while i < len(source):
        if source.startswith("//", i):
            i = source.index("\n", i)
        elif source.startswith("/*", i):
            i = source.index("*/", i) + 2
        elif source[i] in "'\"`":
            quote, j = source[i], i + 1
            while source[j] != quote:
                j += 2 if source[j] == "\\" else 1
            found.append(source[i + 1 : j])
            i = j + 1
        else:
            i += 1
    return found


def _is_prose(literal: str) -> bool:
    """Words for a person: two words in a row, a capitalised word, or Chinese.
    Class names (``badge state-${state}``) are not words."""
    words = [w for w in literal.split() if "-" not in w and "${" not in w]
    text = " ".join(words)
    return bool(
        re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", text)
        or re.match(r"[A-Z][a-z]+", text)
        or re.search(r"[\u3000-\u9fff]", text)
    )


def test_no_words_a_person_reads_are_written_outside_the_two_catalogues() -> None:
    scripts = {name: f.body.decode() for name, f in CONSOLE.files.items() if name.endswith(".js")}
    assert "js/main.js" in scripts and len(scripts) > 10
    prose = [
        (name, literal)
        for name, source in scripts.items()
        for literal in _literals(source)
        if _is_prose(literal) and literal not in NOT_PROSE
    ]
    assert prose == []
    page = CONSOLE.files["index.html"].body.decode()
    assert [text for text in re.findall(r">([^<]*)<", page) if text.strip()] == []
    assert not re.search(r"\s(title|alt|placeholder|aria-label)=", page)


def test_both_catalogues_hold_every_message_the_scripts_ask_for() -> None:
    english, chinese = CATALOGUES["en"], CATALOGUES["zh-CN"]
    assert english.keys() == chinese.keys()
    assert all(english.values()) and all(chinese.values())
    asked = {
        key
        for f in CONSOLE.files.values()
        if f.path.suffix == ".js"
        for key in re.findall(r"\bt\(\s*\"([^\"]+)\"", f.body.decode())
    }
    assert asked and asked <= english.keys(), asked - english.keys()
    # Placeholders match: a translation names the same {values} as the English.
    for key, text in english.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", chinese[key])), key
    # Every error type the API answers with has its message.
    assert {f"error.{kind.value}" for kind in ErrorType} <= english.keys()
    assert re.search(r"[\u4e00-\u9fff]", chinese["nav.devices"])


def test_the_page_preloads_every_module() -> None:
    """The page names every module it imports, so the browser fetches them all at
    once instead of discovering them import by import."""
    page = CONSOLE.files["index.html"].body.decode()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/console/([^"]+)">', page))
    modules = {name for name in CONSOLE.files if name.endswith(".js")} - {"js/main.js"}
    assert preloaded == modules
    for name in re.findall(r'(?:href|src)="/console/([^"]+)"', page):
        assert name in CONSOLE.files, name
