"""Kubernetes mode end to end: ``edgefleet controller`` as a process with kopf beside
the API, and the southbound writing a real device's state into its resource."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path

import aiohttp
import kmock
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from edgefleet.agent import protocol
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.kube.client import KubeClient, KubeStatusApi
from edgefleet.controller.kube.operator import Reconciler, running_operator
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.serve import InProcessLink
from edgefleet.controller.store import EventFilter, Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.schema import devices, southbound_instances
from edgefleet.southbound.server import KubeStatus, Southbound
from tests.agent.conftest import RAW_CLIENTS, SOUTHBOUND
from tests.conftest import (
    create_mariadb_database,
    drop_mariadb_database,
    eventually,
    mariadb_server_url,
)
from tests.kube.conftest import DEVICE, NAMESPACE, device_body
from tests.kube.emulator import StampingEmulator, busiest_second, is_status_patch
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

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0  # 15 s: only a hang
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr.read_text()
    assert "Traceback" not in log
    events = [json.loads(line).get("msg") for line in log.splitlines() if line.startswith("{")]
    assert "operator running" in events and "shutting down" in events
    # kopf's own way out (a stop flag, then a fixed 5 s for "hung" tasks) never ran:
    # its tasks were cancelled, so it never said it was stopping.
    assert not [e for e in events if e and "Operator is stopping" in e]


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
        RAW_CLIENTS, sqlite_store, 4, KubeStatus(KubeStatusApi(kube), 50, metrics_interval=60)
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
    dying = await southbound_process(
        url, port, kubeconfig, "--instance-timeout", "0.8", "--instance-beat-interval", "0.2"
    )
    survivor = Southbound(
        replace(SOUTHBOUND, instance="southbound-1", instance_timeout=0.8,
                instance_beat_interval=0.2),
        store,
        4,
        KubeStatus(KubeStatusApi(kube), budget=20, metrics_interval=60),
    )  # fmt: skip
    try:
        ws = await eventually(lambda: log_in(port, 9), timeout=30)

        await eventually(lambda: has_state(kube, "cam-3", "online"))
        await survivor.start()
        dying.kill()  # no SIGTERM: nothing of the dead pod's is released by itself
        await dying.wait()
        await ws.close()

        await eventually(lambda: has_state(kube, "cam-3", "offline"))
        # Released by the survivor, which never wrote this Device: still no session.
        left = (await kube.get("devices", "cam-3"))["status"]
        assert not {"sessionPod", "connectedSince"} & set(left)
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


# --- three replicas, one status-write budget ------------------------------------------

BUDGET = 240.0
REPLICAS = 3
BEAT, INSTANCE_TIMEOUT = 0.5, 8.0
STATUS = {
    "CPU_info": {"user_cpu_time": 41.0, "system_cpu_time": 9.0, "idle_cpu_time": 1790.0,
                 "io_wait_cpu_time": 1.0},
    "Memory_info": {"total_memory_mb": 1673, "free_memory_mb": 91, "buff_cache_mb": 258},
    "Disk_info": {"root_total_size_mb": 39942, "root_used_size_mb": 10509,
                  "root_used_percent": 27.6},
}  # fmt: skip


@pytest.fixture
async def mariadb_url() -> AsyncIterator[str]:
    """A migrated MariaDB database of its own (the replicas share it)."""
    url, name = create_mariadb_database(mariadb_server_url())
    store = Store.from_url(url)
    await store.migrate()
    await store.close()
    try:
        yield url
    finally:
        drop_mariadb_database(name)


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    ws_port: int
    metrics_port: int

    def scrape(self) -> dict[str, float]:
        """Its fleet gauges, from a real /metrics scrape."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }


async def start_replica(url: str, kubeconfig: Path, n: int, stderr: Path) -> Replica:
    ws_port, metrics_port = free_port(), free_port()
    with stderr.open("w") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgefleet.controller.cli", "southbound",
            "--ws-port", str(ws_port), "--metrics-port", str(metrics_port), "--db-url", url,
            "--instance", f"southbound-{n}", "--bcrypt-rounds", "4",
            "--kube-namespace", NAMESPACE, "--kubeconfig", str(kubeconfig),
            "--kube-status-budget", str(BUDGET), "--kube-metrics-interval", "1",
            "--instance-beat-interval", str(BEAT), "--instance-timeout", str(INSTANCE_TIMEOUT),
            # The devices here send only what the test makes them send: no heartbeats.
            "--heartbeat-tolerance", "600", "--heartbeat-tolerance-after-failure", "600",
            # The burst of 2,700 logins is the subject, not the 5 s a connection has to
            # send its login frame: on a slow machine a replica read some frames later.
            "--login-timeout", "60",
            "--per-device-metrics", "false", "--log-level", "WARNING",
            stderr=err,
        )  # fmt: skip
    return Replica(f"southbound-{n}", process, ws_port, metrics_port)


async def seed_fleet(url: str, count: int) -> list[int]:
    """``count`` devices (password ``a-long-password``), the Device ``dev-<id>`` each."""
    store = Store.from_url(url)
    secret = await hash_password("a-long-password", 4)
    now = utcnow()
    ids = list(range(1, count + 1))
    async with store.db.begin() as connection:
        await connection.execute(
            insert(devices),
            [{"device_id": i, "name": f"dev {i}", "type": "camera", "description": "",
              "hardware_sn": f"SN{i}", "hardware_model": "M1", "secret": secret,
              "credential_version": 1, "state": "offline", "disabled": False,
              "k8s_namespace": NAMESPACE, "k8s_name": f"dev-{i}",
              "created_at": now, "updated_at": now} for i in ids],
        )  # fmt: skip
    await store.close()
    return ids


async def offline_in_database(url: str, device_ids: list[int]) -> bool:
    store = Store.from_url(url)
    try:
        async with store.db.read() as connection:
            offline = await connection.scalar(
                select(func.count()).where(
                    devices.c.device_id.in_(device_ids), devices.c.state == "offline"
                )
            )
    finally:
        await store.close()
    return offline == len(device_ids)


def patch_kind(request: kmock.Request) -> str:
    return "metrics" if "metrics" in request.data["status"] else "state"


async def test_three_replicas_write_within_one_budget_state_first(
    cluster: StampingEmulator, kubeconfig: Path, mariadb_url: str, tmp_path: Path
) -> None:
    """Three ``edgefleet southbound`` processes, 3,000 devices and 3,150 state changes:
    kmock never sees more than the installation's budget in any second (plus the one
    write per replica that may be in flight across the second's edge), each replica
    writes its state changes before its metrics summaries, every Device ends as its
    device did, and when one replica dies the other two take its share at their first
    beat after its row goes stale — and write its devices offline, sessions cleared."""
    ids = await seed_fleet(mariadb_url, 3000)
    for i in ids:
        cluster.objects[DEVICE, NAMESPACE, f"dev-{i}"] = device_body(f"dev-{i}")
    replicas = [
        await start_replica(mariadb_url, kubeconfig, n, tmp_path / f"southbound-{n}.stderr")
        for n in range(REPLICAS)
    ]
    sockets: dict[int, websockets.ClientConnection] = {}

    def replica_of(device_id: int) -> Replica:
        return replicas[device_id % REPLICAS]

    async def connect(device_id: int, upload: bool = False) -> None:
        """Log in as a device does: "server busy" (a replica's database calls timing
        out on a loaded machine) means come back shortly; any other refusal fails."""
        url = f"ws://127.0.0.1:{replica_of(device_id).ws_port}/ws"
        while True:
            ws = await websockets.connect(
                url, compression=None, ping_interval=None, open_timeout=60
            )
            await ws.send(json.dumps({"device_id": str(device_id), "password": "a-long-password"}))
            answer = json.loads(await ws.recv())
            if answer["status"] == "success":
                break
            assert answer["message"] == protocol.MSG_UNAVAILABLE, answer
            await ws.close()
            await asyncio.sleep(0.5)
        if upload:
            await ws.send(protocol.status_upload(str(device_id), STATUS))
        sockets[device_id] = ws

    async def shares_are(share: float) -> bool:
        try:
            scrapes = [await asyncio.to_thread(r.scrape) for r in replicas]
        except OSError:
            return False  # not listening yet
        return all(s.get("edgefleet_status_write_share") == share for s in scrapes)

    async def devices_say(wanted: dict[int, str]) -> bool:
        return all(
            (cluster.objects[DEVICE, NAMESPACE, f"dev-{i}"].get("status") or {}).get("state")
            == state
            for i, state in wanted.items()
        )

    async def summarised(device_ids: list[int]) -> bool:
        return all(
            "metrics" in (cluster.objects[DEVICE, NAMESPACE, f"dev-{i}"].get("status") or {})
            for i in device_ids
        )

    try:
        await eventually(lambda: shares_are(BUDGET / REPLICAS), timeout=60)

        # Before the burst: 300 devices online, each with a metrics summary written.
        first, rest = ids[:300], ids[300:]
        await asyncio.gather(*(connect(i, upload=True) for i in first))
        await eventually(lambda: devices_say(dict.fromkeys(first, "online")), timeout=60)
        await eventually(lambda: summarised(first), timeout=60)
        burst_from = len(cluster.served)

        # The burst: 2,700 logins and 150 departures (3,000 state changes and more),
        # all queued at their replicas before 150 metrics summaries fall due.
        leaving, uploading = first[:150], first[150:]
        await asyncio.gather(*(connect(i) for i in rest))
        await asyncio.gather(*(sockets.pop(i).close() for i in leaving))
        await eventually(lambda: offline_in_database(mariadb_url, leaving), timeout=60)
        await asyncio.gather(
            *(sockets[i].send(protocol.status_upload(str(i), STATUS)) for i in uploading)
        )
        final = {**dict.fromkeys(ids, "online"), **dict.fromkeys(leaving, "offline")}
        await eventually(lambda: devices_say(final), timeout=120)

        async def summaries_written() -> bool:
            patches = [r for r in cluster.served[burst_from:] if is_status_patch(r)]
            return sum(patch_kind(r) == "metrics" for r in patches) == len(uploading)

        await eventually(summaries_written, timeout=60)
        burst = [r for r in cluster.served[burst_from:] if is_status_patch(r)]
        assert len(burst) == len(rest) + len(leaving) + len(uploading)  # coalesced
        for replica in replicas:  # the states all went before the summaries, per replica
            ours = [patch_kind(r) for r in burst if int(r.name[4:]) % REPLICAS ==
                    replicas.index(replica)]  # fmt: skip
            assert ours == sorted(ours, key=["state", "metrics"].index), replica.name
        for i in ids:
            status = cluster.objects[DEVICE, NAMESPACE, f"dev-{i}"]["status"]
            if final[i] == "online":
                assert status["sessionPod"] == replica_of(i).name
            else:
                assert not {"sessionPod", "connectedSince"} & set(status)

        # One replica dies: no goodbye, its row stays until the instance timeout.
        dead, survivors = replicas[-1], replicas[:-1]
        dead.process.kill()
        await dead.process.wait()
        store = Store.from_url(mariadb_url)
        async with store.db.read() as connection:
            last_beat = await connection.scalar(
                select(southbound_instances.c.seen_at).where(
                    southbound_instances.c.instance == dead.name
                )
            )
        await store.close()
        stale_at = last_beat.replace(tzinfo=UTC).timestamp() + INSTANCE_TIMEOUT
        samples: list[tuple[float, float]] = []

        async def grown() -> bool:
            scrapes = [await asyncio.to_thread(r.scrape) for r in survivors]
            samples.extend(
                (s["edgefleet_instance_last_beat_timestamp_seconds"],
                 s["edgefleet_status_write_share"]) for s in scrapes
            )  # fmt: skip
            return all(beat > stale_at for beat, _ in samples[-len(survivors) :])

        await eventually(grown, timeout=INSTANCE_TIMEOUT * 3)
        # Every beat that began once the row was stale counted two replicas.
        assert {share for beat, share in samples if beat > stale_at} == {BUDGET / 2}
        orphans = {i: "offline" for i in ids if replica_of(i) is dead}
        await eventually(lambda: devices_say(orphans), timeout=60)
        for i in orphans:
            status = cluster.objects[DEVICE, NAMESPACE, f"dev-{i}"]["status"]
            assert not {"sessionPod", "connectedSince"} & set(status)

        # Throughout: never more than the budget in any second of kmock's request log,
        # but for the one write per replica that may straddle the second's edge.
        assert busiest_second(cluster, is_status_patch) <= BUDGET + REPLICAS
    finally:
        for ws in sockets.values():
            ws.transport.abort()
        for replica in replicas:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
