"""The async engine, and the one place where driver errors become store errors.

Both SQLite (aiosqlite) and MySQL/MariaDB (aiomysql) run the same queries. A
database outage must answer fast and heal by itself: connects time out quickly,
pooled connections are pinged before use (so a restarted server is noticed), and
every transaction runs under a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from edgefleet.controller.store.errors import DatabaseUnavailable


def utcnow() -> datetime:
    """Now, as the naive UTC timestamp every table stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_engine(url: str, timeout: float, pool_size: int) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": timeout})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection that died
    # with the server raises a disconnect error instead, which invalidates the whole
    # pool, so one request answers 503 and the next ones reconnect.
    return create_async_engine(
        url,
        pool_recycle=3600,
        # A fixed pool: overflow connections would be opened and closed again
        # under bursts, and their handshakes showed up as p99 spikes.
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        connect_args={"connect_timeout": max(1, int(timeout))},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """An engine plus the transaction boundary that turns outages into
    ``DatabaseUnavailable``."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        async with self._guard(), self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only: no COMMIT round trip, the pool rolls back."""
        async with self._guard(), self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailable(type(exc).__name__) from exc
            raise

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self.engine.dispose()
