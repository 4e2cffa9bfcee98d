"""REST writes in Kubernetes mode: first to the resources, then (by the caller) to
the database. See ``controller.mirror`` for the contract."""

from __future__ import annotations

import contextlib
from typing import Any

from edgefleet.controller.kube.client import KubeClient, KubeConflict, KubeError, KubeNotFound
from edgefleet.controller.kube.group_counts import GroupCounts
from edgefleet.controller.kube.operator import GROUP_ID_ANNOTATION
from edgefleet.controller.kube.resources import (
    API_VERSION,
    DEVICE_GROUPS,
    DEVICE_ID_ANNOTATION,
    DEVICES,
    SECRET_DEVICE_ID_KEY,
    SECRET_LABEL,
    SECRET_PASSWORD_KEY,
    credentials_secret,
    device_spec,
    group_spec,
    labels_patch,
    owner_reference,
    resource_name,
)
from edgefleet.controller.store import Store
from edgefleet.controller.store.configs import merge_diff
from edgefleet.controller.store.errors import (
    DeviceConflict,
    GroupConflict,
    GroupNotFound,
    KubernetesUnavailable,
)


class KubeMirror:
    def __init__(self, kube: KubeClient, store: Store, counts: GroupCounts | None = None) -> None:
        """``counts``: the operator's writer of ``status.deviceCount`` (none: counts
        are left to the operator's own handlers)."""
        self.kube = kube
        self.store = store
        self.counts = counts

    def memberships_changed(self, group_ids: set[int]) -> None:
        """The operator sees no membership change when the REST API wrote the
        database first (a label change reaching dynamic groups, above all): the
        counts are refreshed from here."""
        if self.counts is not None:
            self.counts.changed(group_ids)

    async def device_created(self, values: dict[str, Any], password: str) -> dict[str, Any]:
        """The Secret first, then the Device: the operator, woken by the Device, must
        find the password the REST caller is about to receive, not mint its own."""
        name = resource_name(values["name"], "device", values["device_id"])
        secret_name = credentials_secret(name)
        secret = {SECRET_PASSWORD_KEY: password, SECRET_DEVICE_ID_KEY: str(values["device_id"])}
        try:
            labels = {SECRET_LABEL: name}
            await self._call(self.kube.create_secret(secret_name, secret, labels=labels))
        except DeviceConflict as exc:
            raise DeviceConflict(f"a Secret named {secret_name!r} already exists") from exc
        metadata = {
            "name": name,
            "namespace": self.kube.namespace,
            "annotations": {DEVICE_ID_ANNOTATION: str(values["device_id"])},
        }
        if values.get("labels"):
            metadata["labels"] = values["labels"]
        body = {
            "apiVersion": API_VERSION,
            "kind": "Device",
            "metadata": metadata,
            "spec": {**_without_none(device_spec(values)), "groups": []},
        }
        try:
            created = await self._call(self.kube.create(DEVICES, body))
        except (DeviceConflict, KubernetesUnavailable) as exc:
            # Take the Secret back, or a retry of this request would find it taken.
            with contextlib.suppress(KubeError):
                await self.kube.delete_secret(secret_name)
            if isinstance(exc, DeviceConflict):
                raise DeviceConflict(f"a Device named {name!r} already exists") from exc
            raise
        await self._call(self.kube.patch_secret(secret_name, owner=owner_reference(created)))
        return {"k8s_name": name, "k8s_namespace": self.kube.namespace}

    async def device_changed(
        self, device_id: int, changes: dict[str, Any], password: str | None
    ) -> None:
        current = await self.store.devices.get(device_id)
        name = current.get("k8s_name")
        if not name:
            return  # registered before Kubernetes mode: the database alone holds it
        patch: dict[str, Any] = {}
        spec = device_spec(changes)
        if spec:
            patch["spec"] = spec
        if "labels" in changes:
            labels = labels_patch(current.get("labels") or {}, changes["labels"])
            patch["metadata"] = {"labels": labels}
        if patch:
            await self._call(self.kube.patch(DEVICES, name, patch))
        if password is not None:
            await self._call(
                self.kube.patch_secret(
                    credentials_secret(name), data={SECRET_PASSWORD_KEY: password}
                )
            )

    async def device_deleted(self, device_id: int) -> None:
        name = (await self.store.devices.get(device_id)).get("k8s_name")
        if name:
            await self._delete(DEVICES, name)

    async def device_groups_changed(self, device_id: int, group_ids: list[int]) -> None:
        name = (await self.store.devices.get(device_id)).get("k8s_name")
        if not name:
            return
        names = []
        for group_id in group_ids:
            try:
                group = await self.store.groups.get(group_id)
            except GroupNotFound:
                continue  # an unknown group changes nothing, as in the database
            if group.get("k8s_name"):
                names.append(group["k8s_name"])
        names.sort()
        await self._call(self.kube.patch(DEVICES, name, {"spec": {"groups": names}}))

    async def group_created(self, values: dict[str, Any]) -> dict[str, Any]:
        name = resource_name(values["name"], "group", values["group_id"])
        body = {
            "apiVersion": API_VERSION,
            "kind": "DeviceGroup",
            "metadata": {
                "name": name,
                "namespace": self.kube.namespace,
                "annotations": {GROUP_ID_ANNOTATION: str(values["group_id"])},
            },
            "spec": _without_none(group_spec(values)),
        }
        try:
            await self._call(self.kube.create(DEVICE_GROUPS, body))
        except DeviceConflict as exc:
            raise GroupConflict(f"a DeviceGroup named {name!r} already exists") from exc
        return {"k8s_name": name, "k8s_namespace": self.kube.namespace}

    async def group_changed(self, group_id: int, changes: dict[str, Any]) -> None:
        name = (await self.store.groups.get(group_id)).get("k8s_name")
        spec = group_spec(changes)
        if name and spec:
            await self._call(self.kube.patch(DEVICE_GROUPS, name, {"spec": spec}))

    async def config_changed(
        self, kind: str, target_id: int, old: dict[str, Any], new: dict[str, Any]
    ) -> None:
        """``spec.config`` of the Device or DeviceGroup becomes ``new``: a merge patch
        that also removes what ``old`` had and ``new`` has not."""
        if kind == "device":
            name, plural = (await self.store.devices.get(target_id)).get("k8s_name"), DEVICES
        else:
            name, plural = (await self.store.groups.get(target_id)).get("k8s_name"), DEVICE_GROUPS
        if name:
            patch = {"spec": {"config": merge_diff(old, new) if old else new}}
            await self._call(self.kube.patch(plural, name, patch))

    async def group_deleted(self, group_id: int) -> None:
        """Members drop the group from ``spec.groups`` first, or they would point at a
        group that no longer exists."""
        name = (await self.store.groups.get(group_id)).get("k8s_name")
        for device_id in await self.store.groups.by_hand_ids(group_id):
            await self.leave(device_id, group_id)
        if name:
            await self._delete(DEVICE_GROUPS, name)

    async def member_added(self, group_id: int, device_id: int) -> None:
        await self.store.groups.get(group_id)  # 404 before anything is written
        current = await self.store.groups.by_hand_of_device(device_id)
        if group_id not in current:
            await self.device_groups_changed(device_id, [*current, group_id])

    async def member_removed(self, group_id: int, device_id: int) -> None:
        await self.leave(device_id, group_id)

    async def group_cleared(self, group_id: int, delete_devices: bool) -> None:
        if delete_devices:
            for device_id in await self.store.groups.member_ids(group_id):
                await self.device_deleted(device_id)
            return
        for device_id in await self.store.groups.by_hand_ids(group_id):
            await self.leave(device_id, group_id)

    async def leave(self, device_id: int, group_id: int) -> None:
        """Drop the group from the Device's ``spec.groups`` (the memberships made by
        hand; those of a selector follow the labels)."""
        current = await self.store.groups.by_hand_of_device(device_id)
        if group_id in current:
            await self.device_groups_changed(device_id, [g for g in current if g != group_id])

    async def _delete(self, plural: str, name: str) -> None:
        try:
            await self._call(self.kube.delete(plural, name))
        except KubeNotFound:
            pass  # gone already: the database write that follows is what is left

    @staticmethod
    async def _call(request: Any) -> Any:
        """Kubernetes API failures as the API's own errors: 409 stays a conflict,
        anything else is the store being unavailable (503)."""
        try:
            return await request
        except KubeNotFound:
            raise
        except KubeConflict as exc:
            raise DeviceConflict(f"Kubernetes API: {exc}") from exc
        except KubeError as exc:
            raise KubernetesUnavailable(f"Kubernetes API: {exc}") from exc


def _without_none(spec: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            value = _without_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned
