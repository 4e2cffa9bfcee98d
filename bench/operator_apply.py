"""How long the operator takes when a thousand Devices are applied at once.

``kubectl apply -f fleet/`` creates every Device in one go; each needs a Secret,
a bcrypt hash, a row and a status. The Kubernetes API is kmock (the emulator the
tests use) in a child process on CPU 1; the operator runs in this process on
CPU 0 against MariaDB, as in the controller pod. Reported: seconds until every
Device has its row, until every status says Synced, reconciles a second, and the
same with a restart of the operator (resume of every Device, which must write
nothing).

    python bench/operator_apply.py --devices 1000 --bcrypt-rounds 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import kmock_child, publish_kmock_url, recreate_database  # noqa: E402

NAMESPACE = "fleet"
DATABASE = "edgefleet_operator_bench"


async def serve_kmock(work: Path) -> None:
    """Child process: the emulated Kubernetes API until killed."""
    import kmock

    from tests.kube.emulator import StampingEmulator, declare_resources

    async with StampingEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        await asyncio.to_thread(publish_kmock_url, work, str(emulator.url))
        await asyncio.Event().wait()


def device_body(n: int) -> dict[str, Any]:
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "Device",
        "metadata": {"name": f"cam-{n}", "namespace": NAMESPACE},
        "spec": {"type": "camera", "hardware": {"sn": f"SN-{n}", "model": "ModelB"}},
    }


async def until(check: Callable[[], Awaitable[bool]], interval: float) -> None:
    while True:
        if await check():
            return
        await asyncio.sleep(interval)


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def _now(value: bool) -> bool:
    return value


async def count_rows(store: Any) -> int:
    from edgefleet.controller.store import DeviceFilter

    return (await store.devices.list(DeviceFilter(), 1, 1))[1]


async def all_synced(kube: Any, count: int) -> bool:
    bodies = await asyncio.gather(*(kube.get("devices", f"cam-{n}") for n in range(count)))
    return all(
        any(c.get("status") == "True" for c in (b.get("status") or {}).get("conditions") or [])
        for b in bodies
    )


async def measure(args: argparse.Namespace, server: str, work: Path) -> dict[str, Any]:
    from edgefleet.controller.device_link import NoDeviceLink
    from edgefleet.controller.ids import SnowflakeGenerator
    from edgefleet.controller.kube.client import KubeClient
    from edgefleet.controller.kube.operator import Reconciler, running_operator
    from edgefleet.controller.store import Store
    from tests.kube.emulator import write_kubeconfig

    store = Store.from_url(recreate_database(DATABASE), pool_size=16)
    await store.migrate()
    kube = await KubeClient.connect(str(write_kubeconfig(work / "kubeconfig", server)), NAMESPACE)
    reconciler = Reconciler(store, kube, NoDeviceLink(), SnowflakeGenerator(1), args.bcrypt_rounds)
    report: dict[str, Any] = {"devices": args.devices, "bcrypt_rounds": args.bcrypt_rounds}
    try:
        async with running_operator(reconciler, NAMESPACE):
            started = time.monotonic()
            for start in range(0, args.devices, 100):
                batch = range(start, min(args.devices, start + 100))
                await asyncio.gather(*(kube.create("devices", device_body(n)) for n in batch))
            report["apply_s"] = round(time.monotonic() - started, 2)
            await until(lambda: _at_least(count_rows(store), args.devices), 0.2)
            report["all_rows_s"] = round(time.monotonic() - started, 2)
            await until(lambda: all_synced(kube, args.devices), 0.5)
            elapsed = time.monotonic() - started
            report["all_synced_s"] = round(elapsed, 2)
            report["devices_per_s"] = round(args.devices / elapsed, 1)
        ok = reconciler.metrics.reconciles.labels("Device", "ok")._value.get()
        report["reconciles"] = ok
        # A restarted operator resumes every Device and must find nothing to write.
        async with running_operator(reconciler, NAMESPACE):
            started = time.monotonic()
            counter = reconciler.metrics.reconciles.labels("Device", "ok")._value
            await until(lambda: _now(counter.get() >= 2 * ok), 0.2)
            report["resume_all_s"] = round(time.monotonic() - started, 2)
        report["rows_after_resume"] = await count_rows(store)
    finally:
        await kube.close()
        await store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/operator_apply.json")
    parser.add_argument("--serve-kmock", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_kmock:
        asyncio.run(serve_kmock(args.serve_kmock))
        return
    with tempfile.TemporaryDirectory() as tmp, kmock_child(__file__, Path(tmp)) as server:
        os.sched_setaffinity(0, {0})
        report = asyncio.run(measure(args, server, Path(tmp)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
