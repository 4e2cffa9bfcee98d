"""The one path commands take from the northbound to the devices.

A command to one device goes to its session through the device link and comes
back as a ``CommandResult`` (or ``CommandRefused`` when the device cannot take
it now). A command to a group fans out to every member the caller may command,
at once; a member that cannot take it is one more result, not a failure of the
whole. Every command is audited: who sent which order where, and how it ended;
and every one gets a ``command_id`` and a row in the command history, finished
with its result.

The history is written beside a live command's round trip, not across it: the
row's INSERT runs while the command goes to the device, and the result (with the
audit entry) is committed after the caller has the answer, in batches shared by
the commands answered meanwhile (``store.command_results``). With both commits on
the round trip, each queued behind the recorder's writes at 10,000 devices (p99
79 ms against 18.6 ms before the history). Overlapping the INSERT alone still left
the result's commit on every round trip, and batching alone saves nothing for
commands that come one at a time; ``bench/command_latency.py`` measured the three
builds (README, "Southbound"). The price of answering first: the history lags
the answer by a commit, so its readers (``GET /commands/…``, a device's history,
the audit log) wait for ``settled`` before they read and never see ``sent`` for
a command already answered; a controller that dies within that commit leaves the
command ``sent``, later ``timed_out``, though its caller had the answer.

A queued command (``queue``) is only written, ``queued``: the southbound that
holds (or next holds) the device's session claims and delivers it through the
same session path as a live command (``controller/store/commands.py``). The
link is told at once, so a device online now gets it now.

``update`` (protocol section 9) is a built-in order whose ``params`` name an
artifact (``{"artifact_id": …}``): it is looked up here and sent as the artifact's
name, version, digest, size and download path; a device whose type the artifact
is not for is refused before anything is sent. The southbound sends it only to a
session that listed the ``update`` extension, and records the version the device
answers with as its ``business_version``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.controller.access.principal import Caller
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.store import (
    AuditEntry,
    DatabaseUnavailable,
    DeviceFilter,
    Scope,
    Store,
)
from edgefleet.controller.store.command_results import ResultWriter
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.writes import Auditor

PERMISSION = "commands:send"
NO_HISTORY = "history:not_written"
"""In a command's audit fields: it was sent, but its history row could not be written."""
RETRY_DELAY = 1.0
"""Seconds between attempts to write answered results while the database is away."""
CLOSE_WAIT = 2.0
"""Seconds a stopping controller gives the answered results to reach the history."""

log = logging.getLogger("edgefleet.commands")


class BadCommand(Exception):
    """A command the request got wrong (``status`` 400), or one that does not fit
    the device (409); ``str(exc)`` says what."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _artifact_id(params: dict[str, Any]) -> int:
    value = params.get("artifact_id")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadCommand("body field 'params.artifact_id': an update needs an artifact id")
    if set(params) != {"artifact_id"}:
        raise BadCommand("body field 'params': an update takes only artifact_id")
    return value


def misfit(artifact: dict[str, Any], device_type: str | None) -> str | None:
    """Why the artifact is not for a device of this type, or None if it is."""
    types = artifact["types"]
    if not types or device_type is None or device_type in types:
        return None
    listed = ", ".join(types)
    return f"artifact {artifact['artifact_id']} is for device types {listed}, not {device_type}"


class CommandService:
    def __init__(
        self,
        store: Store,
        link: DeviceLink,
        default_timeout: float,
        auditor: Auditor,
        ids: SnowflakeGenerator,
    ) -> None:
        self._store = store
        self._link = link
        self.default_timeout = default_timeout
        self._audit = auditor
        self._ids = ids
        self._results = ResultWriter(store, RETRY_DELAY)

    async def settled(self, command_id: int | None = None) -> None:
        """Wait until the result of ``command_id`` (None: of every command answered
        so far) is in the history: read after this, the history never says ``sent``
        for a command whose caller already has its answer."""
        await self._results.settled(command_id, self._store.db.timeout)

    async def close(self) -> None:
        """Commit the results of the commands answered, then stop writing."""
        await self._results.close(CLOSE_WAIT)

    async def send(
        self,
        caller: Caller,
        device_id: int,
        order: str,
        params: dict[str, Any],
        timeout: float | None = None,
    ) -> tuple[int | None, CommandResult]:
        """Send and wait for the result (``timeout`` seconds at most, else the
        default): its ``command_id`` (None: sent without a history row) and result.
        Raises ``CommandRefused`` (the history says so too), and ``DeviceNotFound``
        for no such device or one outside the caller's scope.

        The device is read first, and nothing is sent unless it is in the caller's
        scope. Then the history row's INSERT and the command go out together
        (``_recorded``), and the answer returns before the result's commit.

        With the database away, a device whose session is held where the link
        reaches it without the database (``edgefleet serve``) still gets its
        command from a caller who may command every device: its session is proof
        enough that it exists. A caller limited to groups waits for the database,
        which alone can say whether the device is theirs. Such a command has no
        history row: the database was away. The same holds for a command whose
        row's INSERT failed while it was on its way: the device has it, so the
        caller gets the answer, and the audit entry says the history lacks it."""
        seconds = timeout or self.default_timeout
        fields = [f"order:{order}"]
        async with self._audit.change(
            caller, "send_device_command", "device", device_id, fields
        ) as entry:
            scope = caller.principal.scope(PERMISSION)
            try:
                device = await self._store.devices.get(device_id, scope)
                artifact, params = await self.wire_params(order, params)
                if artifact is not None and (why := misfit(artifact, device["type"])):
                    raise BadCommand(why, 409)
            except DatabaseUnavailable as outage:
                if scope is not None or order == protocol.UPDATE:
                    raise
                try:
                    result = await self._link.command(device_id, order, params, seconds)
                except CommandRefused as refused:
                    if refused.kind == "offline":  # or no such device: cannot tell which
                        raise outage from None
                    raise
            else:
                command_id = self._ids.next_id()
                row = self._row(caller, command_id, device_id, order, params, seconds, "sent")
                insert = asyncio.create_task(
                    self._store.commands.create([row]), name=f"command-{command_id}"
                )
                try:
                    result = await self._link.command(device_id, order, params, seconds)
                except CommandRefused as refused:
                    if await self._recorded(insert, command_id):
                        self._results.put(command_id, CommandResult("fail", str(refused)))
                    raise
                if await self._recorded(insert, command_id):
                    self._results.put(command_id, result, self._ended(entry, result))
                    return command_id, result
                entry = replace(entry, fields=(*entry.fields, NO_HISTORY))
        await self._audit.append(self._ended(entry, result))
        return None, result

    @staticmethod
    async def _recorded(insert: asyncio.Task[None], command_id: int) -> bool:
        """Whether the command's history row was written. Its INSERT overlaps the
        trip to the device (awaiting it first made every command wait a commit
        more), so a command whose row failed was sent all the same, whatever the
        failure (the database away, a statement refused)."""
        try:
            await insert
        except Exception:
            log.warning("command sent without its history row",
                        extra={"command_id": command_id}, exc_info=True)  # fmt: skip
            return False
        return True

    async def _sent(
        self, command_id: int, device_id: int, order: str, params: dict[str, Any], seconds: float
    ) -> CommandResult:
        """Send a command whose row is written, and have the row finished with the
        result (committed after the answer)."""
        try:
            result = await self._link.command(device_id, order, params, seconds)
        except CommandRefused as refused:
            self._results.put(command_id, CommandResult("fail", str(refused)))
            raise
        self._results.put(command_id, result)
        return result

    async def queue(
        self,
        caller: Caller,
        device_id: int,
        order: str,
        params: dict[str, Any],
        timeout: float | None,
        ttl: float,
    ) -> dict[str, Any]:
        """Queue a command for the device's next session (or this one), kept ``ttl``
        seconds; returns its history row. Raises ``DeviceNotFound``."""
        seconds = timeout or self.default_timeout
        command_id = self._ids.next_id()
        fields = [f"order:{order}", "queue"]
        async with self._audit.change(
            caller, "queue_device_command", "device", device_id, fields
        ) as entry:
            device = await self._store.devices.get(device_id, caller.principal.scope(PERMISSION))
            artifact, params = await self.wire_params(order, params)
            if artifact is not None and (why := misfit(artifact, device["type"])):
                raise BadCommand(why, 409)
            row = self._row(caller, command_id, device_id, order, params, seconds, "queued")
            row["expires_at"] = utcnow() + timedelta(seconds=ttl)
            await self._store.commands.create([row], entry)
        await self._link.deliver_queued(device_id)
        return await self._store.commands.get(command_id)

    async def cancel(self, caller: Caller, command_id: int) -> dict[str, Any]:
        """Cancel a queued command; raises ``CommandNotFound`` (outside the caller's
        scope too) and ``CommandNotQueued``."""
        async with self._audit.change(caller, "cancel_command", "command", command_id) as entry:
            scope = caller.principal.scope(PERMISSION)
            return await self._store.commands.cancel(command_id, scope, entry)

    @staticmethod
    def _row(
        caller: Caller,
        command_id: int,
        device_id: int,
        order: str,
        params: dict[str, Any],
        seconds: float,
        state: str,
    ) -> dict[str, Any]:
        return {
            "command_id": command_id,
            "device_id": device_id,
            "order": order,
            "params": params,
            "timeout": seconds,
            "queued": state == "queued",
            "state": state,
            "actor": caller.principal.name[:128],
        }

    async def send_to_group(
        self,
        caller: Caller,
        group_id: int,
        order: str,
        params: dict[str, Any],
        timeout: float | None = None,
    ) -> list[tuple[int, int, CommandResult]]:
        """(device id, command id, result) of every member, all sent at once; raises
        ``GroupNotFound`` (a group outside the caller's scope too). Only the members
        the caller may command are sent it."""
        fields = [f"order:{order}"]
        async with self._audit.change(
            caller, "send_group_command", "group", group_id, fields
        ) as entry:
            rows = await self._members(group_id, caller.principal.scope(PERMISSION))
            artifact, params = await self.wire_params(order, params)
            seconds = timeout or self.default_timeout
            sent = {
                row["device_id"]: self._row(
                    caller, self._ids.next_id(), row["device_id"], order, params, seconds, "sent"
                )
                for row in rows
            }
            await self._store.commands.create(list(sent.values()))
        types = {row["device_id"]: row["type"] for row in rows}

        async def one(device_id: int, command_id: int) -> tuple[int, int, CommandResult]:
            if artifact is not None and (why := misfit(artifact, types[device_id])):
                result = CommandResult("fail", why)
                self._results.put(command_id, result)
                return device_id, command_id, result
            try:
                result = await self._sent(command_id, device_id, order, params, seconds)
            except CommandRefused as refused:
                result = CommandResult("fail", str(refused))
            return device_id, command_id, result

        results = list(
            await asyncio.gather(*(one(d, row["command_id"]) for d, row in sent.items()))
        )
        await self._audit.append(entry)
        return results

    async def queue_to_group(
        self,
        caller: Caller,
        group_id: int,
        order: str,
        params: dict[str, Any],
        timeout: float | None,
        ttl: float,
    ) -> list[tuple[int, int, CommandResult]]:
        """Queue the command for every member the caller may command, one queued
        command each (as ``queue`` does for one device), kept ``ttl`` seconds:
        (device id, command id, ``queued``) per member. A member an ``update``'s
        artifact is not for gets a failed command instead, as in ``send_to_group``.
        Raises ``GroupNotFound`` (a group outside the caller's scope too)."""
        fields = [f"order:{order}", "queue"]
        async with self._audit.change(
            caller, "queue_group_command", "group", group_id, fields
        ) as entry:
            rows = await self._members(group_id, caller.principal.scope(PERMISSION))
            artifact, params = await self.wire_params(order, params)
            seconds = timeout or self.default_timeout
            expires_at = utcnow() + timedelta(seconds=ttl)
            commands, misfits = [], {}
            for row in rows:
                why = misfit(artifact, row["type"]) if artifact is not None else None
                state = "sent" if why else "queued"
                command = self._row(
                    caller, self._ids.next_id(), row["device_id"], order, params, seconds, state
                )
                if why:
                    misfits[command["command_id"]] = why
                else:
                    command["expires_at"] = expires_at
                commands.append(command)
            await self._store.commands.create(commands, entry)
        results = []
        for command in commands:
            device_id, command_id = command["device_id"], command["command_id"]
            if command_id in misfits:
                result = CommandResult("fail", misfits[command_id])
                self._results.put(command_id, result)
            else:
                result = CommandResult("queued", f"queued for {ttl:g} s")
                await self._link.deliver_queued(device_id)
            results.append((device_id, command_id, result))
        return results

    async def _members(self, group_id: int, scope: Scope) -> list[dict[str, Any]]:
        """The group's devices (dynamic members too) within ``scope``; raises
        ``GroupNotFound`` for a group outside it."""
        group = await self._store.groups.get(group_id, scope)
        rows, _ = await self._store.devices.list(
            DeviceFilter(group_id=group_id, scope=scope),
            page=1,
            per_page=max(1, group["device_count"]),
        )
        return rows

    async def wire_params(
        self, order: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the artifact, the params to send): an ``update`` names its artifact by
        id; the device is sent what it needs to fetch and check it. Raises
        ``BadCommand`` and ``ArtifactNotFound``."""
        if order != protocol.UPDATE:
            return None, params
        artifact = await self._store.artifacts.get(_artifact_id(params))
        wire = {
            "name": artifact["name"],
            "version": artifact["version"],
            "sha256": artifact["sha256"],
            "size": artifact["size"],
            "url": protocol.artifact_url(artifact["sha256"]),
        }
        return artifact, {"artifact": wire}

    @staticmethod
    def _ended(entry: AuditEntry, result: CommandResult) -> AuditEntry:
        """The entry of a command the device answered: a ``fail`` or no answer in
        time is a failure of the command, though the request itself was fine."""
        if result.status == "timeout":
            return entry.failed("COMMAND_TIMEOUT", 504)
        if result.status != "success":
            return entry.failed("COMMAND_FAILED", entry.http_status)
        return entry
