"""A database that goes away and comes back: 503 fast, then recovery by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgefleet.controller.store import DatabaseUnavailable, DeviceFilter, Store
from tests.api_client import Answer, ApiClient, running_api
from tests.tcp_proxy import TcpProxy

OUTAGE_TIMEOUT = 2.0  # store_behind_proxy's
HANG = 20.0
"""Longer than any answer may take on a loaded machine, shorter than the client's 30 s."""


@pytest.fixture
async def api_behind_proxy(
    store_behind_proxy: tuple[Store, TcpProxy],
) -> AsyncIterator[tuple[ApiClient, TcpProxy, Store]]:
    """The API on a MariaDB reached through a relay the test can cut or freeze."""
    store, proxy = store_behind_proxy
    async with running_api(store, "t") as api:
        yield api, proxy, store


async def until_status(api: ApiClient, path: str, status: int) -> Answer:
    """Poll ``path`` until it answers ``status`` (bounded: 10 s)."""
    for _ in range(100):
        answer = await api.get(path)
        if answer.status == status:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never answered {status}; last: {answer.status} {answer.body}")


async def test_mariadb_outage_answers_503_then_recovers(
    api_behind_proxy: tuple[ApiClient, TcpProxy, Store],
) -> None:
    api, proxy, _ = api_behind_proxy
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}"
    assert (await api.get(path)).status == 200

    await proxy.stop()
    async with asyncio.timeout(HANG):  # refused, not silent: only a hang takes this long
        down = await api.get(path)
    assert "database" in down.failure(503, "DATABASE_ERROR")
    (await api.get("/api/v1/ready", token=None)).failure(503, "DATABASE_ERROR")
    (await api.post("/api/v1/groups", {"name": "lost"})).failure(503, "DATABASE_ERROR")
    assert (await api.get("/api/v1/health")).status == 200

    await proxy.start()
    back = await until_status(api, path, 200)
    assert back.data["device_id"] == device["device_id"]
    assert (await api.get("/api/v1/ready")).status == 200
    assert (await api.get("/api/v1/groups")).data["total"] == 0  # nothing half-written


async def test_silent_mariadb_answers_503_at_once_once_noticed_then_recovers(
    api_behind_proxy: tuple[ApiClient, TcpProxy, Store],
) -> None:
    """Packets dropped, not refused: the first call waits out the timeout; after it
    the breaker is open and every call — readiness included — answers 503 without
    waiting, until the database answers again."""
    api, proxy, store = api_behind_proxy
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}"
    proxy.freeze()
    (await api.get(path)).failure(503, "DATABASE_ERROR")
    before = store.db.short_circuits
    for _ in range(10):
        (await api.get(path)).failure(503, "DATABASE_ERROR")
        (await api.patch(path, {"name": "lost"})).failure(503, "DATABASE_ERROR")
        (await api.get("/api/v1/ready", token=None)).failure(503, "DATABASE_ERROR")
    # Thirty calls answered by the breaker, open all along: none waited for the
    # database. (More short circuits than calls: each refused write tries its audit
    # entry, and the event stream polls the log.)
    assert store.db.outage is not None
    assert store.db.short_circuits - before >= 30
    proxy.thaw()
    back = await until_status(api, path, 200)
    assert back.data["name"] == device["name"]
    renamed = await api.patch(path, {"name": "after"})
    assert renamed.data["name"] == "after"


async def test_sqlite_file_that_cannot_be_opened_answers_503_then_recovers(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "not-yet"
    url = f"sqlite+aiosqlite:///{folder}/edgefleet.db"
    store = Store.from_url(url, timeout=OUTAGE_TIMEOUT)
    try:
        async with running_api(store, "t") as api:
            (await api.get("/api/v1/ready")).failure(503, "DATABASE_ERROR")
            (await api.get("/api/v1/devices")).failure(503, "DATABASE_ERROR")
            folder.mkdir()
            await store.migrate()
            assert (await until_status(api, "/api/v1/devices", 200)).data["total"] == 0
    finally:
        await store.close()


async def test_an_export_answers_503_when_the_database_is_away_and_breaks_off_when_it_goes(
    api_behind_proxy: tuple[ApiClient, TcpProxy, Store],
) -> None:
    """Away before the export: the usual 503. Gone in the middle: the stream ends
    without its last chunk, and no error answer is written into the file."""
    api, proxy, _ = api_behind_proxy
    # Long descriptions: the first page alone (1,000 devices, ~1.1 MB) is more than
    # the sockets hold, so the server waits on its client before reading page two.
    rows = ["name,hardware_sn,hardware_model,description"]
    rows += [f"cam-{i},SN-{i:05},M,{'x' * 1000}" for i in range(2100)]
    imported = await api.request(
        "POST", "/api/v1/devices/import", data="\n".join(rows).encode(),
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert imported.data["registered"] == 2100

    url = f"{api.base_url}/api/v1/devices/export"
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.session.get(url, headers=headers) as response:
        assert response.status == 200
        received = await response.content.readexactly(1024)
        await proxy.stop()
        with pytest.raises(aiohttp.ClientPayloadError):
            while chunk := await response.content.read(65536):
                received += chunk
    assert received.count(b"\n") < 2100
    assert b"DATABASE_ERROR" not in received and b"HTTP/1.1" not in received

    async with asyncio.timeout(HANG):
        down = await api.get("/api/v1/devices/export")
    down.failure(503, "DATABASE_ERROR")
    await proxy.start()


async def test_a_full_pool_fails_the_call_that_waited_and_opens_no_breaker(
    mariadb_behind_proxy: tuple[str, TcpProxy],
) -> None:
    """Every pooled connection busy past the deadline is an overload, not an
    outage: the call that waited answers unavailable, and the next calls go on as
    soon as a connection is free, instead of all answering 503 until a probe."""
    url, _ = mariadb_behind_proxy
    store = Store.from_url(url, timeout=1.0, pool_size=1)
    await store.migrate()
    try:
        async with store.db.reader.connect():  # the one read connection, busy elsewhere
            with pytest.raises(DatabaseUnavailable, match="busy"):
                await store.devices.list(DeviceFilter(), page=1, per_page=10)
            assert store.db.outage is None
        assert await store.devices.list(DeviceFilter(), page=1, per_page=10) == ([], 0)
    finally:
        await store.close()
