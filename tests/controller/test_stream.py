"""The event hub: one reader of the device log for every client, late commits
delivered late (not lost), slow clients cut off, device.status paced."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from edgefleet.controller.settings import StreamSettings
from edgefleet.controller.store import Store
from edgefleet.controller.store.schema import device_events
from edgefleet.controller.stream import STREAM_TYPES, EventHub, Subscription

T0 = datetime(2026, 11, 29, 12, 0, 0)


async def log(store: Store, *rows: dict[str, Any]) -> None:
    async with store.db.begin() as connection:
        for row in rows:
            await connection.execute(
                insert(device_events),
                {"at": T0, "detail": {}, "device_id": 7, "event": "online", **row},
            )


def subscription(limit: int = 100, **filters: Any) -> tuple[Subscription, list[str]]:
    aborted: list[str] = []
    sub = Subscription(
        scope=filters.pop("scope", None),
        device_id=filters.pop("device_id", None),
        group_id=filters.pop("group_id", None),
        types=frozenset(filters.pop("types", STREAM_TYPES)),
        limit=limit,
        abort=lambda: aborted.append("cut"),
    )
    return sub, aborted


def ids(sub: Subscription) -> list[int]:
    return [event.event_id for event in sub.queue]


async def started(store: Store) -> EventHub:
    hub = EventHub(store, StreamSettings(status_interval=15.0))
    await hub.poll()  # reads nothing yet: the log is empty
    return hub


async def test_an_event_committed_late_is_delivered_late_not_lost(store: Store) -> None:
    hub = await started(store)
    sub, _ = subscription()
    hub.subscribe(sub)
    await log(store, {"event_id": 1}, {"event_id": 3})  # 2 is still in a transaction
    await hub.poll()
    assert ids(sub) == [1, 3] and hub.cursor == 3
    await log(store, {"event_id": 2, "event": "offline"})
    await hub.poll()
    assert ids(sub) == [1, 3, 2]
    # On the wire the SSE id never goes back: the late event carries 3.
    frames = sub.take().decode().split("\n\n")
    assert [f.splitlines()[0] for f in frames if f] == ["id: 1", "id: 3", "id: 3"]


async def test_a_slow_client_is_cut_off_and_the_others_get_everything(store: Store) -> None:
    hub = await started(store)
    slow, aborted = subscription(limit=3)
    fast, _ = subscription(limit=100)
    hub.subscribe(slow)
    hub.subscribe(fast)
    await log(store, *({"event_id": i} for i in range(1, 6)))
    await hub.poll()
    assert slow.cut and aborted == ["cut"] and not slow.queue
    assert ids(fast) == [1, 2, 3, 4, 5]


async def test_device_status_is_paced_per_device(store: Store) -> None:
    hub = await started(store)
    sub, _ = subscription()
    hub.subscribe(sub)
    status = {"event": "status_uploaded"}
    await log(
        store,
        {"event_id": 1, **status, "at": T0},
        {"event_id": 2, **status, "at": T0 + timedelta(seconds=5)},
        {"event_id": 3, **status, "at": T0 + timedelta(seconds=5), "device_id": 8},
        {"event_id": 4, **status, "at": T0 + timedelta(seconds=16)},
    )
    await hub.poll()
    assert ids(sub) == [1, 3, 4]


async def test_filters_and_scope_choose_the_subscriptions(store: Store) -> None:
    hub = await started(store)
    async with store.db.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO device_groups (group_id, name, description, created_at, updated_at) "
            "VALUES (100, 'g', '', '2026-01-01', '2026-01-01')"
        )
        await connection.exec_driver_sql(
            "INSERT INTO devices (device_id, name, type, description, hardware_sn, "
            "hardware_model, secret, credential_version, state, disabled, created_at, "
            "updated_at) VALUES (7, 'd', 't', '', 's', 'm', 'x', 1, 'offline', 0, "
            "'2026-01-01', '2026-01-01')"
        )
        await connection.exec_driver_sql(
            "INSERT INTO device_group_members (device_id, group_id, created_at) "
            "VALUES (7, 100, '2026-01-01')"
        )
    scoped, _ = subscription(scope=frozenset({100}))
    elsewhere, _ = subscription(scope=frozenset({200}))
    one_device, _ = subscription(device_id=8)
    commands, _ = subscription(types={"command.result"})
    for sub in (scoped, elsewhere, one_device, commands):
        hub.subscribe(sub)
    await log(
        store,
        {"event_id": 1},
        {"event_id": 2, "device_id": 8},
        {"event_id": 3, "event": "command_result", "device_id": 8},
        {"event_id": 4, "event": "registered"},  # not a stream event
    )
    await hub.poll()
    assert ids(scoped) == [1]
    assert ids(elsewhere) == []
    assert ids(one_device) == [2, 3]
    assert ids(commands) == [3]
    hub.unsubscribe(scoped)
    assert hub.subscribers == 3
