"""What follows a change of who is in which group, wherever it is made.

Memberships change by hand (the memberships routes), with a device's labels
(dynamic groups), with a group's selector, when a group is cleared or deleted, and
in Kubernetes mode with a Device's ``spec.groups``. Every such change moves the
effective configuration of the devices that joined or left a group with a
document, and the member count of the groups involved. So the writer takes a
``Snapshot`` of the memberships it can touch before the write (``of_devices``,
``of_group``) and hands it to ``settle`` once the write is done: the difference
goes to ``ConfigChanges.regrouped`` (the same bump and push as a change of the
group's document) and to whoever counts members (Kubernetes mode:
``status.deviceCount``). A write that raises is never settled: nothing follows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from edgefleet.controller.configuration import ConfigChanges, Pairs
from edgefleet.controller.store import GroupNotFound, Store

Counted = Callable[[set[int]], None]
"""Told the groups whose members changed."""


def _not_counted(group_ids: set[int]) -> None:
    return None


@dataclass(frozen=True)
class Snapshot:
    """The memberships a write can touch, as they were before it."""

    read: Callable[[], Awaitable[Pairs]]
    """Reads the same memberships again."""
    before: Pairs
    configured: set[int]
    """The groups that had a document before the write (one being deleted too)."""


class MembershipChanges:
    def __init__(
        self, store: Store, configs: ConfigChanges, counted: Counted = _not_counted
    ) -> None:
        self._store = store
        self._configs = configs
        self._counted = counted

    async def of_devices(self, device_ids: Iterable[int]) -> Snapshot:
        """Before a write that changes these devices' memberships (labels, groups)."""
        ids = sorted(set(device_ids))

        async def read() -> Pairs:
            return await self._store.groups.memberships_of(ids)

        return Snapshot(read, await read(), await self._configs.configured_groups())

    async def of_group(self, group_id: int) -> Snapshot:
        """Before a write that changes one group's members (selector, clear, delete)."""

        async def read() -> Pairs:
            try:
                return {(d, group_id) for d in await self._store.groups.member_ids(group_id)}
            except GroupNotFound:  # not there yet, or deleted: no members
                return set()

        return Snapshot(read, await read(), await self._configs.configured_groups())

    async def settle(self, snapshot: Snapshot | None) -> None:
        """After the write: count and configure what changed (None: nothing could)."""
        if snapshot is None:
            return
        after = await snapshot.read()
        joined, left = after - snapshot.before, snapshot.before - after
        if joined or left:
            self._counted({group_id for _, group_id in joined | left})
            await self._configs.regrouped(joined, left, snapshot.configured)
