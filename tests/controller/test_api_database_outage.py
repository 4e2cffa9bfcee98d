"""A database that goes away and comes back: 503 fast, then recovery by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from edgefleet.controller.store import Store
from tests.api_client import Answer, ApiClient, running_api
from tests.conftest import create_mariadb_database, drop_mariadb_database, mariadb_server_url
from tests.tcp_proxy import TcpProxy

OUTAGE_TIMEOUT = 2.0


@pytest.fixture
async def mariadb_behind_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    server = make_url(mariadb_server_url())
    url, name = create_mariadb_database(str(server))
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 3306)
    await proxy.start()
    proxied = url.replace(f"{server.host}:{server.port}", f"127.0.0.1:{proxy.port}")
    try:
        yield proxied, proxy
    finally:
        drop_mariadb_database(name)


@pytest.fixture
async def api_behind_proxy(
    mariadb_behind_proxy: tuple[str, TcpProxy],
) -> AsyncIterator[tuple[ApiClient, TcpProxy]]:
    """The API on a MariaDB reached through a relay the test can cut or freeze."""
    url, proxy = mariadb_behind_proxy
    store = Store.from_url(url, timeout=OUTAGE_TIMEOUT)
    await store.migrate()
    try:
        async with running_api(store, "t") as api:
            yield api, proxy
    finally:
        await store.close()


async def until_status(api: ApiClient, path: str, status: int) -> Answer:
    """Poll ``path`` until it answers ``status`` (bounded: 10 s)."""
    for _ in range(100):
        answer = await api.get(path)
        if answer.status == status:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never answered {status}; last: {answer.status} {answer.body}")


async def test_mariadb_outage_answers_503_then_recovers(
    api_behind_proxy: tuple[ApiClient, TcpProxy],
) -> None:
    api, proxy = api_behind_proxy
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}"
    assert (await api.get(path)).status == 200

    await proxy.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    down = await api.get(path)
    assert "database" in down.failure(503, "DATABASE_ERROR")
    # The client's own timeout is 30 s: a hang would show here.
    assert loop.time() - started < 3 * OUTAGE_TIMEOUT
    (await api.get("/api/v1/ready", token=None)).failure(503, "DATABASE_ERROR")
    (await api.post("/api/v1/groups", {"name": "lost"})).failure(503, "DATABASE_ERROR")
    assert (await api.get("/api/v1/health")).status == 200

    await proxy.start()
    back = await until_status(api, path, 200)
    assert back.data["device_id"] == device["device_id"]
    assert (await api.get("/api/v1/ready")).status == 200
    assert (await api.get("/api/v1/groups")).data["total"] == 0  # nothing half-written


async def test_silent_mariadb_answers_503_after_the_timeout_then_recovers(
    api_behind_proxy: tuple[ApiClient, TcpProxy],
) -> None:
    api, proxy = api_behind_proxy
    device = await api.register()
    path = f"/api/v1/devices/{device['device_id']}"
    proxy.freeze()
    loop = asyncio.get_running_loop()
    started = loop.time()
    (await api.get(path)).failure(503, "DATABASE_ERROR")
    (await api.patch(path, {"name": "lost"})).failure(503, "DATABASE_ERROR")
    assert loop.time() - started < 4 * OUTAGE_TIMEOUT
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
            assert (await api.get("/api/v1/devices")).data["total"] == 0
    finally:
        await store.close()
