"""The kopf operator: Device and DeviceGroup resources into the database.

Theory of operation
-------------------
The resources are the source of truth in Kubernetes mode; the database mirrors
them for the REST reads and the southbound's logins. Every handler is a
reconcile — read the resource, read the row, write only the difference — so a
replayed event, a resume after a restart, or an update that the REST API already
wrote to the database changes nothing.

- Device created, resumed or changed: adopt its ``deviceId`` (status, or the
  annotation the REST API sets, or a new snowflake); make sure its Secret
  ``<name>-credentials`` exists (owned by the Device, so it goes with it); insert
  the row (the bcrypt hash of the Secret's password) or update the fields that
  differ; set its memberships from ``spec.groups``; take ``spec.config`` as its
  desired configuration when it differs (and have it pushed); write ``status``
  only where it differs. Groups it joined or left (by ``spec.groups`` or by its
  labels) have their counts refreshed, and if they have a configuration the
  device is sent its new one (``controller.membership_changes``).
- Device deleted (finalizer): delete the row (which logs ``deleted``), ask the
  southbound to close the session, and let kopf remove the finalizer.
- DeviceGroup likewise, by its resource name (its ``spec.config`` reaching every
  member).

kopf keeps its own progress and last-handled state in annotations under
``edgefleet.io/`` so that ``status`` holds only our fields, and no handler
returns a value (kopf would write it into ``status``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import kopf

from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.configuration import ConfigChanges
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.kube import status
from edgefleet.controller.kube.client import KubeClient, KubeConflict
from edgefleet.controller.kube.group_counts import GroupCounts
from edgefleet.controller.kube.resources import (
    DEVICE_GROUPS,
    DEVICE_ID_ANNOTATION,
    DEVICES,
    GROUP,
    SECRET_DEVICE_ID_KEY,
    SECRET_LABEL,
    SECRET_PASSWORD_KEY,
    VERSION,
    credentials_secret,
    device_row,
    group_row,
    owner_reference,
)
from edgefleet.controller.membership_changes import MembershipChanges
from edgefleet.controller.passwords import generate_password, hash_password, password_matches
from edgefleet.controller.store import Store
from edgefleet.controller.store.errors import (
    DeviceConflict,
    DeviceNotFound,
    GroupConflict,
    GroupNotFound,
)
from edgefleet.controller.store.selectors import InvalidSelector, parse_selector

GROUP_ID_ANNOTATION = f"{GROUP}/group-id"
MISSING_GROUP_RETRY = 10.0
MISSING_GROUP_RETRY_MAX = 600.0
CONCURRENCY = 32
"""Handlers running at once. Unlimited, a restart of the operator resumes every
Device at once, and 10,000 handlers would queue on the database pool. (Not kopf's
worker limit: an idle worker holds its slot for 5 s, which capped a thousand
applied Devices at 6 a second — measured with bench/operator_apply.py.)"""

log = logging.getLogger("edgefleet.operator")


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Namespaced: the chart grants no cluster-wide list of namespaces or CRDs.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    return settings


class Reconciler:
    """The handlers, with what they need; ``registry()`` wires them into kopf."""

    def __init__(
        self,
        store: Store,
        kube: KubeClient,
        link: DeviceLink,
        ids: SnowflakeGenerator,
        bcrypt_rounds: int,
        missing_group_retry: float = MISSING_GROUP_RETRY,
        metrics: ApiMetrics | None = None,
        counts: GroupCounts | None = None,
    ) -> None:
        self.metrics = metrics or ApiMetrics(count_devices=None)
        self.counts = counts or GroupCounts(store, kube)
        self.missing_group_retry = missing_group_retry
        self.store = store
        self.kube = kube
        self.link = link
        self.ids = ids
        self.bcrypt_rounds = bcrypt_rounds
        self.configs = ConfigChanges(store, link)
        self.memberships = MembershipChanges(store, self.configs, self.counts.changed)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.runs: collections.Counter[tuple[str, str, bool]] = collections.Counter()
        """Handler runs that ended, by (kind, cause, whether they patched the status):
        the cause is kopf's (``create``, ``update``, ``resume``, ``delete``) or
        ``event``. What a caller waits on to know the operator has seen an object —
        e.g. that a restarted operator has resumed them all."""

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        on = kopf.on
        on.login(registry=registry)(self.login)
        device_changed = self._counted("Device", self.device_changed)
        group_changed = self._counted("DeviceGroup", self.group_changed)
        for cause in (on.create, on.resume, on.update):
            cause(GROUP, VERSION, DEVICES, registry=registry)(device_changed)
            cause(GROUP, VERSION, DEVICE_GROUPS, registry=registry)(group_changed)
        # Raw events, not on.update: kopf would keep a copy of the Secret's data in
        # an annotation to diff against.
        on.event("", "v1", "secrets", labels={SECRET_LABEL: kopf.PRESENT}, registry=registry)(
            self._counted("Secret", self.secret_event)
        )
        on.delete(GROUP, VERSION, DEVICES, registry=registry)(
            self._counted("Device", self.device_deleted)
        )
        on.delete(GROUP, VERSION, DEVICE_GROUPS, registry=registry)(
            self._counted("DeviceGroup", self.group_deleted)
        )
        return registry

    def _counted(
        self, kind: str, handler: Callable[..., Awaitable[None]]
    ) -> Callable[..., Awaitable[None]]:
        """The handler, run within the concurrency limit and counted in
        ``edgefleet_reconciles_total`` and ``runs`` (kopf names handlers after the
        function, which ``wraps`` keeps)."""

        @functools.wraps(handler)
        async def counted(**kwargs: Any) -> None:
            try:
                async with self._slots:
                    await handler(**kwargs)
            except Exception:
                self.metrics.reconciles.labels(kind, "error").inc()
                raise
            finally:
                cause = str(kwargs.get("reason") or "event")
                patched = bool((kwargs.get("patch") or {}).get("status"))
                self.runs[kind, cause, patched] += 1
            self.metrics.reconciles.labels(kind, "ok").inc()

        return counted

    def login(self, **_: Any) -> kopf.ConnectionInfo:
        return self.kube.connection_info()

    # --- devices ---------------------------------------------------------------------

    async def device_changed(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        name: str,
        namespace: str,
        retry: int = 0,
        **_: Any,
    ) -> None:
        current = dict(body.get("status") or {})
        secret_name = credentials_secret(name)
        device_id, password, new_secret = await self._credentials(body, secret_name)
        # Memberships change with spec.groups and, for dynamic groups, with the labels.
        memberships = await self.memberships.of_devices([device_id])
        try:
            await self._upsert_device(device_id, device_row(body), password, new_secret)
        except DeviceConflict as exc:
            _set_status(patch, current, {status.DEVICE_ID: str(device_id)}, synced=str(exc))
            raise kopf.PermanentError(str(exc)) from exc
        if isinstance(config := body.spec.get("config"), dict):
            await self.configs.adopt("device", device_id, config)
        missing = await self._sync_groups(device_id, namespace, body.spec.get("groups") or [])
        await self.memberships.settle(memberships)
        wanted = {status.DEVICE_ID: str(device_id), status.CREDENTIALS_SECRET: secret_name}
        if missing:
            message = f"groups not found: {', '.join(missing)}"
            _set_status(patch, current, wanted, synced=message)
            # Doubling: a device left pointing at a deleted group must not poll forever
            # at the same pace.
            delay = min(MISSING_GROUP_RETRY_MAX, self.missing_group_retry * 2 ** min(retry, 16))
            raise kopf.TemporaryError(message, delay=delay)
        _set_status(patch, current, wanted, synced=None)

    async def _upsert_device(
        self, device_id: int, row: dict[str, Any], password: str, new_secret: bool
    ) -> None:
        """Insert the row, or update the columns that differ from the resource."""
        try:
            current = await self.store.devices.get(device_id)
        except DeviceNotFound:
            secret = await hash_password(password, self.bcrypt_rounds)
            try:
                await self.store.devices.create({**row, "device_id": device_id, "secret": secret})
                log.info("device registered", extra={"device_id": device_id})
                return
            except DeviceConflict as conflict:
                # The REST API may have inserted this very device meanwhile; if not,
                # the conflict is real (another device has this hardware).
                current = await self._inserted_meanwhile(device_id, conflict)
        changes = {k: v for k, v in row.items() if current.get(k) != v}
        if new_secret:  # someone deleted the Secret: the new password must work
            changes["secret"] = await hash_password(password, self.bcrypt_rounds)
        if changes:
            await self.store.devices.update(device_id, changes)
        if changes.get("disabled"):
            await self.link.disconnect(device_id, "disabled")

    async def _inserted_meanwhile(self, device_id: int, conflict: DeviceConflict) -> dict[str, Any]:
        try:
            return await self.store.devices.get(device_id)
        except DeviceNotFound:
            raise conflict from None

    async def _credentials(self, body: kopf.Body, secret_name: str) -> tuple[int, str, bool]:
        """The device's id, its password, and whether the Secret is new.

        The id comes from the Device's status, else the annotation the REST API
        sets, else the Secret (a run interrupted before it wrote the status, or
        credentials the user provisioned), else it is new. The password is the
        Secret's, which is created when missing.
        """
        data = await self.kube.read_secret(secret_name) or {}
        device_id = (
            _device_id(body) or _number(data.get(SECRET_DEVICE_ID_KEY)) or self.ids.next_id()
        )
        if data.get(SECRET_PASSWORD_KEY):
            return device_id, data[SECRET_PASSWORD_KEY], False
        password = generate_password()
        secret = {SECRET_PASSWORD_KEY: password, SECRET_DEVICE_ID_KEY: str(device_id)}
        try:
            await self.kube.create_secret(
                secret_name, secret, owner_reference(dict(body)), {SECRET_LABEL: body.meta.name}
            )
        except KubeConflict:  # created meanwhile (by the REST API): that one wins
            data = await self.kube.read_secret(secret_name) or {}
            if data.get(SECRET_PASSWORD_KEY):
                return device_id, data[SECRET_PASSWORD_KEY], False
            raise
        return device_id, password, True

    async def _sync_groups(self, device_id: int, namespace: str, names: list[str]) -> list[str]:
        """Make the device's memberships ``names``; return the names with no group yet."""
        found = await self.store.groups.by_resource(namespace, names)
        current = set(await self.store.groups.by_hand_of_device(device_id))
        wanted = {group["group_id"] for group in found.values()}
        if wanted != current:
            await self.store.groups.replace_of_device(device_id, sorted(wanted))
        return sorted(set(names) - found.keys())

    async def device_deleted(self, body: kopf.Body, name: str, **_: Any) -> None:
        device_id = _device_id(body)
        if device_id is None:
            return  # never reconciled: nothing of it in the database
        try:
            groups = await self.store.groups.of_device(device_id)
            await self.store.devices.delete(device_id)
        except DeviceNotFound:
            pass  # the REST API deleted the row already
        else:
            self.counts.changed(g["group_id"] for g in groups)
        await self.link.disconnect(device_id, "deleted")
        log.info("device deleted", extra={"device_id": device_id, "resource": name})

    async def secret_event(self, event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        """A credentials Secret edited by hand (``kubectl edit``) rotates the password:
        the database takes the new hash, which also ends the device's session tokens."""
        if event.get("type") != "MODIFIED":
            return
        data = {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}
        password, device_id = data.get(SECRET_PASSWORD_KEY), data.get(SECRET_DEVICE_ID_KEY)
        if not password or not device_id or not device_id.isdigit():
            return
        try:
            secret = await self.store.devices.secret_of(int(device_id))
        except DeviceNotFound:
            return
        if not await password_matches(password, secret):
            hashed = await hash_password(password, self.bcrypt_rounds)
            await self.store.devices.update(int(device_id), {"secret": hashed})
            await self.link.disconnect(int(device_id), "credentials_changed")
            log.info("password rotated from its Secret", extra={"device_id": device_id})

    # --- groups -------------------------------------------------------------------------

    async def group_changed(
        self, body: kopf.Body, patch: kopf.Patch, name: str, namespace: str, **_: Any
    ) -> None:
        current = dict(body.get("status") or {})
        row = group_row(body)
        if row["selector"] is not None:
            try:
                row["selector"] = str(parse_selector(row["selector"])) or None
            except InvalidSelector as exc:
                message = f"spec.selector: {exc}"
                _set_status(patch, current, {}, synced=message)
                raise kopf.PermanentError(message) from exc
        existing = (await self.store.groups.by_resource(namespace, [name])).get(name)
        try:
            if existing is None:
                group_id = _group_id(body) or self.ids.next_id()
                values = {**row, "group_id": group_id, "k8s_name": name, "k8s_namespace": namespace}
                await self._create_group(values)
            else:
                group_id = existing["group_id"]
                changes = {k: v for k, v in row.items() if existing.get(k) != v}
                if changes:
                    members = await self.memberships.of_group(group_id)
                    await self.store.groups.update(group_id, changes)
                    await self.memberships.settle(members)
        except GroupConflict as exc:
            _set_status(patch, current, {}, synced=str(exc))
            raise kopf.PermanentError(str(exc)) from exc
        if isinstance(config := body.spec.get("config"), dict):
            await self.configs.adopt("group", group_id, config)
        _set_status(patch, current, {status.GROUP_ID: str(group_id)}, synced=None)
        self.counts.changed([group_id])

    async def _create_group(self, values: dict[str, Any]) -> None:
        try:
            await self.store.groups.create(values)
        except GroupConflict as conflict:
            # Fine if the REST API inserted this very group a moment ago.
            try:
                await self.store.groups.get(values["group_id"])
            except GroupNotFound:
                raise conflict from None

    async def group_deleted(self, body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
        existing = (await self.store.groups.by_resource(namespace, [name])).get(name)
        if existing is not None:
            members = await self.memberships.of_group(existing["group_id"])
            try:
                await self.store.groups.delete(existing["group_id"])
            except GroupNotFound:
                return  # the REST API deleted the row meanwhile (and settled it)
            await self.memberships.settle(members)


def _device_id(body: kopf.Body) -> int | None:
    current = body.get("status") or {}
    return _number(
        current.get(status.DEVICE_ID) or body.metadata.annotations.get(DEVICE_ID_ANNOTATION)
    )


def _group_id(body: kopf.Body) -> int | None:
    current = body.get("status") or {}
    return _number(
        current.get(status.GROUP_ID) or body.metadata.annotations.get(GROUP_ID_ANNOTATION)
    )


def _number(text: Any) -> int | None:
    return int(text) if text and str(text).isdigit() else None


def _set_status(
    patch: kopf.Patch, current: dict[str, Any], wanted: dict[str, Any], synced: str | None
) -> None:
    """``synced`` is None when all is well, else why the resource could not be mirrored."""
    patch.status.update(status.reconciled(current, wanted, synced, time.time()))


@asynccontextmanager
async def running_operator(reconciler: Reconciler, namespace: str) -> AsyncIterator[None]:
    """kopf's tasks beside the API's in this event loop.

    Not ``kopf.operator()``: when it stops it cancels every task created in the
    loop since it started ("hung tasks" — kopf cannot tell its own from others),
    which would cancel the API's request handlers and the sessions. Here kopf's
    root tasks are spawned, watched, and cancelled alone; they end their own
    sub-tasks. kopf installs SIGINT/SIGTERM handlers while spawning; the caller
    installs its own afterwards (``_until_signalled``), so a signal stops the
    process in order rather than kopf alone.
    """
    ready = asyncio.Event()
    tasks = await kopf.spawn_tasks(
        registry=reconciler.registry(),
        settings=operator_settings(),
        namespaces=[namespace],
        standalone=True,
        ready_flag=ready,
    )
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({*tasks, waiter}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if waiter not in done:
            raise RuntimeError("the operator stopped while starting") from _first_error(done)
        yield
    finally:
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _first_error(tasks: set[asyncio.Task[Any]]) -> BaseException | None:
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            return task.exception()
    return None
