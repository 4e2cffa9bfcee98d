"""Shared fixtures: the store on SQLite and on MariaDB, and a live API on 127.0.0.1.

Every test that asks for ``store`` (or for ``api``, which builds on it) runs twice,
once per database. The MariaDB half skips with a reason on a laptop without
MariaDB, and fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest
from aiohttp import web_app
from sqlalchemy import delete, update
from sqlalchemy.engine import make_url

from edgefleet.controller.store import Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.s3 import S3FileStore
from edgefleet.controller.store.schema import metadata, southbound_instances
from tests.api_client import ApiClient, running_api
from tests.tcp_proxy import TcpProxy

MARIADB = os.environ.get("EDGEFLEET_TEST_MARIADB", "root@127.0.0.1:3306")


def mariadb_server_url() -> str:
    """URL of the MariaDB server (no database), or fail/skip if it is unreachable."""
    user, _, hostport = MARIADB.partition("@")
    host, _, port = hostport.partition(":")
    try:
        pymysql.connect(host=host, port=int(port), user=user, connect_timeout=3).close()
    except pymysql.err.OperationalError as exc:
        message = f"MariaDB at {hostport} is unreachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the MariaDB half is mandatory)")
        pytest.skip(message)
    return f"mysql+aiomysql://{MARIADB}"


def create_mariadb_database(server_url: str) -> tuple[str, str]:
    name = f"edgefleet_test_{uuid.uuid4().hex[:12]}"
    _mariadb_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return f"{server_url}/{name}?charset=utf8mb4", name


def drop_mariadb_database(name: str) -> None:
    _mariadb_admin(f"DROP DATABASE IF EXISTS {name}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is alive once every test module is imported lives as long as the run
    (the libraries, the test modules): frozen out of the collector's way, a full
    collection walks only what the tests made since, not the million objects of
    the imports again (half a second each time, over a hundred times a run, each
    one a stop in the middle of some test's timings)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Let go of the test's web applications. aiohttp keeps each (handler,
    application) pair it has served in a module-wide cache of 1,024 entries — one
    application per process in a server, but a new one in every test here, and
    each entry holds its whole world (store, southbound, metrics). Hundreds of
    them stayed alive: the heap grew to millions of objects, and a full garbage
    collection froze the test process, devices and server alike, for up to 3.4 s
    in the middle of protocol timings (a device pinging on schedule was dropped
    for silence)."""
    web_app._cached_build_middleware.cache_clear()


def _mariadb_admin(sql: str) -> None:
    user, _, hostport = MARIADB.partition("@")
    host, _, port = hostport.partition(":")
    connection = pymysql.connect(host=host, port=int(port), user=user, connect_timeout=3)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


async def _migrate(url: str) -> None:
    store = Store.from_url(url)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database per backend, shared by the session and emptied per test."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "edgefleet.db"
        url = f"sqlite+aiosqlite:///{path}"
        asyncio.run(_migrate(url))
        yield url
        return
    url, name = create_mariadb_database(mariadb_server_url())
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        drop_mariadb_database(name)


def _sqlite_locked(url: str) -> bool:
    probe = sqlite3.connect(make_url(url).database or "", timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    if database_url.startswith("sqlite") and _sqlite_locked(database_url):
        # The tests share one SQLite file. A test that ended while a write ran
        # (cancelled with its server) can leave a closed sqlite3 connection whose
        # cursor waits in a reference cycle: sqlite3 keeps such a connection, and
        # its lock on the file, until the cursor is collected.
        gc.collect()
    store = Store.from_url(database_url, timeout=5.0)
    async with store.db.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(delete(table))
    try:
        yield store
    finally:
        await store.close()


API_TOKEN = "test-token-0123456789"


@pytest.fixture
async def api(store: Store) -> AsyncIterator[ApiClient]:
    async with running_api(store, API_TOKEN) as client:
        yield client


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated SQLite store of its own, for tests whose subject is not the
    database (the agent, the operator): one backend is enough there."""
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path}/edgefleet.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


@pytest.fixture
async def mariadb_behind_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A MariaDB database reached through a relay the test can cut or freeze."""
    server = make_url(mariadb_server_url())
    url, name = create_mariadb_database(str(server))
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 3306)
    await proxy.start()
    proxied = url.replace(f"{server.host}:{server.port}", f"127.0.0.1:{proxy.port}")
    try:
        yield proxied, proxy
    finally:
        drop_mariadb_database(name)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's S3 server on loopback (in a thread), for the object-store file store."""
    from moto.server import ThreadedMotoServer

    from tests.server_process import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def s3_store(moto_url: str, bucket: str) -> S3FileStore:
    """A file store in a new bucket of moto's S3 server, addressed by path as MinIO is."""
    store = S3FileStore(
        bucket,
        "edgefleet/files",
        endpoint=moto_url,
        access_key="testing",
        secret_key="testing",
        addressing_style="path",
    )
    s3 = await store._s3()
    await s3.create_bucket(Bucket=bucket)
    return store


@pytest.fixture
async def store_behind_proxy(
    mariadb_behind_proxy: tuple[str, TcpProxy],
) -> AsyncIterator[tuple[Store, TcpProxy]]:
    """A migrated store on that MariaDB database through the relay; an operation the
    relay holds up fails after 2 s."""
    url, proxy = mariadb_behind_proxy
    store = Store.from_url(url, timeout=2.0)
    await store.migrate()
    try:
        yield store, proxy
    finally:
        await store.close()


async def silence(store: Store, instance: str, seconds: float) -> None:
    """Make ``instance``'s last beat ``seconds`` old, as if it had died then: no
    waiting for a clock, and no race with the beats of the others."""
    async with store.db.begin() as connection:
        await connection.execute(
            update(southbound_instances)
            .where(southbound_instances.c.instance == instance)
            .values(seen_at=utcnow() - timedelta(seconds=seconds))
        )
