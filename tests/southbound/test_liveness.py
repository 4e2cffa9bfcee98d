"""The beat in ``southbound_instances``: each instance's share of the status-write
budget follows the instances that come, stop and die, one beat after the table
says so; an instance that cannot count falls back to a safe share."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.sessions import SessionChange
from edgefleet.southbound.events import Released, SessionEvents
from edgefleet.southbound.liveness import Liveness
from tests.conftest import silence
from tests.tcp_proxy import TcpProxy

BUDGET = 30.0
TIMEOUT = 60.0


class Instance:
    """A southbound instance's beat and its share of the budget, without the rest."""

    def __init__(self, store: Store, name: str, events: SessionEvents | None = None) -> None:
        self.budget = StatusBudget(BUDGET, stale_after=TIMEOUT)
        self.liveness = Liveness(
            store, name, TIMEOUT, TIMEOUT / 4, events or SessionEvents(), list, self.budget
        )

    async def beat(self) -> None:
        await self.liveness.beat()

    def share(self) -> float:
        return self.budget.share(time.monotonic())


async def test_the_share_follows_instances_that_join_stop_and_die(store: Store) -> None:
    names = ["southbound-0", "southbound-1", "southbound-2"]
    instances = {name: Instance(store, name) for name in names}
    for each in instances.values():
        await each.beat()
    assert instances["southbound-0"].share() == BUDGET  # it counted itself alone
    assert instances["southbound-2"].share() == BUDGET / 3  # the last saw all three
    for each in instances.values():
        await each.beat()
    assert {each.share() for each in instances.values()} == {BUDGET / 3}

    # A clean stop deletes its row: one beat of each of the others, and they grow.
    await store.sessions.forget_instance("southbound-2")
    for name in names[:2]:
        await instances[name].beat()
        assert instances[name].share() == BUDGET / 2

    # A death leaves its row; the shares hold (under the budget) until the row is
    # older than the instance timeout, then one beat grows the survivor's.
    survivor = instances["southbound-0"]
    await silence(store, "southbound-1", TIMEOUT - 5)
    await survivor.beat()
    assert survivor.share() == BUDGET / 2
    await silence(store, "southbound-1", TIMEOUT + 1)
    await survivor.beat()
    assert survivor.share() == BUDGET


async def test_a_dead_instances_devices_are_released_at_the_new_share(store: Store) -> None:
    """The beat that releases a dead instance counts again before it announces the
    released devices: their offline states go out at the survivor's new share."""
    await store.devices.create(
        {"device_id": 1, "name": "cam", "type": "camera", "hardware_sn": "SN1",
         "hardware_model": "M", "secret": "x" * 60, "k8s_name": "cam", "k8s_namespace": "fleet"}
    )  # fmt: skip
    events = SessionEvents()
    survivor = Instance(store, "southbound-0", events)
    await Instance(store, "southbound-1").beat()
    await store.sessions.apply(
        "southbound-1", [SessionChange("connected", 1, "connected", {}, address="a:1")]
    )
    await survivor.beat()
    assert survivor.share() == BUDGET / 2
    heard: list[tuple[int, float]] = []
    events.on(Released, lambda e: heard.append((e.device_id, survivor.share())))

    await silence(store, "southbound-1", TIMEOUT + 1)
    await survivor.beat()
    assert heard == [(1, BUDGET)]


async def test_an_instance_that_cannot_count_falls_back_to_half_its_share(
    store_behind_proxy: tuple[Store, TcpProxy],
) -> None:
    store, proxy = store_behind_proxy
    for name in ("southbound-1", "southbound-2"):
        await Instance(store, name).beat()
    cut_off = Instance(store, "southbound-0")
    await cut_off.beat()
    assert cut_off.share() == BUDGET / 3

    await proxy.stop()
    with pytest.raises(StoreError):
        await cut_off.beat()
    assert cut_off.share() == BUDGET / 6  # less than its fair share, never the budget

    await proxy.start()
    for _ in range(100):  # bounded: the store's breaker probes once a second
        try:
            await cut_off.beat()
            break
        except StoreError:
            await asyncio.sleep(0.1)
    assert cut_off.share() == BUDGET / 3
