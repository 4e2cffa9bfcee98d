"""The migrations build exactly the schema the queries are written against."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def schema_of(connection: sqlalchemy.Connection) -> dict[str, Any]:
    """Every table as the database describes it: columns, keys, indexes."""
    inspector = sqlalchemy.inspect(connection)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in
                inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
        }
        for table in sorted(inspector.get_table_names())
    }  # fmt: skip


async def snapshot(store: Store) -> tuple[dict[str, Any], dict[str, list[tuple[Any, ...]]]]:
    """The schema, and every row of every table (the Alembic version too)."""
    async with store.db.engine.connect() as connection:
        schema = await connection.run_sync(schema_of)
        rows = {}
        for table in schema:
            result = await connection.execute(sqlalchemy.text(f"SELECT * FROM {table}"))
            rows[table] = sorted((tuple(row) for row in result), key=repr)
    return schema, rows


async def test_upgrading_twice_changes_nothing(store: Store) -> None:
    """Migrating an up-to-date database with data in it keeps its schema and rows."""
    await store.devices.create(
        {"device_id": 7, "name": "cam", "type": "camera", "hardware_sn": "SN7",
         "hardware_model": "M", "secret": "x" * 60}
    )  # fmt: skip
    await store.groups.create({"group_id": 9, "name": "gate"})
    await store.groups.replace_of_device(7, [9])
    await store.sessions.beat("southbound-0")
    before = await snapshot(store)
    assert before[1]["devices"] and before[1]["alembic_version"]

    await store.migrate()
    await store.migrate()

    assert await snapshot(store) == before


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
