"""The command history, and the queue of commands waiting for their device.

Theory of operation
-------------------
Every command gets a row when it is made. A live command is born ``sent`` and ends
with its result. A queued one is born ``queued`` with an expiry; the southbound
holding the device's session claims it (``claim``: a conditional UPDATE from
``queued`` to ``sent``, so of two claimants only one wins, whatever the process)
and sends it on the live path, then writes its result (``finish``, only over a
``sent`` row). A command is therefore handed to a device at most once: a
southbound that dies after the claim leaves it ``sent``, and once its ``deadline``
(the command's timeout plus a grace) has passed it reads as ``timed_out``.

Time-driven states are settled where they are read: every read, list and claim
first moves the rows it concerns that are past their time (``queued`` past
``expires_at`` → ``expired``, ``sent`` past ``deadline`` → ``timed_out``), so no
sweeper is needed and no reader ever sees a stale state.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import CommandNotFound, CommandNotQueued
from edgefleet.controller.store.pages import first_row, page_of
from edgefleet.controller.store.schema import commands
from edgefleet.controller.store.scope import Scope, in_scope

FINAL = {"success": "succeeded", "fail": "failed", "timeout": "timed_out"}
"""A result's status, as the state it leaves the command in."""
DELIVERY_GRACE = 10.0
"""Seconds past a sent command's timeout before it counts as timed out without a result
(its deliverer is gone); longer than any network delay between the processes."""
LOST_MESSAGE = "no result: the southbound delivering it stopped"
RESTARTED_MESSAGE = "no result: the southbound delivering it restarted; not sent again"
MAX_MESSAGE = 1024


async def settle(connection: AsyncConnection, where: ColumnElement[bool]) -> None:
    """Move the rows matching ``where`` that are past their time to their final state."""
    now = utcnow()
    await connection.execute(
        update(commands)
        .where(where, commands.c.state == "queued", commands.c.expires_at <= now)
        .values(state="expired", finished_at=now)
    )
    await connection.execute(
        update(commands)
        .where(where, commands.c.state == "sent", commands.c.deadline <= now)
        .values(
            state="timed_out", finished_at=now, result_status="timeout", result_message=LOST_MESSAGE
        )
    )


def _visible(command_id: int, scope: Scope) -> ColumnElement[bool]:
    condition = commands.c.command_id == command_id
    if scope is not None:
        condition = and_(condition, in_scope(commands.c.device_id, scope))
    return condition


def _requeue(where: ColumnElement[bool]) -> Update:
    """The claimed (``sent``) commands matching ``where`` back in the queue, unsent."""
    return (
        update(commands)
        .where(where, commands.c.state == "sent")
        .values(state="queued", sent_at=None, deadline=None, deliverer=None)
    )


FINISH = update(commands).where(
    commands.c.command_id == bindparam("b_command_id"), commands.c.state == "sent"
)
"""A sent command's result; executed with one parameter set per command."""


class CommandStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, rows: Sequence[dict[str, Any]], audit: AuditEntry | None = None) -> None:
        """Insert commands (``sent`` live ones, or ``queued`` ones with ``expires_at``)."""
        now = utcnow()
        values = []
        for row in rows:
            sent = row["state"] == "sent"
            values.append(
                {
                    "expires_at": None,
                    **row,
                    "created_at": now,
                    "sent_at": now if sent else None,
                    "deadline": self.deadline(now, row["timeout"]) if sent else None,
                }
            )
        async with self._db.begin() as connection:
            if values:
                await connection.execute(commands.insert(), values)
            await write_audit(connection, audit)

    @staticmethod
    def deadline(sent_at: datetime, timeout: float) -> datetime:
        return sent_at + timedelta(seconds=timeout + DELIVERY_GRACE)

    async def finish(
        self,
        command_id: int,
        status: str,
        message: str,
        data: Any,
        audit: AuditEntry | None = None,
    ) -> None:
        """Write a sent command's result, and its audit entry in the same commit."""
        await self.finish_many([(command_id, status, message, data)], [audit] if audit else [])

    async def finish_many(
        self, results: Sequence[tuple[int, str, str, Any]], audits: Sequence[AuditEntry] = ()
    ) -> None:
        """Write the results (``command_id``, status, message, data) of sent commands,
        and the commands' audit entries, in one transaction. A command no longer
        ``sent`` (taken for lost meanwhile) keeps the state it has."""
        now = utcnow()
        async with self._db.begin() as connection:
            for audit in audits:
                await write_audit(connection, audit)
            if results:
                await connection.execute(
                    FINISH,
                    [
                        {"b_command_id": command_id, "state": FINAL.get(status, "failed"),
                         "finished_at": now, "result_status": status,
                         "result_message": message[:MAX_MESSAGE], "result_data": data}
                        for command_id, status, message, data in results
                    ],
                )  # fmt: skip

    async def get(self, command_id: int, scope: Scope = None) -> dict[str, Any]:
        async with self._db.begin() as connection:
            await settle(connection, commands.c.command_id == command_id)
            row = await first_row(connection, select(commands).where(_visible(command_id, scope)))
        if row is None:
            raise CommandNotFound(command_id)
        return row

    async def of_device(
        self, device_id: int, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The device's commands, newest first (the caller checked the device's scope)."""
        async with self._db.begin() as connection:
            await settle(connection, commands.c.device_id == device_id)
            return await page_of(
                connection,
                commands,
                [commands.c.device_id == device_id],
                [commands.c.command_id.desc()],
                page,
                per_page,
            )

    async def cancel(
        self, command_id: int, scope: Scope = None, audit: AuditEntry | None = None
    ) -> dict[str, Any]:
        """Cancel a queued command; ``CommandNotQueued`` once it was sent or ended."""
        async with self._db.begin() as connection:
            await settle(connection, commands.c.command_id == command_id)
            canceled = await connection.execute(
                update(commands)
                .where(_visible(command_id, scope), commands.c.state == "queued")
                .values(state="canceled", finished_at=utcnow())
            )
            row = await first_row(connection, select(commands).where(_visible(command_id, scope)))
            if row is None:
                raise CommandNotFound(command_id)
            if canceled.rowcount != 1:
                raise CommandNotQueued(command_id, row["state"])
            await write_audit(connection, audit)
            return row

    # --- delivery (the southbound) -----------------------------------------------------------

    async def waiting(self, device_ids: Sequence[int], deliverer: str) -> list[int]:
        """Those of ``device_ids`` with something for ``deliverer`` to deliver: queued
        commands (expired or not), or commands it claimed and may never have sent
        (``claim`` sorts those out)."""
        if not device_ids:
            return []
        async with self._db.read() as connection:
            rows = await connection.scalars(
                select(commands.c.device_id)
                .where(
                    commands.c.device_id.in_(device_ids),
                    or_(
                        commands.c.state == "queued",
                        and_(commands.c.state == "sent", commands.c.deliverer == deliverer),
                    ),
                )
                .distinct()
            )
            return list(rows)

    async def claim(
        self, device_id: int, deliverer: str, sending: Collection[int] = ()
    ) -> dict[str, Any] | None:
        """Take the device's oldest queued command for delivery by the southbound
        instance ``deliverer`` (it becomes ``sent``); None when nothing is left.
        Expired ones are settled first, never sent.

        The device's commands ``deliverer`` claimed before and is not ``sending``
        (the device's, not the instance's: a statement per claim carries them)
        go back to the queue first, at their place. Such a claim committed while
        its caller saw it fail (a timeout that fired during the commit): nothing
        was sent, and only the deliverer, which holds the device's only delivery,
        can tell. Left ``sent``, the command would never reach the device."""
        unsent = and_(commands.c.device_id == device_id, commands.c.deliverer == deliverer)
        if sending:  # almost never: a sent command whose result could not be written
            unsent = and_(unsent, commands.c.command_id.not_in(list(sending)))
        while True:
            async with self._db.begin() as connection:
                await connection.execute(_requeue(unsent))
                await settle(connection, commands.c.device_id == device_id)
                row = await first_row(
                    connection,
                    select(commands)
                    .where(commands.c.device_id == device_id, commands.c.state == "queued")
                    .order_by(commands.c.command_id)
                    .limit(1),
                )
                if row is None:
                    return None
                now = utcnow()
                deadline = self.deadline(now, row["timeout"])
                sent = {"state": "sent", "sent_at": now, "deadline": deadline}
                sent["deliverer"] = deliverer
                taken = await connection.execute(
                    update(commands)
                    .where(commands.c.command_id == row["command_id"], commands.c.state == "queued")
                    .values(**sent)
                )
                if taken.rowcount == 1:
                    return {**row, **sent}
            # Another deliverer took it (or it was canceled) between the read and the
            # update: look for the next one.

    async def unclaim(self, command_id: int) -> None:
        """A claimed command that could not be sent (the device left, or was busy
        with another command): back in the queue, at its place, never sent."""
        async with self._db.begin() as connection:
            await connection.execute(_requeue(commands.c.command_id == command_id))

    async def abandon(self, deliverer: str) -> int:
        """A southbound instance starts: the commands it had sent without a result
        before it stopped end now (the device may have run them: never again)."""
        async with self._db.begin() as connection:
            ended = await connection.execute(
                update(commands)
                .where(commands.c.deliverer == deliverer, commands.c.state == "sent")
                .values(
                    state="timed_out",
                    finished_at=utcnow(),
                    result_status="timeout",
                    result_message=RESTARTED_MESSAGE,
                )
            )
            return ended.rowcount
