"""Bulk import and export: one 10,000-row CSV file through a real ``edgefleet serve``.

    python bench/bulk_import.py [--rows 10000] [--database mariadb|sqlite]

1. Recreates the database (``edgefleet_bulk_bench`` on the local MariaDB, or a
   SQLite file) and starts ``edgefleet serve`` on it, pinned to CPU 0, with the
   production bcrypt cost (12): passwords given in a file are hashed at that cost,
   generated ones at bcrypt's lowest (see ``controller/bulk_import.py``).
2. Creates a dynamic group (``tier=edge``) so that the import also does the
   membership work a labelled fleet causes.
3. From this process, pinned to CPU 1: POSTs the whole file in one request and
   times it; checks every row was registered and the group has its members;
   then exports the fleet as CSV and as JSON lines, timing each and counting the
   rows that came back.
4. Prints a summary and writes ``bench/results/bulk_import.json``.

Not a test: wall-clock figures for the README, measured on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    TOKEN,
    recreate_database,
    start_server,
)

DATABASE = "edgefleet_bulk_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def csv_file(rows: int) -> bytes:
    lines = ["name,type,hardware_sn,hardware_model,labels"]
    for i in range(rows):
        tier = "edge" if i % 4 else "core"
        lines.append(f'cam-{i},camera,SN-{i:06},ModelB,"site=site-{i % 50},tier={tier}"')
    return ("\n".join(lines) + "\n").encode()


def call(
    base: str, method: str, path: str, body: bytes | None = None, media: str | None = None
) -> tuple[float, bytes]:
    """Seconds the request took (to the last byte of the answer), and the answer."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if media:
        headers["Content-Type"] = media
    request = urllib.request.Request(base + path, data=body, headers=headers, method=method)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        data = response.read()
    return time.perf_counter() - started, data


def run(rows: int, database: str, work: Path) -> dict[str, Any]:
    if database == "mariadb":
        url = recreate_database(DATABASE)
    else:
        url = f"sqlite+aiosqlite:///{work / 'bulk.db'}"
    port = free_port()
    extra = ("--ws-port", str(free_port()), "--metrics-port", str(free_port()),
             "--files-dir", str(work / "files"), "--bcrypt-rounds", "12")  # fmt: skip
    server = start_server(url, port, "WARNING", extra)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        group_body = json.dumps({"name": "edge", "selector": "tier=edge"}).encode()
        _, answer = call(base, "POST", "/groups", group_body, "application/json")
        group_id = json.loads(answer)["data"]["group_id"]

        body = csv_file(rows)
        seconds, answer = call(base, "POST", "/devices/import", body, "text/csv")
        imported = json.loads(answer)["data"]
        _, answer = call(base, "GET", f"/groups/{group_id}")
        members = json.loads(answer)["data"]["device_count"]

        csv_seconds, exported_csv = call(base, "GET", "/devices/export?format=csv")
        jsonl_seconds, exported_jsonl = call(base, "GET", "/devices/export?format=jsonl")
    finally:
        server.terminate()
        server.wait(30)
    return {
        "database": database,
        "rows": rows,
        "file_bytes": len(body),
        "import_seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "registered": imported["registered"],
        "failed": imported["failed"],
        "dynamic_group_members": members,
        "dynamic_group_expected": sum(1 for i in range(rows) if i % 4),
        "export_csv_seconds": round(csv_seconds, 2),
        "export_csv_rows": exported_csv.decode().count("\n") - 1,
        "export_jsonl_seconds": round(jsonl_seconds, 2),
        "export_jsonl_rows": exported_jsonl.decode().count("\n"),
        "cpus": "server on CPU 0, client on CPU 1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--database", choices=["mariadb", "sqlite"], default="mariadb")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/bulk_import.json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="edgefleet-bulk-") as work:
        report = run(args.rows, args.database, Path(work))
    print(
        f"{report['rows']} rows ({report['database']}): imported in "
        f"{report['import_seconds']} s ({report['rows_per_second']} rows/s), "
        f"{report['registered']} registered, {report['failed']} failed; dynamic group "
        f"{report['dynamic_group_members']}/{report['dynamic_group_expected']} members; "
        f"export CSV {report['export_csv_seconds']} s ({report['export_csv_rows']} rows), "
        f"JSON lines {report['export_jsonl_seconds']} s ({report['export_jsonl_rows']} rows)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
