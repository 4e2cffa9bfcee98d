"""The async engine, and the one place where driver errors become store errors.

Both SQLite (aiosqlite) and MySQL/MariaDB (aiomysql) run the same queries. A
database outage must answer fast and heal by itself: connects time out quickly,
pooled connections are pinged before use (so a restarted server is noticed), and
every transaction runs under a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from edgefleet.controller.store.errors import DatabaseUnavailable

log = logging.getLogger("edgefleet.store")


def utcnow() -> datetime:
    """Now, as the naive UTC timestamp every table stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def _connect_args(url: str | URL, timeout: float) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": timeout}}
    return {"connect_args": {"connect_timeout": max(1, int(timeout))}}


def create_engine(url: str, timeout: float, pool_size: int) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **_connect_args(url, timeout))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No reset on return: every connection is used through SQLAlchemy's Connection,
    # whose close() rolls back a transaction still open, so the ROLLBACK the pool
    # would send after each COMMIT is one more round trip on every write for nothing.
    return create_async_engine(
        url, pool_reset_on_return=None, **_server_pool(url, timeout, pool_size)
    )


def create_reader(url: str, timeout: float, pool_size: int) -> AsyncEngine | None:
    """A second pool, for reads, whose connections stay in autocommit: a read then
    costs one round trip (its SELECT), where a pooled transaction costs two (the
    SELECT and the ROLLBACK that ends it when the connection is returned). Every
    GET is a read: in a profile of GETs by id the ROLLBACK took 15 % of the
    server's CPU, and MariaDB's own CPU per GET fell by about half without it. None
    for SQLite, whose rollback does not cross a socket."""
    if make_url(url).get_backend_name() == "sqlite":
        return None
    return create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,
        **_server_pool(url, timeout, pool_size),
    )


def _server_pool(url: str, timeout: float, pool_size: int) -> dict[str, Any]:
    # No pre-ping: it costs a round trip on every checkout. A connection that died
    # with the server raises a disconnect error instead, which invalidates the whole
    # pool, so one request answers 503 and the next ones reconnect.
    return {
        "pool_recycle": 3600,
        # A fixed pool: overflow connections would be opened and closed again
        # under bursts, and their handshakes showed up as p99 spikes.
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_timeout": timeout,
        **_connect_args(url, timeout),
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """An engine plus the transaction boundary that turns outages into
    ``DatabaseUnavailable``.

    A circuit breaker sits in that boundary. A database that stops answering
    (packets dropped, not refused) would make every call wait the full
    ``timeout`` before failing; so the first call that finds the database
    unreachable opens the breaker, and until a background probe reaches the
    database again every call fails at once, without touching it. The probe
    opens a fresh connection each time (not one from the pool, whose connections
    may all be stuck on the dead network), and when it gets through, the pool's
    old connections are dropped so the next calls start clean. Errors that say
    nothing about reachability (a deadlock, a constraint) never open it, and
    neither does a call that ran out of time while a fresh connection still gets
    an answer: that database is busy (a rollout's writes filling the pool), and
    the call alone fails.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        timeout: float,
        probe_interval: float = 1.0,
        reader: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        self.reader = reader or engine
        """Where ``read`` takes its connections: an autocommit pool, or ``engine``."""
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.outage: str | None = None
        """Why the database is taken for unreachable now (the breaker is open), or None."""
        self.short_circuits = 0
        """Calls the open breaker answered unavailable without touching the database."""
        self._probe_task: asyncio.Task[None] | None = None
        self._check: asyncio.Future[bool] | None = None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        async with self._guard(), self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only. On a server database it is in autocommit, so
        each statement sees its own snapshot: two reads in one block may see a write
        land between them (a page and its total count, say)."""
        async with self._guard(), self.reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        if self.outage is not None:
            self.short_circuits += 1
            raise DatabaseUnavailable(f"{self.outage} (waiting for it to answer again)")
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and await self._answers_fresh():
                # Slow, not gone: every pooled connection was busy (the deadline
                # covers the wait for one), or a statement waited on locks. Opening
                # the breaker would turn an overload into an outage of every call.
                raise DatabaseUnavailable("TimeoutError (the database is busy)") from exc
            if _unreachable(exc):
                self._trip(type(exc).__name__)
            raise DatabaseUnavailable(type(exc).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                self._trip(type(exc).__name__)
                raise DatabaseUnavailable(type(exc).__name__) from exc
            raise

    def _trip(self, reason: str) -> None:
        if self.outage is None:
            log.warning("database unreachable; answering unavailable until it is back",
                        extra={"error": reason})  # fmt: skip
            self.outage = reason
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.create_task(self._probe(), name="database-probe")

    async def _probe(self) -> None:
        while self.outage is not None:
            await asyncio.sleep(self.probe_interval)
            if not await self._ask_fresh():
                continue
            await self._dispose()
            log.warning("database reachable again", extra={"after": self.outage})
            self.outage = None

    async def _answers_fresh(self) -> bool:
        """Whether the database answers a new connection now; calls that time out
        together share one such check."""
        if self._check is None or self._check.done():
            self._check = asyncio.ensure_future(self._ask_fresh())
        return await asyncio.shield(self._check)

    async def _ask_fresh(self) -> bool:
        """``SELECT 1`` on a fresh connection, not one from the pool, whose
        connections may all be busy, or stuck on a dead network."""
        prober = create_async_engine(self.engine.url, poolclass=NullPool, **_connect_args(
            self.engine.url, self.timeout))  # fmt: skip
        try:
            async with asyncio.timeout(self.timeout), prober.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
            return True
        except (DBAPIError, OSError, TimeoutError):
            return False
        finally:
            await prober.dispose()

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        """Stop the background probe and a fresh-connection check still running (each
        holds an engine of its own), then drop the pools."""
        background = [t for t in (self._probe_task, self._check) if t is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._dispose()

    async def _dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


# Driver errors that mean "cannot reach the server" (MySQL client codes: cannot
# connect, server gone away, connection lost, lost at handshake), as opposed to
# errors of one statement (a deadlock, a lock wait) that leave it reachable.
_MYSQL_UNREACHABLE = {2003, 2006, 2013, 2055}


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return False  # busy, not gone: every connection is in use
    if isinstance(exc, OperationalError):
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if isinstance(code, int):
            return code in _MYSQL_UNREACHABLE
        return "unable to open" in str(exc.orig)  # SQLite: the file cannot be opened
    return True
