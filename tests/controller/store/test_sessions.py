"""Batched session changes: rows end as the last change says, every change logs."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, insert, select

from edgefleet.controller.store import Store
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.schema import device_events, device_sessions, devices
from edgefleet.controller.store.sessions import SessionChange
from tests.conftest import silence


async def make_devices(store: Store, count: int) -> list[int]:
    now = utcnow()
    ids = list(range(1001, 1001 + count))
    async with store.db.begin() as connection:
        await connection.execute(
            insert(devices),
            [
                {
                    "device_id": i,
                    "name": f"d{i}",
                    "type": "camera",
                    "description": "",
                    "hardware_sn": f"S{i}",
                    "hardware_model": "M",
                    "secret": "x" * 60,
                    "credential_version": 1,
                    "state": "offline",
                    "disabled": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
    return ids


async def snapshot(store: Store) -> tuple[dict[int, str], dict[int, str], list[tuple]]:
    async with store.db.read() as connection:
        states = dict(
            (await connection.execute(select(devices.c.device_id, devices.c.state))).all()
        )
        sessions = dict(
            (
                await connection.execute(
                    select(device_sessions.c.device_id, device_sessions.c.instance)
                )
            ).all()
        )
        events = [
            tuple(row)
            for row in await connection.execute(
                select(device_events.c.device_id, device_events.c.event).order_by(
                    device_events.c.event_id
                )
            )
        ]
    return states, sessions, events


def connect(device_id: int) -> list[SessionChange]:
    return [
        SessionChange("connected", device_id, "connected", address="10.0.0.1:9091"),
        SessionChange("state", device_id, "online"),
    ]


async def test_batch_applies_the_last_change_per_device_and_logs_all(store: Store) -> None:
    a, b, c = await make_devices(store, 3)
    await store.sessions.apply(
        "pod-1",
        [
            *connect(a),
            *connect(b),
            SessionChange("state", b, "unknown", {"missed_heartbeats": 1}),
            *connect(c),
            SessionChange("disconnected", c, "offline", {"reason": "closed_by_device"}),
            SessionChange("event", a, "command_sent", {"order": "x"}),
        ],
    )
    states, sessions, events = await snapshot(store)
    assert states == {a: "online", b: "unknown", c: "offline"}
    assert sessions == {a: "pod-1", b: "pod-1"}
    assert events == [
        (a, "connected"),
        (a, "online"),
        (b, "connected"),
        (b, "online"),
        (b, "unknown"),
        (c, "connected"),
        (c, "online"),
        (c, "offline"),
        (a, "command_sent"),
    ]


async def test_a_device_deleted_before_its_batch_loses_nothing_of_the_others(
    store: Store,
) -> None:
    """A device deleted (through REST) while its login waited in the recorder's
    batch: its changes go with it, everyone else's are written."""
    kept, deleted = await make_devices(store, 2)
    async with store.db.begin() as connection:
        await connection.execute(delete(devices).where(devices.c.device_id == deleted))
    await store.sessions.apply(
        "pod-1",
        [
            *connect(deleted),
            *connect(kept),
            SessionChange("event", deleted, "command_sent", {"order": "x"}),
            SessionChange("event", kept, "command_sent", {"order": "y"}),
        ],
    )
    states, sessions, events = await snapshot(store)
    assert states == {kept: "online"}
    assert sessions == {kept: "pod-1"}
    assert events == [(kept, "connected"), (kept, "online"), (kept, "command_sent")]


async def test_disconnect_of_a_session_another_instance_took_over_keeps_it(
    store: Store,
) -> None:
    (device,) = await make_devices(store, 1)
    await store.sessions.apply("pod-1", connect(device))
    await store.sessions.apply("pod-2", connect(device))  # the device moved
    await store.sessions.apply(
        "pod-1", [SessionChange("disconnected", device, "offline", {"reason": "superseded"})]
    )
    states, sessions, _ = await snapshot(store)
    assert states == {device: "online"}
    assert sessions == {device: "pod-2"}


async def test_a_storm_of_thousands_is_one_batch(store: Store) -> None:
    ids = await make_devices(store, 2500)
    await store.sessions.apply("pod-1", [c for i in ids for c in connect(i)])
    states, sessions, events = await snapshot(store)
    assert set(states.values()) == {"online"} and len(sessions) == 2500
    assert len(events) == 5000
    released = await store.sessions.release_instance("pod-1", "instance_restarted")
    assert sorted(released) == ids
    states, sessions, _ = await snapshot(store)
    assert set(states.values()) == {"offline"} and sessions == {}


async def test_the_sessions_of_an_instance_that_stopped_beating_are_released(
    store: Store,
) -> None:
    """A pod that died comes back, if at all, under another name: the instances
    still beating release what it held, and its devices go offline."""
    dead_device, live_device = await make_devices(store, 2)
    assert await store.sessions.beat("southbound-dead") is False  # a first beat
    await store.sessions.apply(
        "southbound-dead", [SessionChange("connected", dead_device, "connected", {}, address="a:1")]
    )
    await store.sessions.beat("southbound-live")
    await store.sessions.apply(
        "southbound-live", [SessionChange("connected", live_device, "connected", {}, address="b:1")]
    )
    assert await store.sessions.release_lost(silent_for=60) == []

    await silence(store, "southbound-dead", 120)  # its last beat two minutes ago
    assert await store.sessions.beat("southbound-live") is True
    released = await store.sessions.release_lost(silent_for=60)

    assert [d["device_id"] for d in released] == [dead_device]
    states, sessions, events = await snapshot(store)
    assert states == {dead_device: "offline", live_device: "online"}
    assert sessions == {live_device: "southbound-live"}
    assert events[-1] == (dead_device, "offline")
    assert await store.sessions.beat("southbound-dead") is False  # it was forgotten


async def test_instances_starting_at_once_all_get_their_first_beat(store: Store) -> None:
    """A Deployment's replicas start together: each first beat inserts its row, and
    none may fail on another's (MySQL's gap locks once made them deadlock)."""
    names = [f"southbound-{n}" for n in range(8)]
    for _ in range(5):
        assert await asyncio.gather(*(store.sessions.beat(name) for name in names)) == [
            False
        ] * len(names)
        assert await store.sessions.live_instances(60) == len(names)
        for name in names:
            await store.sessions.forget_instance(name)
