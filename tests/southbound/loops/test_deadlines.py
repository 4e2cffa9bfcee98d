"""A connection's deadlines — a device's silence, a command's timeout — and its
end, on both event loops (``conftest.py``): over real sockets, and, where the test
must choose the loop turn a frame arrives in or hold a send, over a WebSocket it
drives."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import replace

import pytest
from websockets.exceptions import ConnectionClosed

from edgefleet.agent.protocol import ORDER, CommandRefused, CommandResult, command_result
from edgefleet.controller.passwords import hash_password
from edgefleet.controller.store import Store
from edgefleet.southbound.connection import DeviceConnection
from edgefleet.southbound.events import SessionEvents, StateChanged
from edgefleet.southbound.login import LoginGate
from edgefleet.southbound.session import Timings
from edgefleet.southbound.sessions import SessionTable
from tests.conftest import eventually
from tests.southbound.conftest import FAST, SHORT_TOLERANCE, Fleet, ping, recv_json, running_fleet
from tests.southbound.test_server import closed_with

PASSWORD = "a-long-password"


async def test_silent_device_goes_unknown_then_offline(store: Store) -> None:
    async with running_fleet(store, SHORT_TOLERANCE) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(device)
        code, reason = await closed_with(ws)
        assert (code, reason) == (1001, "heartbeat timeout")
        await fleet.settled()
        assert await fleet.state(device) == "offline"
        names = [e["event"] for e in await fleet.events(device)]
        assert names[-4:] == ["connected", "online", "unknown", "offline"]
        offline = (await fleet.events(device))[-1]
        assert offline["detail"] == {"reason": "heartbeat_timeout"}


async def test_a_device_that_pings_on_schedule_never_turns_unknown(store: Store) -> None:
    """Every ping moves the silence deadline on; across ten of them (three
    tolerance periods) the server's deadline timer fires for deadlines that have
    since moved, and must not take them for missed. A second of tolerance against
    pings every 0.3 s leaves a loaded machine 0.7 s to spare."""
    settings = replace(FAST, heartbeat_tolerance=1.0, heartbeat_tolerance_after_failure=1.0)
    async with running_fleet(store, settings) as fleet:
        device = await fleet.register()
        ws, _ = await fleet.login(device)
        for _ in range(10):
            await asyncio.sleep(0.3)
            await ws.send(ping())
            assert (await recv_json(ws))["data"] == "pong"
        await ws.close()
        await fleet.settled()
        names = [e["event"] for e in await fleet.events(device)]
        assert names[-3:] == ["connected", "online", "offline"]


async def test_command_timeout_busy_and_offline_answers(fleet: Fleet) -> None:
    """Each answer has its own command: the busy one is refused while a first takes
    its time (which it has plenty of, however slow the REST path), and the timeout
    is a command nothing else waits on."""
    device = await fleet.register()
    ws, _ = await fleet.login(device)
    path = f"/api/v1/devices/{device['device_id']}/commands"
    slow = asyncio.create_task(fleet.api.post(path, {"order": "slow", "timeout": 30}))
    await recv_json(ws)  # the order arrives; the device takes its time
    busy = await fleet.api.post(path, {"order": "other"})
    assert busy.failure(409, "DEVICE_BUSY") == "Device busy!"
    await ws.send(command_result("success", "done"))
    assert (await slow).data["status"] == "success"
    unanswered = asyncio.create_task(fleet.api.post(path, {"order": "slow", "timeout": 0.5}))
    await recv_json(ws)  # this one the device never answers
    (await unanswered).failure(504, "COMMAND_TIMEOUT")
    await ws.close()
    await fleet.settled()
    offline = await fleet.api.post(path, {"order": "other"})
    assert offline.failure(409, "DEVICE_OFFLINE") == "Device is offline!"


class DrivenSocket:
    """A device's WebSocket as a connection sees it (``connection.WebSocket``),
    driven by the test: a frame arrives when ``arrive`` is called, in that loop
    turn, as a real socket's would when the loop reads it; and while ``reading``
    is clear, the device reads nothing, so a send waits for it as it would for a
    full TCP window. A real socket can do neither on cue."""

    remote_address = ("192.0.2.7", 40000)

    def __init__(self) -> None:
        self.frames: deque[str] = deque()
        self.sent: list[dict] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def arrive(self, frame: str) -> None:
        self.frames.append(frame)
        self._wake()

    async def recv(self) -> str:
        while not self.frames:
            if self._closed:
                raise ConnectionClosed(None, None)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.frames.popleft()

    async def send(self, message: str) -> None:
        await self.reading.wait()
        self.sent.append(json.loads(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


async def logged_in(
    store: Store, tolerance: float
) -> tuple[DrivenSocket, DeviceConnection, asyncio.Task[None], list[str]]:
    """A device logged in over a ``DrivenSocket``; and the states it goes through."""
    await store.devices.create(
        {"device_id": 42, "name": "cam", "type": "camera", "hardware_sn": "SN",
         "hardware_model": "M", "secret": await hash_password(PASSWORD, 4)}
    )  # fmt: skip
    events = SessionEvents()
    states: list[str] = []
    events.on(StateChanged, lambda change: states.append(change.state))
    timings = Timings(login_timeout=5, tolerance=tolerance, tolerance_after_failure=tolerance)
    ws = DrivenSocket()
    connection = DeviceConnection(
        ws, timings, LoginGate(store, FAST, 4), SessionTable(events), events
    )
    task = asyncio.create_task(connection.run())
    ws.arrive(json.dumps({"device_id": "42", "password": PASSWORD}))

    async def answered() -> bool:
        return bool(ws.sent)

    await eventually(answered)
    assert ws.sent[0]["status"] == "success", ws.sent
    return ws, connection, task, states


def pongs(ws: DrivenSocket) -> int:
    return sum(frame.get("data") == "pong" for frame in ws.sent)


async def test_a_command_deadline_passing_while_a_send_waits_times_out_only_the_command(
    store: Store,
) -> None:
    """The device stops reading while a pong is on its way; the command's deadline
    passes meanwhile; another frame is waiting when the send goes through. The
    command times out, both pings are answered, and the session lives on."""
    ws, connection, task, states = await logged_in(store, tolerance=30)
    result = await connection.send_command("snapshot", {}, 0.05)
    ws.reading.clear()
    ws.arrive(ping())
    await asyncio.sleep(0.1)
    ws.arrive(ping())
    ws.reading.set()
    assert await asyncio.wait_for(result, 5) == CommandResult("timeout", "command timed out")

    async def both_answered() -> bool:
        return pongs(ws) == 2

    await eventually(both_answered)
    assert not task.done() and states == []
    await ws.close()
    await task


async def test_a_frame_that_arrives_as_the_deadline_passes_counts_first(store: Store) -> None:
    """A ping arrives 10 ms before the silence deadline, and the loop is busy past
    it: the ping counts, and the device never turns unknown — both for the first
    frame after login (read while the login was checked) and for a later one."""
    ws, connection, task, states = await logged_in(store, tolerance=0.6)
    loop = asyncio.get_running_loop()

    def busy() -> None:
        ws.arrive(ping())
        time.sleep(0.03)

    for answered in (1, 2):
        deadline = connection.session.next_deadline()
        assert deadline is not None
        loop.call_at(deadline - 0.01, busy)
        await asyncio.sleep(deadline - loop.time() + 0.05)
        assert pongs(ws) == answered
        assert states == []
    await ws.close()
    await task


async def test_a_command_sent_as_the_server_stops_the_connection_is_refused_not_sent(
    store: Store,
) -> None:
    """The server cancels the handler (shutting down) while the device is logged
    in; a command that comes in the turn after is told the device is offline, and
    the device never sees it — it is not told to run an order its caller was told
    failed. The handler ends with nothing of it left running."""
    ws, connection, task, _ = await logged_in(store, tolerance=30)
    task.cancel()
    await asyncio.sleep(0)
    with pytest.raises(CommandRefused) as refused:
        await connection.send_command("snapshot", {}, 5)
    assert refused.value.kind == "offline"
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [frame for frame in ws.sent if frame.get("type") == ORDER] == []
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
