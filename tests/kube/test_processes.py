"""Kubernetes mode end to end: ``edgefleet controller`` as a process with kopf beside
the API, and the southbound writing a real device's state into its resource."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import kmock
import pytest
import websockets

from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.controller.kube.operator import Reconciler, running_operator
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.serve import InProcessLink
from edgefleet.controller.store import EventFilter, Store
from edgefleet.southbound.server import KubeStatus, Southbound
from tests.agent.conftest import SOUTHBOUND
from tests.conftest import eventually
from tests.kube.conftest import DEVICE, NAMESPACE, device_body
from tests.kube.test_operator import synced
from tests.server_process import free_port

REGISTRATION = {"name": "rail-7", "hardware_sn": "SN7", "hardware_model": "R1"}


async def test_the_controller_runs_kopf_beside_the_api_and_stops_on_sigterm(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, kubeconfig: Path, tmp_path: Path
) -> None:
    port = free_port()
    stderr = tmp_path / "controller.stderr"
    with stderr.open("w") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgefleet.controller.cli", "controller",
            "--api-port", str(port), "--api-token", "t",
            "--db-url", f"sqlite+aiosqlite:///{tmp_path}/edgefleet.db",
            "--kube-namespace", NAMESPACE, "--kubeconfig", str(kubeconfig),
            "--bcrypt-rounds", "4",
            stderr=err,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": "Bearer t"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:

            async def healthy() -> bool:
                try:
                    async with http.get(base + "/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, timeout=30)
            # kubectl apply → the operator in that process → visible over its REST API.
            await kube.create("devices", device_body("cam-9"))
            device_id = (await synced(kube, "cam-9"))["status"]["deviceId"]
            async with http.get(f"{base}/devices/{device_id}") as response:
                assert (await response.json())["data"]["k8s_name"] == "cam-9"
            # REST → the resource; many requests while kopf runs: none is cancelled.
            async with http.post(base + "/devices", json=REGISTRATION) as response:
                assert response.status == 201
            answers = await asyncio.gather(*(http.get(base + "/devices") for _ in range(20)))
            assert [a.status for a in answers] == [200] * 20
            await synced(kube, "rail-7")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert time.monotonic() - started < 5  # no kopf grace period on the way out
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr.read_text()
    assert "Traceback" not in log
    events = [json.loads(line).get("msg") for line in log.splitlines() if line.startswith("{")]
    assert "operator running" in events and "shutting down" in events


async def test_a_device_session_shows_in_its_resource_status(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    cluster.objects[DEVICE, NAMESPACE, "cam-1"] = device_body("cam-1")
    await sqlite_store.devices.create(
        {
            "device_id": 42,
            "name": "Camera 1",
            "type": "camera",
            "hardware_sn": "SN1",
            "hardware_model": "M1",
            "secret": await hash_password("a-long-password", 4),
            "k8s_name": "cam-1",
            "k8s_namespace": NAMESPACE,
        }
    )
    southbound = Southbound(
        SOUTHBOUND, sqlite_store, 4, KubeStatus(KubeStatusApi(kube), 50, metrics_interval=60)
    )
    await southbound.start()
    try:
        url = f"ws://127.0.0.1:{southbound.port}/ws"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"device_id": "42", "password": "a-long-password"}))
            assert json.loads(await ws.recv())["status"] == "success"

            await eventually(lambda: has_state(kube, "cam-1", "online"))
            status = (await kube.get("devices", "cam-1"))["status"]
            assert status["sessionPod"] == southbound.instance and status["connectedSince"]
        await eventually(lambda: has_state(kube, "cam-1", "offline"))
        assert "sessionPod" not in (await kube.get("devices", "cam-1"))["status"]
    finally:
        await southbound.stop()


async def seed_device(store: Store, device_id: int, name: str) -> None:
    """A device row mirroring the Device ``name`` (password ``a-long-password``)."""
    await store.devices.create(
        {"device_id": device_id, "name": name, "type": "camera", "hardware_sn": f"SN-{name}",
         "hardware_model": "M1", "secret": await hash_password("a-long-password", 4),
         "k8s_name": name, "k8s_namespace": NAMESPACE}
    )  # fmt: skip


async def log_in(port: int, device_id: int) -> websockets.ClientConnection | None:
    """A version-1 device logged in, or None while nothing listens on ``port`` yet."""
    try:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws")
    except OSError:
        return None
    await ws.send(json.dumps({"device_id": str(device_id), "password": "a-long-password"}))
    assert json.loads(await ws.recv())["status"] == "success"
    return ws


async def southbound_process(
    url: str, port: int, kubeconfig: Path, *extra: str
) -> asyncio.subprocess.Process:
    """``edgefleet southbound`` in Kubernetes mode, as the pod ``southbound-0``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgefleet.controller.cli", "southbound",
        "--ws-port", str(port), "--metrics-port", str(free_port()), "--db-url", url,
        "--instance", "southbound-0",
        "--kube-namespace", NAMESPACE, "--kubeconfig", str(kubeconfig), *extra,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def has_state(kube: KubeClient, name: str, wanted: str) -> bool:
    return ((await kube.get("devices", name)).get("status") or {}).get("state") == wanted


async def test_the_southbound_process_mirrors_sessions_and_marks_offline_on_sigterm(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, kubeconfig: Path, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/edgefleet.db"
    store = Store.from_url(url)
    await store.migrate()
    cluster.objects[DEVICE, NAMESPACE, "cam-2"] = device_body("cam-2")
    await seed_device(store, 7, "cam-2")
    await store.close()
    port = free_port()
    process = await southbound_process(url, port, kubeconfig)
    try:
        ws = await eventually(lambda: log_in(port, 7), timeout=30)

        await eventually(lambda: has_state(kube, "cam-2", "online"))
        assert (await kube.get("devices", "cam-2"))["status"]["sessionPod"] == "southbound-0"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        await ws.close()
        assert await has_state(kube, "cam-2", "offline")  # written before the process exited
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_when_a_southbound_pod_dies_another_marks_its_devices_offline(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, kubeconfig: Path, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/edgefleet.db"
    store = Store.from_url(url)
    await store.migrate()
    cluster.objects[DEVICE, NAMESPACE, "cam-3"] = device_body("cam-3")
    await seed_device(store, 9, "cam-3")
    port = free_port()
    dying = await southbound_process(url, port, kubeconfig, "--instance-timeout", "0.8")
    survivor = Southbound(
        replace(SOUTHBOUND, instance="southbound-1", instance_timeout=0.8),
        store,
        4,
        KubeStatus(KubeStatusApi(kube), rate=20, metrics_interval=60),
    )
    try:
        ws = await eventually(lambda: log_in(port, 9), timeout=30)

        await eventually(lambda: has_state(kube, "cam-3", "online"))
        await survivor.start()
        dying.kill()  # no SIGTERM: nothing of the dead pod's is released by itself
        await dying.wait()
        await ws.close()

        await eventually(lambda: has_state(kube, "cam-3", "offline"))
        device = await store.devices.get(9)
        assert device["state"] == "offline"
        [event] = [e for e in (await store.events.list(9, EventFilter(event="offline"), 1, 10))[0]]
        assert event["detail"]["reason"] == "instance_lost"
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()
        await survivor.stop()
        await store.close()


async def test_deleting_a_device_closes_its_session(
    cluster: kmock.KubernetesEmulator, kube: KubeClient, sqlite_store: Store
) -> None:
    """The operator asks the southbound holding the session to close it."""
    southbound = Southbound(SOUTHBOUND, sqlite_store, bcrypt_rounds=4)
    await southbound.start()
    reconciler = Reconciler(
        sqlite_store, kube, InProcessLink(southbound), SnowflakeGenerator(3), bcrypt_rounds=4
    )
    try:
        async with running_operator(reconciler, NAMESPACE):
            await kube.create("devices", device_body("cam-4"))
            device_id = int((await synced(kube, "cam-4"))["status"]["deviceId"])
            password = (await kube.read_secret("cam-4-credentials"))["password"]  # type: ignore[index]
            async with websockets.connect(f"ws://127.0.0.1:{southbound.port}/ws") as ws:
                await ws.send(json.dumps({"device_id": str(device_id), "password": password}))
                assert json.loads(await ws.recv())["status"] == "success"
                await kube.delete("devices", "cam-4")
                with pytest.raises(websockets.ConnectionClosed):
                    async with asyncio.timeout(10):
                        while True:
                            await ws.recv()
            assert device_id not in southbound.sessions
    finally:
        await southbound.stop()
