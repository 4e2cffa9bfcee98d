"""Data from the device: the durable queue, its upload to a real southbound, the
spool folder and ``edgefleet-agent publish``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from edgefleet.agent import protocol
from edgefleet.agent.record_queue import RecordQueue
from edgefleet.controller.store.schema import files, ingest_log, records
from tests.agent.conftest import agent_process, agent_settings, online, running_agent
from tests.conftest import eventually
from tests.server_process import console_script
from tests.southbound.conftest import Fleet

IMAGE = b"\xff\xd8\xff\xe0" + os.urandom(2048)


async def stored(fleet: Fleet, device: dict[str, Any]) -> list[dict[str, Any]]:
    async with fleet.store.db.read() as connection:
        rows = await connection.execute(
            select(records).where(records.c.device_id == int(device["device_id"]))
        )
        return [dict(row) for row in rows.mappings()]


async def file_puts(fleet: Fleet) -> int:
    async with fleet.store.db.read() as connection:
        return await connection.scalar(
            select(func.count()).where(
                ingest_log.c.transport == "http", ingest_log.c.message.like("file %")
            )
        )


def test_publish_is_on_disk_and_a_full_queue_drops_the_oldest_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A running agent keeps its log to its own file; here pytest hears it too.
    monkeypatch.setattr(logging.getLogger("edgefleet.agent"), "propagate", True)
    queue = RecordQueue(tmp_path, max_bytes=2000)
    ids = [queue.put("count", {"n": i, "pad": "x" * 300}, record_id=f"r-{i}") for i in range(10)]
    queue.close()
    again = RecordQueue(tmp_path, max_bytes=2000)  # a restart: what put returned for is there
    stats = again.stats()
    kept = [record["record_id"] for record in again.batch(64 * 1024)]
    assert stats.dropped == 10 - len(kept) > 0
    assert kept == ids[-len(kept) :]  # the oldest went first, the order is kept
    assert stats.bytes <= 2000
    assert "dropped the oldest record r-0" in caplog.text
    with pytest.raises(protocol.RecordRejected):
        again.put("Bad Kind", {})


async def test_published_records_and_files_reach_the_cloud_once(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    image = tmp_path / "snapshot.jpg"
    image.write_bytes(IMAGE)
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings) as agent:
        await eventually(lambda: online(fleet, device))
        first = await agent.publish("alert", {"vehicle": "truck"}, files=[image])
        second = await agent.publish("alert", {"vehicle": "bus"}, files=[image], record_id="r-2")
        many = [await agent.publish("count", {"n": i}) for i in range(300)]

        async def all_there() -> bool:
            return len(await stored(fleet, device)) == 302

        await eventually(all_there)
        await eventually(lambda: asyncio.to_thread(lambda: agent.queue.stats().depth == 0))
    rows = {row["record_id"]: row for row in await stored(fleet, device)}
    assert {first, "r-2", *many} == set(rows)
    assert second == "r-2"
    digest = hashlib.sha256(IMAGE).hexdigest()
    async with fleet.store.db.read() as connection:
        row = (await connection.execute(select(files).where(files.c.sha256 == digest))).one()
    assert (row.size, row.content_type, row.refs) == (len(IMAGE), "image/jpeg", 2)
    assert await file_puts(fleet) == 1  # sent once, for two records
    assert not any((Path(settings.state_dir) / "queue" / "files").iterdir())


async def test_a_record_whose_image_the_cloud_has_costs_no_upload(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    image = tmp_path / "same.jpg"
    image.write_bytes(IMAGE)
    settings = agent_settings(fleet, device, tmp_path)
    async with running_agent(settings) as agent:
        await eventually(lambda: online(fleet, device))
        await agent.publish("alert", {"n": 1}, files=[image])
        await eventually(lambda: asyncio.to_thread(lambda: agent.queue.stats().depth == 0))
        other = await fleet.register()
    await asyncio.to_thread((tmp_path / "other").mkdir)
    other_settings = agent_settings(fleet, other, tmp_path / "other")
    async with running_agent(other_settings) as agent:
        await eventually(lambda: online(fleet, other))
        await agent.publish("alert", {"n": 2}, files=[image])
        await eventually(lambda: asyncio.to_thread(lambda: agent.queue.stats().depth == 0))
    assert await file_puts(fleet) == 1  # the second device only asked


async def test_records_wait_offline_and_go_up_in_order_when_the_device_connects(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    offline = agent_settings(fleet, device, tmp_path, server="ws://127.0.0.1:9/ws")
    async with running_agent(offline) as agent:
        ids = [await agent.publish("count", {"n": i}) for i in range(50)]
        assert agent.queue.stats().depth == 50
    async with running_agent(agent_settings(fleet, device, tmp_path)):
        await eventually(lambda: asyncio.to_thread(lambda: len(ids) == 50))

        async def arrived() -> bool:
            return len(await stored(fleet, device)) == 50

        await eventually(arrived)
    by_server_id = sorted(await stored(fleet, device), key=lambda row: row["id"])
    assert [row["record_id"] for row in by_server_id] == ids


async def test_the_spool_folder_and_the_publish_command(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    spool = Path(settings.spool_dir)

    def drop_files() -> None:
        spool.mkdir(parents=True)
        (spool / "frame-1.jpg").write_bytes(IMAGE)
        spec = {"kind": "alert", "payload": {"lane": 2}, "files": ["frame-1.jpg"]}
        (spool / ".drop.json.tmp").write_text(json.dumps({**spec, "record_id": "s-1"}))
        (spool / ".drop.json.tmp").rename(spool / "drop.json")
        (spool / "broken.json").write_text("{not json")
        (tmp_path / "shot.jpg").write_bytes(IMAGE[::-1])

    await asyncio.to_thread(drop_files)
    result = await asyncio.to_thread(
        console_script,
        "edgefleet-agent",
        "publish",
        "--kind", "alert", "--payload", '{"lane": 3}', "--file", str(tmp_path / "shot.jpg"),
        "--record-id", "s-2", "--spool-dir", str(spool),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bad = await asyncio.to_thread(
        console_script, "edgefleet-agent", "publish", "--kind", "Bad", "--payload", "{}"
    )
    assert bad.returncode == 2 and "kind" in bad.stderr
    async with running_agent(settings):

        async def both() -> bool:
            return {r["record_id"] for r in await stored(fleet, device)} == {"s-1", "s-2"}

        await eventually(both)
    left = await asyncio.to_thread(
        lambda: sorted(str(p.relative_to(spool)) for p in spool.rglob("*"))
    )
    assert left == ["rejected", "rejected/broken.json"]
    assert await file_puts(fleet) == 2


PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from edgefleet.agent.cli import parse
    from edgefleet.agent.runner import Agent

    async def main():
        agent = Agent(parse(sys.argv[1:]), log_to_stderr=False)
        running = asyncio.create_task(agent.run_async())
        for i in range(400):
            record_id = await agent.publish("count", {"n": i}, record_id=f"k-{i}")
            print(record_id, flush=True)
        await running

    asyncio.run(main())
    """
)


async def test_sigkill_between_publish_and_upload_loses_nothing_and_duplicates_nothing(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    settings = agent_settings(fleet, device, tmp_path)
    from tests.agent.conftest import as_flags

    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        *as_flags(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    published: list[str] = []
    assert publisher.stdout is not None
    while len(published) < 150:  # killed in the middle of publishing and uploading
        line = await asyncio.wait_for(publisher.stdout.readline(), 20)
        published.append(line.decode().strip())
    publisher.send_signal(signal.SIGKILL)
    await publisher.wait()
    uploaded_before = {row["record_id"] for row in await stored(fleet, device)}
    assert set(published) - uploaded_before, "the kill came after everything was uploaded"

    restarted = await agent_process(settings)  # the real CLI, same state directory
    # Read beside the running agent (SQLite in WAL mode: a reader never blocks it).
    queue = RecordQueue(Path(settings.state_dir) / "queue", 1 << 30)
    try:

        async def drained() -> bool:
            return set(published) <= {row["record_id"] for row in await stored(fleet, device)}

        await eventually(drained, timeout=20)

        async def emptied() -> bool:  # anything else queued arrives too, and nothing twice
            return (await asyncio.to_thread(queue.stats)).depth == 0

        await eventually(emptied, timeout=20)
    finally:
        restarted.send_signal(signal.SIGTERM)
        await restarted.wait()
        queue.close()
    rows = await stored(fleet, device)
    ids = [row["record_id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(published) <= set(ids) <= {f"k-{i}" for i in range(400)}
    queue = RecordQueue(Path(settings.state_dir) / "queue", 1 << 30)
    assert queue.stats().depth == 0  # and stays so once the agent has stopped
    queue.close()


def test_a_record_id_queued_twice_goes_once_and_keeps_no_stray_file(tmp_path: Path) -> None:
    queue = RecordQueue(tmp_path / "queue", max_bytes=1 << 20)
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_bytes(IMAGE)
    second.write_bytes(IMAGE[::-1])
    queue.put("alert", {"n": 1}, [first], record_id="same")
    queue.put("alert", {"n": 2}, [second], record_id="same")
    assert [r["payload"] for r in queue.batch(1 << 16)] == [{"n": 1}]
    assert [p.name for p in (tmp_path / "queue" / "files").iterdir()] == [
        hashlib.sha256(IMAGE).hexdigest()
    ]
    assert queue.stats().bytes == len(IMAGE) + len(json.dumps(queue.batch(1 << 16)[0],
                                                             separators=(",", ":")))  # fmt: skip


async def test_a_refused_token_is_followed_by_the_password_once(
    fleet: Fleet, device, tmp_path: Path
) -> None:
    from edgefleet.agent.file_upload import FileUploader, basic

    asked: list[bool] = []

    def authorization(password: bool) -> str:
        asked.append(password)
        return basic(device["device_id"], device["password"]) if password else "Bearer 1.1.1.x"

    uploader = FileUploader(fleet.ws_url, authorization, lambda: None)
    assert await asyncio.to_thread(uploader.has, hashlib.sha256(IMAGE).hexdigest()) is False
    assert asked == [False, True]
