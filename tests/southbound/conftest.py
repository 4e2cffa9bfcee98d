"""A real southbound and northbound in this process, over real sockets, with the
protocol's timings scaled down: devices are told to ping every 0.2 s, and a
command has 1 s. Silence is tolerated for 30 s unless a test watches it
(``SHORT_TOLERANCE``), and a login frame is awaited for 10 s: the test clients
mostly send no heartbeats, and a busy machine must not turn one unknown, then
offline, between two steps of a test about something else (it did, with 0.3 s,
on CI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from edgefleet.controller.serve import InProcessLink
from edgefleet.controller.settings import JobSettings, SouthboundSettings, StreamSettings
from edgefleet.controller.store import Store
from edgefleet.controller.store.blobs import FileStore, LocalFileStore
from edgefleet.southbound.server import Southbound
from tests.api_client import ApiClient, running_api

FAST = SouthboundSettings(
    port=0,
    metrics_port=0,
    heartbeat_interval=0.2,
    heartbeat_tolerance=30.0,
    heartbeat_tolerance_after_failure=30.0,
    login_timeout=10.0,
    command_timeout=1.0,
    instance="test-instance",
    token_key="test-key",
)

SHORT_TOLERANCE = dataclasses.replace(
    FAST, heartbeat_tolerance=0.3, heartbeat_tolerance_after_failure=0.22
)
"""For tests that watch silence: a 7.5 s tolerance takes 0.3 s."""

STAYS_UNKNOWN = dataclasses.replace(SHORT_TOLERANCE, heartbeat_tolerance_after_failure=60.0)
"""Unknown after 0.3 s of silence, then no further miss for a minute: a test can
take its time with an unknown device, however busy the machine."""


@dataclass
class Fleet:
    api: ApiClient
    southbound: Southbound
    store: Store

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.southbound.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.southbound.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.southbound.metrics_port}/metrics"

    async def register(self, **fields: Any) -> dict[str, Any]:
        return await self.api.register(**fields)

    async def connect(self) -> ClientConnection:
        """A raw client. Devices keep alive with the protocol's pings, not WebSocket
        pings (whose payload comes from the global ``random``, which Hypothesis
        watches while the fuzz test draws)."""
        return await websockets.connect(self.ws_url, compression=None, ping_interval=None)

    async def login(self, device: dict[str, Any], **frame: Any) -> tuple[ClientConnection, dict]:
        """A version-1 device logging in with its id and password."""
        ws = await self.connect()
        body = frame or {"device_id": device["device_id"], "password": device["password"]}
        await ws.send(json.dumps(body))
        answer = json.loads(await ws.recv())
        assert answer["status"] == "success", answer
        return ws, answer

    async def state(self, device: dict[str, Any]) -> str:
        return (await self.api.get(f"/api/v1/devices/{device['device_id']}")).data["state"]

    async def is_(self, device: dict[str, Any], state: str) -> bool:
        """Whether the device is in ``state`` once everything queued is written."""
        await self.settled()
        return await self.state(device) == state

    async def settled(self) -> None:
        """Wait until the southbound has written everything it queued."""
        await self.southbound.recorder.drained()

    async def events(self, device: dict[str, Any]) -> list[dict[str, Any]]:
        await self.settled()
        answer = await self.api.get(
            f"/api/v1/devices/{device['device_id']}/events", params={"per_page": 500}
        )
        return list(reversed(answer.data["items"]))


@asynccontextmanager
async def running_fleet(
    store: Store,
    settings: SouthboundSettings,
    files: FileStore | None = None,
    bcrypt_rounds: int = 4,
    jobs: JobSettings | None = None,
    stream: StreamSettings | None = None,
) -> AsyncIterator[Fleet]:
    """``bcrypt_rounds``: the cost of the hashes the southbound expects (its dummy)."""
    files_dir = tempfile.TemporaryDirectory(prefix="edgefleet-files-")
    files = files or LocalFileStore(files_dir.name)
    southbound = Southbound(settings, store, bcrypt_rounds=bcrypt_rounds, files=files)
    await southbound.start()
    try:
        async with running_api(
            store,
            "t",
            link=InProcessLink(southbound),
            command_timeout=settings.command_timeout,
            file_store=files,
            jobs=jobs,
            stream=stream,
        ) as api:
            yield Fleet(api, southbound, store)
    finally:
        await southbound.stop()
        files_dir.cleanup()


@pytest.fixture
async def fleet(store: Store) -> AsyncIterator[Fleet]:
    async with running_fleet(store, FAST) as running:
        yield running


async def nothing_comes(ws: ClientConnection, timeout: float = 0.3) -> bool:
    """True when no frame arrives within ``timeout`` seconds."""
    try:
        await recv_json(ws, timeout)
    except TimeoutError:
        return True
    return False


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


def ping() -> str:
    return json.dumps({"type": "ping_pong", "Headers": {}, "data": "ping"})
