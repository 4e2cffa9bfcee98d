"""An update's new version in Kubernetes mode, against the emulated API server: the
version a device answers ``update`` with shows in its Device's status
(``businessVersion``, ``businessUpdatedAt``), written by the southbound's
rate-capped status writer, while ``spec.software`` stays what its owner declared."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kmock
import websockets

from edgefleet.agent import protocol
from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.controller.kube.resources import DEVICES
from edgefleet.controller.serve import InProcessLink
from edgefleet.controller.store import Store
from edgefleet.southbound.server import KubeStatus, Southbound
from tests.agent.conftest import RAW_CLIENTS
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, NAMESPACE, device_body
from tests.kube.test_processes import seed_device

ARTIFACT = {"name": "detector", "version": "2.1.0", "sha256": "0" * 64, "size": 1,
            "url": "/files/" + "0" * 64}  # fmt: skip


async def test_an_installed_version_shows_in_the_devices_status(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    cluster.objects[DEVICE, NAMESPACE, "cam-1"] = device_body(
        "cam-1", software={"businessVersion": "2.0.0"}
    )
    await seed_device(sqlite_store, 42, "cam-1")
    southbound = Southbound(
        RAW_CLIENTS, sqlite_store, 4, KubeStatus(KubeStatusApi(kube), 50, metrics_interval=60)
    )
    await southbound.start()
    try:
        async with websockets.connect(f"ws://127.0.0.1:{southbound.port}/ws") as ws:
            login = {"device_id": "42", "password": "a-long-password",
                     "extensions": ["request_id", "update"]}  # fmt: skip
            await ws.send(json.dumps(login))
            assert json.loads(await ws.recv())["status"] == "success"
            link = InProcessLink(southbound)
            for version, status in (("2.1.0", "success"), ("2.2.0", "fail")):
                sending = asyncio.ensure_future(
                    link.command(42, protocol.UPDATE, {"artifact": ARTIFACT}, 5)
                )
                order = json.loads(await ws.recv())
                request_id = order["Headers"]["request_id"]
                await ws.send(
                    protocol.command_result(status, status, {"version": version}, request_id)
                )
                assert (await sending).status == status

                async def shown() -> dict[str, Any] | None:
                    found = (await kube.get(DEVICES, "cam-1")).get("status") or {}
                    return found if found.get("businessVersion") == "2.1.0" else None

                body = await eventually(shown)
            # The failed install did not change what runs; the owner's spec is left alone.
            assert body["businessVersion"] == "2.1.0" and body["businessUpdatedAt"].endswith("Z")
            device = await kube.get(DEVICES, "cam-1")
            assert device["spec"]["software"] == {"businessVersion": "2.0.0"}
            assert (await sqlite_store.devices.get(42))["business_version"] == "2.1.0"
    finally:
        await southbound.stop()
