"""A real agent's last hour on its device page: the chart's points come from the
session's memory, one per sample interval, and a client watching the device gets
a device.status per stream interval, while the fleet-wide stream keeps the log's
pace (one per ten minutes)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.controller.settings import StreamSettings
from edgefleet.controller.store import Store
from tests.agent.conftest import SOUTHBOUND, agent_settings, running_agent
from tests.conftest import eventually
from tests.controller.test_api_stream import EventReader, stream
from tests.southbound.conftest import running_fleet

SAMPLED = dataclasses.replace(SOUTHBOUND, status_sample_interval=1.0)
"""Uploads every 0.5 s, a chart point kept every 1 s."""
STREAM = StreamSettings(poll_interval=0.05, keepalive=0.5, status_interval=0.5)


async def everything_within(reader: EventReader, seconds: float) -> list[dict[str, Any]]:
    seen = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            seen.append(await reader.next(left))
        except TimeoutError:
            break
    return seen


def at(text: str) -> float:
    return datetime.fromisoformat(text.rstrip("Z")).timestamp()


async def test_the_last_hour_and_the_watched_status_of_a_real_agent(
    sqlite_store: Store, tmp_path: Path
) -> None:
    async with running_fleet(sqlite_store, SAMPLED, stream=STREAM) as fleet:
        device = await fleet.register(name="camera-1")
        device_id = device["device_id"]
        history_path = f"/api/v1/devices/{device_id}/status/history"
        (await fleet.api.get(history_path)).failure(409, "DEVICE_OFFLINE")
        watched = {"device_id": device_id, "types": "device.status"}
        async with (
            stream(fleet.api, watched) as watching,
            stream(fleet.api, {"types": "device.status"}) as fleet_wide,
        ):
            async with running_agent(agent_settings(fleet, device, tmp_path)):
                fleet_wide_seen = asyncio.create_task(everything_within(fleet_wide, 4.0))
                statuses = await watching.take(5, timeout=5.0)
                times = [at(e["data"]["at"]) for e in statuses]
                assert times == sorted(set(times)), "each status is a new upload"
                data = statuses[-1]["data"]
                assert data["device_id"] == device_id and data["type"] == "device.status"
                assert data["event_id"] is None  # not in the log
                assert 0 < data["data"]["memory_used_percent"] <= 100
                assert data["data"]["cpu_percent"] is not None
                ids = [int(e["id"]) for e in statuses]
                assert ids == sorted(ids)
                assert len(await fleet_wide_seen) <= 1  # the log's one, at the first upload

                async def three_points() -> list[dict[str, Any]]:  # uploads 0.5 s apart
                    items = (await fleet.api.get(history_path)).data["items"]
                    return items if len(items) >= 3 else []

                items = await eventually(three_points)
                points = [at(item["at"]) for item in items]
                assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(points))
                assert all(0 < item["disk_used_percent"] <= 100 for item in items)
                assert all(item["cpu_percent"] is not None for item in items[1:])
        await fleet.southbound.recorder.drained()
        (await fleet.api.get(history_path)).failure(409, "DEVICE_OFFLINE")
