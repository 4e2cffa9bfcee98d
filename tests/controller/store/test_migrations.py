"""The migrations build exactly the schema the queries are written against."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from edgefleet.controller.store import Store
from edgefleet.controller.store.schema import metadata


async def test_migrated_database_matches_the_schema(store: Store) -> None:
    def differences(connection: sqlalchemy.Connection) -> list:
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async with store.db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_upgrading_twice_changes_nothing(store: Store) -> None:
    await store.migrate()
    await store.migrate()


def test_db_upgrade_command_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    result = subprocess.run(
        [sys.executable, "-m", "edgefleet.controller.cli", "db", "upgrade", "--db-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/fresh.db")
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


async def test_a_southbound_waits_for_the_schema_instead_of_failing(tmp_path: Path) -> None:
    """On Kubernetes the southbound can start before the controller has migrated."""
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path}/late.db")
    try:
        waiting = asyncio.create_task(store.wait_for_schema(interval=0.05))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.migrate()
        await asyncio.wait_for(waiting, 2)
    finally:
        await store.close()
