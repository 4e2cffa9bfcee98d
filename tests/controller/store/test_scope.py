"""Reading one device within a caller's groups, on SQLite and MariaDB."""

from __future__ import annotations

from edgefleet.controller.store import Store
from edgefleet.controller.store.errors import DeviceNotFound


async def test_a_group_is_in_scope_by_its_whole_id(store: Store) -> None:
    """The read of one device matches the caller's group ids as text: a group whose
    id merely contains one of them, or is a part of one, is another group, and its
    devices stay out of reach."""
    placed = {1: [12], 2: [123], 3: [312], 4: [1200], 5: [], 6: [1, 2, 12, 1200]}
    for group_id in (1, 2, 12, 123, 312, 1200):
        await store.groups.create({"group_id": group_id, "name": f"group {group_id}"})
    for device_id, groups in placed.items():
        await store.devices.create(
            {"device_id": device_id, "name": f"cam {device_id}", "type": "camera",
             "hardware_sn": f"SN{device_id}", "hardware_model": "M", "secret": "-"}
        )  # fmt: skip
        for group_id in groups:
            await store.groups.add_member(group_id, device_id)

    async def reached(scope: set[int]) -> list[int]:
        found = []
        for device_id in placed:
            try:
                found.append((await store.devices.get(device_id, frozenset(scope)))["device_id"])
            except DeviceNotFound:
                continue
        return found

    assert await reached({12}) == [1, 6]
    assert await reached({1, 2}) == [6]
    assert await reached({120, 23, 31}) == []
    assert await reached({123, 312}) == [2, 3]
    assert await reached({1200, 999}) == [4, 6]
