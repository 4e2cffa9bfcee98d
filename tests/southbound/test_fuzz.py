"""Property-based fuzzing of a real southbound with generated device conversations.

Hypothesis (fixed seed, bounded sizes) plays devices that send valid frames with
hostile values, broken JSON, deep nesting, huge numbers, binary frames and wrong
types in every field, before and after logging in, and leave politely or by
dropping the connection. After every conversation the invariants must hold:

- no session is attached without a live connection;
- no device is ``online`` (or ``unknown``) in the database without a session;
- every REST status answer is strict JSON;
- a well-behaved device that was connected all along still gets its pong within
  the heartbeat tolerance.

The server runs in an event loop of its own thread for the whole module, so each
generated case is one call into it (Hypothesis drives plain functions).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from edgefleet.agent import protocol
from edgefleet.controller.store import Store
from edgefleet.controller.store.schema import devices
from tests.conftest import eventually
from tests.southbound.conftest import FAST, Fleet, ping, running_fleet

TOLERANCE = 1.0
SETTINGS = replace(
    FAST,
    heartbeat_tolerance=TOLERANCE,
    heartbeat_tolerance_after_failure=TOLERANCE,
    login_timeout=1.0,
    login_attempts_per_device=1_000_000,
    login_failures_per_address=1_000_000,
    max_frames_per_second=1000,
)
EXAMPLES = 120


@dataclass
class Harness:
    """A running fleet in a loop of its own, a fuzzed device, and a steady one that
    pings four times a tolerance and counts the pongs that came late or never."""

    loop: asyncio.AbstractEventLoop
    fleet: Fleet
    fuzzed: dict[str, Any]
    steady: dict[str, Any]
    pongs: int = 0
    late: int = 0

    def run(self, work: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()
    ready: asyncio.Future[Harness] = asyncio.Future(loop=loop)
    path: Path = tmp_path_factory.mktemp("fuzz") / "edgefleet.db"

    async def serve() -> None:
        store = Store.from_url(f"sqlite+aiosqlite:///{path}")
        await store.migrate()
        try:
            async with running_fleet(store, SETTINGS) as fleet:
                harness = Harness(loop, fleet, await fleet.register(), await fleet.register())
                steady_ws, _ = await fleet.login(harness.steady)
                pinging = asyncio.create_task(keep_pinging(harness, steady_ws))
                ready.set_result(harness)
                await stop.wait()
                pinging.cancel()
                await steady_ws.close()
        finally:
            await store.close()

    serving = asyncio.run_coroutine_threadsafe(serve(), loop)
    harness = asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready, 30), loop).result()
    try:
        yield harness
    finally:
        loop.call_soon_threadsafe(stop.set)
        serving.result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def keep_pinging(harness: Harness, ws: websockets.ClientConnection) -> None:
    while True:
        await ws.send(ping())
        try:
            async with asyncio.timeout(TOLERANCE):
                while json.loads(await ws.recv()).get("data") != "pong":
                    pass
            harness.pongs += 1
        except TimeoutError:
            harness.late += 1
        await asyncio.sleep(TOLERANCE / 10)


# --- what a hostile or broken device sends ------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "-0"]
TYPES = [
    protocol.PING_PONG,
    protocol.STATUS_UPLOAD,
    protocol.RESULT,
    "upload_data",
    "config_report",
    "no_such_type",
    "",
]


@st.composite
def frames(draw: st.DrawFn, device_id: str) -> str | bytes:
    kind = draw(st.sampled_from(["shaped", "status", "number", "broken", "nested", "binary"]))
    if kind == "shaped":  # a frame of the right shape, any value in any field
        frame = {
            "type": draw(st.sampled_from(TYPES) | json_values),
            "Headers": draw(json_values),
            "data": draw(json_values),
        }
        if draw(st.booleans()):
            frame["status"] = draw(json_values)
        return json.dumps(frame)
    if kind == "status":  # a status upload whose sections hold anything
        sections = {
            name: draw(st.dictionaries(st.sampled_from(protocol.CPU_TIMES), json_values))
            for name in (protocol.CPU_INFO, protocol.MEMORY_INFO, protocol.DISK_INFO)
        }
        sender = draw(st.sampled_from([device_id, "0" + device_id, 7]) | json_values)
        return protocol.encode({"type": protocol.STATUS_UPLOAD, "Headers": {},
                                "data": {"device_id": sender, **sections}})  # fmt: skip
    if kind == "number":  # a number no strict parser takes, where a number belongs
        number = draw(st.sampled_from(HOSTILE_NUMBERS))
        return (
            f'{{"type": "{protocol.STATUS_UPLOAD}", "Headers": {{}}, "data": '
            f'{{"device_id": "{device_id}", "Disk_info": {{"root_used_percent": {number}}}}}}}'
        )
    if kind == "broken":
        valid = protocol.ping()
        return draw(st.text(max_size=200) | st.just(valid[: draw(st.integers(0, len(valid)))]))
    if kind == "nested":
        depth = draw(st.sampled_from([50, 1_000, 30_000]))
        return draw(st.sampled_from(["[", '{"a":'])) * depth
    return draw(st.binary(max_size=100))


LOGINS = ["good", "good", "good", "hostile", "garbage", "none"]


@st.composite
def logins(draw: st.DrawFn, device: dict[str, Any], kind: str) -> str | bytes | None:
    """The first frame: a good login, a hostile one, or none at all."""
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(frames(device["device_id"]))
    frame: dict[str, Any] = {"device_id": device["device_id"], "password": device["password"]}
    if draw(st.booleans()):
        frame["extensions"] = draw(
            st.lists(st.sampled_from(sorted(protocol.EXTENSIONS)), max_size=6) | json_values
        )
    if kind == "hostile":
        field = draw(st.sampled_from(["device_id", "password", "token", "device_sn"]))
        frame[field] = draw(
            json_values
            | st.sampled_from(["0" + device["device_id"], "9" * 40, "p" * 2000, "\ud800"])
        )
    return json.dumps(frame)


@dataclass
class Conversation:
    kind: str
    login: str | bytes | None
    frames: list[str | bytes]
    drop: bool  # leave by dropping the TCP connection instead of a closing handshake


@st.composite
def conversations(draw: st.DrawFn, device: dict[str, Any]) -> Conversation:
    kind = draw(st.sampled_from(LOGINS))
    return Conversation(
        kind=kind,
        login=draw(logins(device, kind)),
        frames=draw(st.lists(frames(device["device_id"]), max_size=6)),
        drop=draw(st.booleans()),
    )


# --- one case, and the invariants -----------------------------------------------------------


async def converse(fleet: Fleet, device: dict[str, Any], conversation: Conversation) -> str:
    """Play the conversation; while the connection is still open at its end, the
    device's status over REST must be a strict-JSON answer (200, or 409 offline)."""
    ws = await websockets.connect(fleet.ws_url, compression=None, max_size=None, ping_interval=None)
    try:
        for frame in [conversation.login, *conversation.frames]:
            if frame is None:
                continue
            await ws.send(frame)
            try:  # read what comes back, briefly; the server may close
                async with asyncio.timeout(0.01):
                    await ws.recv()
            except TimeoutError:
                pass
        await status_is_strict_json(fleet, device)
        return "open to the end"
    except websockets.ConnectionClosed:
        return "closed by the server"
    finally:
        if conversation.drop:
            ws.transport.abort()
        else:
            await ws.close()


async def status_is_strict_json(fleet: Fleet, device: dict[str, Any]) -> None:
    url = f"{fleet.api.base_url}/api/v1/devices/{device['device_id']}/status"
    async with fleet.api.session.get(url, headers={"Authorization": "Bearer t"}) as answer:
        assert answer.status in (200, 409), await answer.text()
        json.loads(await answer.text(), parse_constant=_refuse)


async def invariants_hold(harness: Harness) -> None:
    fleet, southbound = harness.fleet, harness.fleet.southbound
    fuzzed, steady = int(harness.fuzzed["device_id"]), int(harness.steady["device_id"])

    async def released() -> bool:  # its handler has noticed the connection is gone
        return fuzzed not in southbound.sessions

    await eventually(released, timeout=5)
    assert [d for d, _ in southbound.sessions.items()] == [steady]
    await fleet.settled()
    async with fleet.store.db.read() as connection:
        claimed = set(
            await connection.scalars(
                select(devices.c.device_id).where(devices.c.state.in_(["online", "unknown"]))
            )
        )
    assert claimed <= {steady}
    for device in (harness.fuzzed, harness.steady):
        await status_is_strict_json(fleet, device)
    pongs = harness.pongs

    async def answered_again() -> bool:
        return harness.pongs > pongs

    await eventually(answered_again, timeout=5 * TOLERANCE)
    assert harness.late == 0
    entry = southbound.live.get(steady)
    assert entry is not None and entry.state == "online"


def _refuse(name: str) -> Any:
    raise AssertionError(f"{name} in a REST answer")


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_conversation_breaks_the_invariants(harness: Harness, data: st.DataObject) -> None:
    conversation = data.draw(conversations(harness.fuzzed))
    ended = harness.run(converse(harness.fleet, harness.fuzzed, conversation))
    event(f"login {conversation.kind}, {ended}")
    harness.run(invariants_hold(harness))
