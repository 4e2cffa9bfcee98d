"""Web console benchmark: how fast a person gets a usable page, with 100,000 devices.

    python bench/console.py [--devices 100000] [--runs 10]

1. Recreates the database ``edgefleet_console_bench`` on the local MariaDB and
   seeds it as ``bench/northbound.py`` does (devices of four types, groups of 1,000).
2. Starts ``edgefleet serve`` on it, pinned to CPU 0, with an administrator.
3. Drives Debian's headless chromium (Playwright), pinned to CPU 1 with all its
   processes, in a child process of this script:
   - signs in once (the cookie then restores the session on every load, as for a
     person coming back);
   - ``--runs`` times: opens a new tab on ``/console/#/devices`` and times from
     the navigation until the first page of 50 rows is in the table; then a new
     tab on a random device's page until its details and status are drawn;
   - the first load of each is cold (nothing cached), the others revalidate the
     console's files (304s) as a returning browser does;
   - page weight: the bytes that crossed the wire for the console's own files on
     the cold load (gzip), and for the API answers, read from the browser.
4. Prints a summary and writes ``bench/results/console.json``.

Goals (issue 16): a usable device list and device page in under 1 s (median),
all the console's files under 200 KiB compressed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import recreate_database, start_server  # noqa: E402
from bench.northbound import seed  # noqa: E402
from edgefleet.controller.api.console import console_files  # noqa: E402
from edgefleet.controller.api.static_files import COMPRESSIBLE  # noqa: E402
from tests.server_process import free_port  # noqa: E402

DATABASE = "edgefleet_console_bench"
PASSWORD = "console-bench-1234"
TIMEOUT_MS = 30_000
LIST_READY = "tr[data-device]:nth-child(50)"
"""The device list is usable: its first page of 50 rows is in the table."""
DEVICE_READY = "[data-testid=status] figure"
"""The device page is usable: details, groups, log and the status chart are drawn."""


def _transferred(responses: list[Any], prefix: str) -> int:
    """Body bytes on the wire (Content-Length: gzip for the console's files, as
    sent) of the answers under ``prefix`` that are complete when the page is
    usable; a 304 carries none."""
    total = 0
    for response in responses:
        path = response.url.split("://", 1)[1].split("/", 1)[1]
        # The event stream never ends: it has no length.
        if path.startswith(prefix) and not path.startswith("api/v1/stream"):
            total += int(response.header_value("content-length") or 0)
    return total


def browse(plan: dict[str, Any]) -> dict[str, Any]:
    """In the child on CPU 1: the timings and the page weight."""
    from tests.browser import headless_chromium

    base, runs = plan["base"], plan["runs"]
    rng = random.Random(3)
    with headless_chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base + "/console/")
        page.locator("input[name=username]").fill("admin")
        page.locator("input[name=password]").fill(PASSWORD)
        page.locator("button[type=submit]").click()
        page.wait_for_selector("[data-testid=tiles]", timeout=TIMEOUT_MS)
        page.close()

        def timed(url: str, ready: str, cold: bool) -> dict[str, Any]:
            """One load in a new tab; ``cold``: with the browser's cache off, as
            on a first visit (the sign-in cookie stays)."""
            tab = context.new_page()
            if cold:
                context.new_cdp_session(tab).send(
                    "Network.setCacheDisabled", {"cacheDisabled": True}
                )
            responses: list[Any] = []
            tab.on("response", lambda response: responses.append(response))
            started = time.perf_counter()
            tab.goto(url, wait_until="commit")
            tab.wait_for_selector(ready, timeout=TIMEOUT_MS)
            elapsed = time.perf_counter() - started
            measured = {
                "seconds": elapsed,
                "api_bytes": _transferred(responses, "api/v1/"),
                "files": sorted(
                    r.url.split("/console/", 1)[1] for r in responses if "/console/" in r.url
                ),
            }
            tab.close()
            return measured

        results: dict[str, list[dict[str, Any]]] = {}
        for cold in (True, False):
            for _ in range(runs):
                device_id = rng.choice(plan["device_ids"])
                pages = {
                    "device_list": (base + "/console/#/devices", "tr[data-device]:nth-child(50)"),
                    "device_page": (
                        f"{base}/console/#/devices/{device_id}",
                        "[data-testid=status] figure",
                    ),
                }
                for name, (url, ready) in pages.items():
                    key = f"{name}_{'cold' if cold else 'warm'}"
                    results.setdefault(key, []).append(timed(url, ready, cold))
        context.close()
    return results


def page_weight(files: list[str]) -> int:
    """Bytes of the console's files the browser fetched, as the server sends them
    to a browser (gzip where it helps). The browser's own accounting cannot say:
    modules it preloads are handed over without their response headers."""
    served = console_files().files
    total = 0
    for name in files:
        found = served[name or "index.html"]
        total += len(found.gzipped if found.path.suffix in COMPRESSIBLE else found.body)
    return total


def summary(loads: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [load["seconds"] for load in loads]
    return {
        "runs": len(seconds),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "min_ms": round(min(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "console_files_kib": round(page_weight(loads[0]["files"]) / 1024, 1),
        "api_kib": round(statistics.median(load["api_bytes"] for load in loads) / 1024, 1),
        "raw_seconds": [round(s, 4) for s in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--group-size", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--port", type=int, default=free_port())
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/console.json")
    parser.add_argument("--browse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.browse:
        json.dump(browse(json.load(sys.stdin)), sys.stdout)
        return

    url = recreate_database(DATABASE)
    started = time.perf_counter()
    device_ids = asyncio.run(seed(url, args.devices, args.group_size))
    print(
        f"seeded {args.devices} devices in {time.perf_counter() - started:.1f} s", file=sys.stderr
    )
    ports = ("--ws-port", str(free_port()), "--metrics-port", str(free_port()))
    server = start_server(url, args.port, "WARNING", ("--admin-password", PASSWORD, *ports))
    try:
        plan = {
            "base": f"http://127.0.0.1:{args.port}",
            "runs": args.runs,
            "device_ids": [str(i) for i in device_ids],
        }
        child = subprocess.run(
            ["taskset", "-c", "1", sys.executable, __file__, "--browse"],
            input=json.dumps(plan),
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            cwd=ROOT,
        )
        measured = json.loads(child.stdout)
    finally:
        server.terminate()
        server.wait(30)

    report = {
        "benchmark": "console",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "server_cpu": 0, "browser_cpu": 1},
        "database": "MariaDB (local)",
        "browser": "Debian chromium, headless, via Playwright",
        "devices": args.devices,
        "results": {name: summary(loads) for name, loads in measured.items()},
        "console_files": measured["device_list_cold"][0]["files"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for name, result in report["results"].items():
        print(
            f"{name:18} median {result['median_ms']:7.1f} ms  min {result['min_ms']:7.1f} ms  "
            f"max {result['max_ms']:7.1f} ms  console files {result['console_files_kib']} KiB  "
            f"API {result['api_kib']} KiB"
        )
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
