"""Where the REST API's writes go before the database.

Standalone, the database is the only truth: ``NoMirror`` does nothing. In
Kubernetes mode the Device and DeviceGroup resources are the truth, so every REST
write is made to them first (``controller.kube.mirror.KubeMirror``) and then to
the database, so that the next read is already consistent; the operator, seeing
the same change come back as a resource event, finds nothing left to do.
"""

from __future__ import annotations

from typing import Any, Protocol


class ResourceMirror(Protocol):
    """Each method runs before the matching database write and raises the store's
    errors (conflict, unavailable), so a refused write reaches neither side."""

    async def device_created(self, values: dict[str, Any], password: str) -> dict[str, Any]:
        """Called before the row is inserted; returns columns to add to it."""
        ...

    async def device_changed(
        self, device_id: int, changes: dict[str, Any], password: str | None
    ) -> None: ...

    async def device_deleted(self, device_id: int) -> None: ...

    async def device_groups_changed(self, device_id: int, group_ids: list[int]) -> None:
        """The device is about to be in exactly ``group_ids``."""
        ...

    async def member_added(self, group_id: int, device_id: int) -> None: ...

    async def member_removed(self, group_id: int, device_id: int) -> None: ...

    async def group_cleared(self, group_id: int, delete_devices: bool) -> None: ...

    async def group_created(self, values: dict[str, Any]) -> dict[str, Any]: ...

    async def group_changed(self, group_id: int, changes: dict[str, Any]) -> None: ...

    async def group_deleted(self, group_id: int) -> None: ...

    async def config_changed(
        self, kind: str, target_id: int, old: dict[str, Any], new: dict[str, Any]
    ) -> None:
        """A device's or group's (``kind``) desired configuration goes from ``old``
        to ``new``."""
        ...

    def memberships_changed(self, group_ids: set[int]) -> None:
        """After the database write: these groups gained or lost members (by hand,
        by labels or by a selector), so what the resources show of them is stale."""
        ...


class NoMirror:
    """Standalone mode: the database is all there is."""

    async def device_created(self, values: dict[str, Any], password: str) -> dict[str, Any]:
        return {}

    async def device_changed(
        self, device_id: int, changes: dict[str, Any], password: str | None
    ) -> None:
        return None

    async def device_deleted(self, device_id: int) -> None:
        return None

    async def device_groups_changed(self, device_id: int, group_ids: list[int]) -> None:
        return None

    async def member_added(self, group_id: int, device_id: int) -> None:
        return None

    async def member_removed(self, group_id: int, device_id: int) -> None:
        return None

    async def group_cleared(self, group_id: int, delete_devices: bool) -> None:
        return None

    async def group_created(self, values: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def group_changed(self, group_id: int, changes: dict[str, Any]) -> None:
        return None

    async def group_deleted(self, group_id: int) -> None:
        return None

    async def config_changed(
        self, kind: str, target_id: int, old: dict[str, Any], new: dict[str, Any]
    ) -> None:
        return None

    def memberships_changed(self, group_ids: set[int]) -> None:
        return None
