"""GET /api/v1/stream over a real socket: scope, filters, resume with
Last-Event-ID, keep-alive comments, and a real device coming and going."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from edgefleet.controller.store import Store
from edgefleet.controller.store.sessions import SessionChange
from tests.api_client import ApiClient
from tests.controller.access_world import World
from tests.southbound.conftest import FAST, running_fleet

STREAM = "/api/v1/stream"


class EventReader:
    """Server-Sent Events from an open response, as dicts (``id``, ``event``,
    ``data`` parsed); comments are counted."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = json.loads(value) if name == "data" else value
                elif fields:
                    return fields

    async def take(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [await self.next(timeout) for _ in range(count)]

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False


@asynccontextmanager
async def stream(
    api: ApiClient, params: dict[str, str] | None = None, last_event_id: str | None = None
) -> AsyncIterator[EventReader]:
    headers = {"Authorization": f"Bearer {api.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with api.session.get(
        api.base_url + STREAM, params=params or {}, headers=headers, timeout=timeout
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield EventReader(response)


async def state(store: Store, device_id: str, value: str, **detail: Any) -> None:
    """What a southbound's recorder writes when a device changes state."""
    await store.sessions.apply("pod-1", [SessionChange("state", int(device_id), value, detail)])


async def test_a_caller_sees_only_the_devices_of_its_groups(store: Store, api: ApiClient) -> None:
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "viewer", "group_id": world.group_a}])
    async with stream(limited) as mine, stream(api) as everything:
        await state(store, world.device_b, "online")
        await state(store, world.device_a, "online")
        await state(store, world.device_a, "unknown", missed_heartbeats=1)
        seen = await mine.take(2)
        assert [(e["data"]["device_id"], e["data"]["data"]["state"]) for e in seen] == [
            (world.device_a, "online"),
            (world.device_a, "unknown"),
        ]
        assert seen[1]["event"] == "device.state"
        assert seen[1]["data"]["data"]["missed_heartbeats"] == 1
        assert seen[0]["id"] == seen[0]["data"]["event_id"]
        assert await mine.nothing_within(0.3)
        devices = [e["data"]["device_id"] for e in await everything.take(3)]
        assert devices == [world.device_b, world.device_a, world.device_a]


async def test_a_client_resumes_with_last_event_id(store: Store, api: ApiClient) -> None:
    world = await World.build(api)
    async with stream(api, {"device_id": world.device_a}) as first:
        await state(store, world.device_a, "online")
        [seen] = await first.take(1)
    for value in ("unknown", "online", "offline"):
        await state(store, world.device_a, value)
    await state(store, world.device_b, "online")  # filtered out on resuming too
    async with stream(api, {"device_id": world.device_a}, last_event_id=seen["id"]) as again:
        missed = await again.take(3)
        assert [e["data"]["data"]["state"] for e in missed] == ["unknown", "online", "offline"]
        await state(store, world.device_a, "online")
        [live] = await again.take(1)
        assert int(live["id"]) > int(missed[-1]["id"])
        assert await again.nothing_within(0.3)


async def test_resuming_never_shows_another_groups_events(store: Store, api: ApiClient) -> None:
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "viewer", "group_id": world.group_a}])
    async with stream(api) as everything:
        await state(store, world.device_a, "online")
        [first] = await everything.take(1)
    await state(store, world.device_b, "online")
    await state(store, world.device_a, "offline")
    async with stream(limited, last_event_id=first["id"]) as resumed:
        [missed] = await resumed.take(1)
        assert missed["data"]["device_id"] == world.device_a
        assert await resumed.nothing_within(0.3)


async def test_an_idle_stream_gets_keep_alive_comments(api: ApiClient) -> None:
    async with stream(api) as idle, asyncio.timeout(5):
        # Every 0.5 s in the tests (15 s by default): two comments and no event.
        while idle.comments < 2:
            assert await idle.nothing_within(0.5)


async def test_types_filter_the_stream(store: Store, api: ApiClient) -> None:
    world = await World.build(api)
    async with stream(api, {"types": "command.result"}) as results:
        await state(store, world.device_a, "online")
        change = SessionChange(
            "event",
            int(world.device_a),
            "command_result",
            {"order": "restart", "status": "success", "message": "ok"},
        )
        await store.sessions.apply("pod-1", [change])
        [event] = await results.take(1)
        assert event["event"] == "command.result"
        assert event["data"]["data"] == {"order": "restart", "status": "success", "message": "ok"}


async def test_a_bad_filter_or_one_outside_the_scope_is_refused(api: ApiClient) -> None:
    world = await World.build(api)
    limited = await api.user("limited", [{"role": "viewer", "group_id": world.group_a}])
    (await limited.get(STREAM, params={"device_id": world.device_b})).failure(404, "DEVICEOP_ERROR")
    (await limited.get(STREAM, params={"group_id": world.group_b})).failure(404, "GROUPOP_ERROR")
    (await api.get(STREAM, params={"types": "device.state,nonsense"})).failure(400, "GENERAL_ERROR")
    bad = await api.get(STREAM, headers={"Last-Event-ID": "yesterday"})
    bad.failure(400, "GENERAL_ERROR")
    nobody = await api.user("nobody", [])
    (await nobody.get(STREAM)).failure(403, "AUTH_ERROR")


async def test_a_real_device_coming_and_going_appears_in_order(store: Store) -> None:
    async with running_fleet(store, FAST) as fleet:
        device = await fleet.register()
        async with stream(fleet.api, {"device_id": device["device_id"]}) as events:
            ws, _ = await fleet.login(device)
            await ws.close()
            seen = await events.take(2)
    assert [e["data"]["data"]["state"] for e in seen] == ["online", "offline"]
    assert seen[1]["data"]["data"]["reason"]
    assert int(seen[0]["id"]) < int(seen[1]["id"])


async def test_events_of_several_southbound_pods_meet_in_one_stream(
    store: Store, api: ApiClient
) -> None:
    """Kubernetes mode: each pod's recorder writes the log; the stream reads it."""
    world = await World.build(api)
    async with stream(api) as events:
        for pod, device in (("pod-1", world.device_a), ("pod-2", world.device_b)):
            held = SessionChange("connected", int(device), "connected", {"instance": pod})
            await store.sessions.apply(pod, [held, SessionChange("state", int(device), "online")])
        seen = await events.take(2)
    assert {e["data"]["device_id"] for e in seen} == {world.device_a, world.device_b}
    assert all(e["data"]["data"]["state"] == "online" for e in seen)


async def test_a_client_that_falls_behind_is_cut_off_and_resumes(store: Store, caplog: Any) -> None:
    """Five events in one read of the log overflow a queue of two: that client's
    connection ends (it would resume with Last-Event-ID); the server logs no error."""
    from edgefleet.controller.settings import StreamSettings
    from tests.api_client import TEST_STREAM, running_api

    tight = StreamSettings(poll_interval=0.5, keepalive=TEST_STREAM.keepalive, client_queue=2)
    async with running_api(store, "t", stream=tight) as api:
        world = await World.build(api)
        async with stream(api) as behind:
            changes = [
                SessionChange("state", int(world.device_a), s) for s in ("online", "unknown") * 3
            ]
            await store.sessions.apply("pod-1", changes)
            try:
                await behind.take(6, timeout=3.0)
            except (EOFError, aiohttp.ClientPayloadError):
                pass  # aborted mid-stream: the chunked answer never ends properly
            else:
                raise AssertionError("the client was not cut off")
        async with stream(api, last_event_id="0") as resumed:
            assert len(await resumed.take(2)) == 2  # from the log, at most a queue's worth
    assert "Error handling request" not in caplog.text
