"""Data uplink benchmark: records, files and the agent's queue, against a real server.

    python bench/uplink.py [--devices 1000] [--duration 60] [--batch 50] [--interval 5]

1. Recreates the MariaDB database ``edgefleet_uplink_bench``, seeds the devices
   (one bcrypt hash at ``--bcrypt-rounds``, 12 as users run it, and the verified
   digest of an earlier login, so a login costs one HMAC) and starts ``edgefleet serve``
   pinned to CPU 0, its files in a temporary folder.
2. (a) Records: ``--load-processes`` load processes on CPU 1 log every device in
   (extension ``data``) and, open loop from random offsets, send a batch of
   ``--batch`` new records every ``--interval`` seconds for ``--duration``
   seconds; each batch's ack latency is timed from when it was due. Records
   stored per second = records acknowledged as accepted / duration.
3. (b) Files, from one device: ``HEAD`` latency (present and missing files),
   ``PUT`` throughput for ``--files`` random ``--file-kib`` KiB "JPEGs" (one at a
   time, and ``--put-concurrency`` at once), and the bytes on the wire, both
   ways, for a record whose image the cloud already has (HEAD, then the
   ``upload_data`` frame and its answer).
4. (c) The agent, on CPU 1: ``publish`` latency for ``--publish`` records into
   its durable queue while offline, then the records a second drained once it
   connects.
5. Prints a summary and writes ``bench/results/uplink.json``.

Not part of the test suite; smoke it with tiny numbers, e.g.
``python bench/uplink.py --devices 20 --duration 5 --files 5 --publish 200``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import percentiles, recreate_database, run_load_process, start_server  # noqa: E402
from bench.southbound_load import PASSWORD, PEPPER, raise_fd_limit, seed  # noqa: E402

DATABASE = "edgefleet_uplink_bench"


def record(device: int, n: int) -> dict[str, Any]:
    return {
        "record_id": f"{device}-{n}",
        "kind": "detection",
        "at": "2025-12-01T09:47:24Z",
        "payload": {"vehicle": "truck", "confidence": 0.95, "lane": n % 4, "speed_kmh": 62.5},
    }


# --- (a) the load process ---------------------------------------------------------------


async def device_loop(
    device_id: str, plan: dict[str, Any], acks: list[float], accepted: list[int]
) -> None:
    import websockets

    async with websockets.connect(plan["url"], compression=None, max_size=None) as ws:
        login = {"device_id": device_id, "password": PASSWORD, "extensions": ["data"]}
        await ws.send(json.dumps(login))
        answer = json.loads(await ws.recv())
        assert answer["status"] == "success", answer
        await asyncio.sleep(max(0.0, plan["start_at"] - time.time()))
        await asyncio.sleep(random.uniform(0, plan["interval"]))
        due, n = time.time(), 0
        while due < plan["until"]:
            await asyncio.sleep(max(0.0, due - time.time()))
            batch = [record(int(device_id) % 10**9, n + i) for i in range(plan["batch"])]
            n += plan["batch"]
            frame = {"type": "upload_data", "Headers": {"request_id": str(n)},
                     "data": {"records": batch}}  # fmt: skip
            await ws.send(json.dumps(frame))
            while True:  # pongs are not asked for: every frame is the batch's answer
                result = json.loads(await ws.recv())
                if result.get("type") == "upload_data_result":
                    break
            acks.append(time.time() - due)
            accepted.append(len(result["data"]["accepted"]))
            due += plan["interval"]


async def load_main(plan: dict[str, Any]) -> dict[str, Any]:
    acks: list[float] = []
    accepted: list[int] = []
    results = await asyncio.gather(
        *(device_loop(d, plan, acks, accepted) for d in plan["device_ids"]),
        return_exceptions=True,
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"acks": acks, "accepted": sum(accepted), "errors": errors[:5], "failed": len(errors)}


# --- (b) files --------------------------------------------------------------------------


async def http(port: int, request: bytes) -> tuple[int, int]:
    """One raw HTTP/1.1 exchange: (status, bytes received)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    received = await reader.read()  # Connection: close
    writer.close()
    return int(received.split(b" ", 2)[1]), len(received)


def head_request(sha256: str, auth: str) -> bytes:
    return (f"HEAD /files/{sha256} HTTP/1.1\r\nHost: fleet\r\nAuthorization: {auth}\r\n"
            "Connection: close\r\n\r\n").encode()  # fmt: skip


def put_request(sha256: str, auth: str, body: bytes) -> bytes:
    return (f"PUT /files/{sha256} HTTP/1.1\r\nHost: fleet\r\nAuthorization: {auth}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body  # fmt: skip


async def files_bench(args: argparse.Namespace, device_id: int) -> dict[str, Any]:
    import websockets

    port = args.ws_port
    auth = "Basic " + base64.b64encode(f"{device_id}:{PASSWORD}".encode()).decode()
    images = [os.urandom(args.file_kib * 1024) for _ in range(args.files)]
    digests = [hashlib.sha256(image).hexdigest() for image in images]
    started = time.perf_counter()
    half = len(images) // 2
    for sha256, image in zip(digests[:half], images[:half], strict=True):
        status, _ = await http(port, put_request(sha256, auth, image))
        assert status == 201, status
    sequential = time.perf_counter() - started
    slots = asyncio.Semaphore(args.put_concurrency)

    async def put(sha256: str, image: bytes) -> None:
        async with slots:
            status, _ = await http(port, put_request(sha256, auth, image))
            assert status == 201, status

    started = time.perf_counter()
    await asyncio.gather(*(put(s, i) for s, i in zip(digests[half:], images[half:], strict=True)))
    concurrent = time.perf_counter() - started
    heads = []
    for n in range(args.heads):
        sha256 = digests[n % len(digests)] if n % 2 else hashlib.sha256(b"%d" % n).hexdigest()
        t = time.perf_counter()
        await http(port, head_request(sha256, auth))
        heads.append(time.perf_counter() - t)

    # A record whose image the cloud has: HEAD, then the record, and the answers.
    request = head_request(digests[0], auth)
    status, head_in = await http(port, request)
    assert status == 200
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
        await ws.send(json.dumps({"device_id": str(device_id), "password": PASSWORD,
                                  "extensions": ["data"]}))  # fmt: skip
        await ws.recv()
        frame = json.dumps(
            {"type": "upload_data", "Headers": {"request_id": "r-1"},
             "data": {"records": [{**record(device_id, 10**6), "files": [digests[0]]}]}},
            separators=(",", ":"),
        )  # fmt: skip
        await ws.send(frame)
        answer = await ws.recv()
    # WebSocket framing: 2 bytes, +2 for lengths over 125, +4 of mask from the device.
    up = len(request) + len(frame) + 2 + (2 if len(frame) > 125 else 0) + 4
    down = head_in + len(answer) + 2 + (2 if len(answer) > 125 else 0)
    total_mib = sum(len(i) for i in images) / 2**20
    return {
        "files": len(images),
        "file_kib": args.file_kib,
        "put_sequential_mib_s": round(total_mib / 2 / sequential, 1),
        "put_sequential_files_s": round(half / sequential, 1),
        "put_concurrent_mib_s": round(total_mib / 2 / concurrent, 1),
        "put_concurrency": args.put_concurrency,
        "head": percentiles(heads),
        "known_image_record_bytes": {"up": up, "down": down, "total": up + down},
    }


# --- (c) the agent ------------------------------------------------------------------------

AGENT = """
import asyncio, json, sys, time
from edgefleet.agent.runner import Agent
from edgefleet.agent.settings import AgentSettings

async def main(config):
    offline = AgentSettings(**{**config, "server": "ws://127.0.0.1:9/ws"})
    agent = Agent(offline, log_to_stderr=False)
    latencies = []
    for n in range(config_count):
        t = time.perf_counter()
        await agent.publish("detection", {"n": n, "lane": n % 4, "confidence": 0.9})
        latencies.append(time.perf_counter() - t)
    agent.queue.close()
    online = Agent(AgentSettings(**config), log_to_stderr=False)
    started = time.perf_counter()
    running = asyncio.create_task(online.run_async())
    while (await asyncio.to_thread(online.queue.stats)).depth:
        await asyncio.sleep(0.05)
    drained = time.perf_counter() - started
    online.stop()
    await running
    print(json.dumps({"publish": latencies, "drain_seconds": drained}))

config = json.loads(sys.argv[1])
config_count = config.pop("count")
asyncio.run(main(config))
"""


def agent_bench(args: argparse.Namespace, device_id: int, work: Path) -> dict[str, Any]:
    (work / "password").write_text(PASSWORD)
    config = {
        "server": f"ws://127.0.0.1:{args.ws_port}/ws",
        "device_id": str(device_id),
        "password_file": str(work / "password"),
        "state_dir": str(work / "agent-state"),
        "log_dir": str(work / "agent-log"),
        "spool_dir": "",
        "count": args.publish,
    }
    output = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", AGENT, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=args.publish / 10 + 120,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return {
        "records": args.publish,
        "publish": percentiles(result["publish"]),
        "drain_seconds": round(result["drain_seconds"], 2),
        "drained_records_s": round(args.publish / result["drain_seconds"], 1),
    }


# --- the parent ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--batch", type=int, default=50, help="records a batch")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between batches")
    parser.add_argument("--load-processes", type=int, default=1)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-kib", type=int, default=500)
    parser.add_argument("--put-concurrency", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2000)
    parser.add_argument("--publish", type=int, default=20_000)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--api-port", type=int, default=18280)
    parser.add_argument("--ws-port", type=int, default=19290)
    parser.add_argument("--metrics-port", type=int, default=19292)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/uplink.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(run_load_process(load_main(json.load(sys.stdin)))))
        return

    raise_fd_limit()
    url = recreate_database(DATABASE)
    ids = asyncio.run(seed(url, args.devices + 2, args.bcrypt_rounds, PEPPER))
    load_ids, files_device, agent_device = ids[:-2], ids[-2], ids[-1]
    work = Path(tempfile.mkdtemp(prefix="edgefleet-uplink-"))
    server = start_server(
        url, args.api_port, "WARNING",
        ("--ws-port", str(args.ws_port), "--metrics-port", str(args.metrics_port),
         "--bcrypt-rounds", str(args.bcrypt_rounds), "--password-pepper", PEPPER,
         "--files-dir", str(work / "files"), "--login-attempts-per-device", "100000"),
    )  # fmt: skip
    report: dict[str, Any] = {"devices": args.devices, "batch": args.batch,
                              "interval_s": args.interval, "duration_s": args.duration}  # fmt: skip
    try:
        start_at = time.time() + 3 + args.devices / 300
        plan = {"url": f"ws://127.0.0.1:{args.ws_port}/ws", "batch": args.batch,
                "interval": args.interval, "start_at": start_at,
                "until": start_at + args.duration}  # fmt: skip
        share = (len(load_ids) + args.load_processes - 1) // args.load_processes
        loads = []
        for n in range(args.load_processes):
            part = {**plan, "device_ids": [str(i) for i in load_ids[n * share : (n + 1) * share]]}
            process = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, __file__, "--load"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            )  # fmt: skip
            assert process.stdin is not None
            process.stdin.write(json.dumps(part))
            process.stdin.close()
            loads.append(process)
        outcomes = []
        for process in loads:
            assert process.stdout is not None
            outcomes.append(json.loads(process.stdout.read()))
            process.wait()
        acks = [a for o in outcomes for a in o["acks"]]
        stored = sum(o["accepted"] for o in outcomes)
        report["records"] = {
            "stored": stored,
            "stored_per_second": round(stored / args.duration, 1),
            "offered_per_second": round(args.devices * args.batch / args.interval, 1),
            "ack": percentiles(acks),
            "devices_failed": sum(o["failed"] for o in outcomes),
            "errors": [e for o in outcomes for e in o["errors"]][:5],
        }
        report["files"] = asyncio.run(files_bench(args, files_device))
        report["agent"] = agent_bench(args, agent_device, work)
    finally:
        server.terminate()
        server.wait(30)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    records, files, agent = report["records"], report["files"], report["agent"]
    ack, head, publish = records["ack"], files["head"], agent["publish"]
    lines = [
        f"records: {records['stored_per_second']}/s stored of "
        f"{records['offered_per_second']}/s offered; ack p50 {ack.get('p50_ms')} ms, "
        f"p99 {ack.get('p99_ms')} ms; devices failed {records['devices_failed']}",
        f"files: HEAD p50 {head.get('p50_ms')} ms, p99 {head.get('p99_ms')} ms; PUT "
        f"{files['put_sequential_mib_s']} MiB/s one at a time, "
        f"{files['put_concurrent_mib_s']} MiB/s {files['put_concurrency']} at once",
        f"a record whose image the cloud has: "
        f"{files['known_image_record_bytes']['total']} bytes on the wire",
        f"agent: publish p50 {publish.get('p50_ms')} ms, p99 {publish.get('p99_ms')} ms; "
        f"drained {agent['drained_records_s']} records/s",
    ]
    print("\n".join(lines))
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
