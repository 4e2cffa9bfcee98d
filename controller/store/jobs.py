"""Jobs and their per-device executions: the state the rollout scheduler works from.

Theory of operation
-------------------
A job's executions are written with the job, one ``pending`` row per target device.
The scheduler (``controller/jobs.py``) moves them on, and every move is a
conditional UPDATE in the database, so the database alone says where a rollout is:

* ``admit`` queues a command for each admitted device *in the same transaction* as
  the execution's move from ``pending`` to ``queued`` and the job's spent admission
  credit; a second scheduler (or a restarted one) that tries the same devices finds
  them no longer ``pending`` and rolls back, so no device is ever sent a job's
  command twice.
* ``sync`` copies the state of each execution's command (the queued-command path of
  ``controller/store/commands.py`` delivers it and records the device's answer)
  onto the execution; a failure with retries left goes back to ``pending``.
* ``stop`` ends a job (canceled or aborted): its still-queued commands are canceled
  and its pending executions end, so nothing more is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edgefleet.controller.store.audit import AuditEntry, write_audit
from edgefleet.controller.store.commands import settle
from edgefleet.controller.store.configs import UNSUPPORTED
from edgefleet.controller.store.database import Database, utcnow
from edgefleet.controller.store.errors import Conflict, NotFound
from edgefleet.controller.store.pages import first_row, page_of
from edgefleet.controller.store.schema import (
    commands,
    device_configs,
    device_events,
    devices,
    job_executions,
    jobs,
)
from edgefleet.controller.store.scope import Scope, in_scope

EXECUTION_STATES = (
    "pending",
    "queued",
    "in_progress",
    "succeeded",
    "failed",
    "timed_out",
    "skipped",
    "canceled",
)
OPEN = ("pending", "queued", "in_progress")
"""Executions not ended yet."""
FAILED = ("failed", "timed_out")
"""Executions that count against the abort threshold."""
COMMAND_TO_EXECUTION = {
    "queued": "queued",
    "sent": "in_progress",
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "timed_out",
    "expired": "skipped",  # the device did not come back before the job's deadline
    "canceled": "canceled",
}
FOREVER = timedelta(days=30)
"""How long a job's command waits for its device when the job has no deadline."""


@dataclass(frozen=True)
class Admission:
    """One pass's admission for a job, as the scheduler read it."""

    job: dict[str, Any]
    rate: float
    """Devices per minute now, kept on the job for all to see."""
    credit: float
    """Devices that may be admitted now (whole ones are)."""
    now: datetime
    new_command: Callable[[int], dict[str, Any]] | None
    """The command row for a device; None for a configuration job, whose scheduler
    writes each admitted device's document after the admission (``unwritten``)."""


class _Overtaken(Exception):
    """Another scheduler changed the job or its devices meanwhile: roll back."""


class JobNotFound(NotFound):
    pass


class JobStateConflict(Conflict):
    """Pause, resume or cancel asked of a job in a state that does not allow it."""

    def __init__(self, job_id: int, state: str, wanted: str) -> None:
        super().__init__(f"job {job_id} is {state}: it cannot be {wanted}")
        self.state = state


def _visible(scope: Scope) -> list[ColumnElement[bool]]:
    """A caller limited to groups sees a job only while every device of it is one of
    theirs: a job is a list of devices, and showing one that reaches others would
    show those devices too. Outside, the job does not exist for them (404)."""
    if scope is None:
        return []
    outside = select(job_executions.c.device_id).where(
        job_executions.c.job_id == jobs.c.job_id,
        ~in_scope(job_executions.c.device_id, scope),
    )
    return [~exists(outside)]


async def _job(connection: AsyncConnection, job_id: int, scope: Scope = None) -> dict[str, Any]:
    row = await first_row(connection, select(jobs).where(jobs.c.job_id == job_id, *_visible(scope)))
    if row is None:
        raise JobNotFound(job_id)
    return row


def _progress(job_id: int, device_id: int, state: str, at: datetime) -> dict[str, Any]:
    """A ``job_progress`` device event: the live stream's ``job.progress``."""
    detail = {"job_id": str(job_id), "state": state}
    return {"device_id": device_id, "at": at, "event": "job_progress", "detail": detail}


async def _counts(connection: AsyncConnection, job_id: int) -> dict[str, int]:
    rows = await connection.execute(
        select(job_executions.c.state, func.count())
        .where(job_executions.c.job_id == job_id)
        .group_by(job_executions.c.state)
    )
    found = {state: count for state, count in rows.all()}
    return {state: found.get(state, 0) for state in EXECUTION_STATES}


async def _move(
    connection: AsyncConnection,
    job_id: int,
    row: Mapping[str, Any],
    retries: int,
    values: dict[str, Any],
) -> str:
    """Move an open execution (``row``: its ``device_id``, ``state``, ``attempts``)
    to ``values``; a failure with attempts left goes back to ``pending`` instead,
    and an ending keeps its ``finished_at`` and result. Returns the state it is in."""
    state = values["state"]
    if state in FAILED and row["attempts"] <= retries:
        values = {"state": "pending", "command_id": None, "config_version": None}
        values["started_at"] = None
    elif state in OPEN:
        values = {key: value for key, value in values.items() if key not in RESULT}
    await connection.execute(
        update(job_executions)
        .where(
            job_executions.c.job_id == job_id,
            job_executions.c.device_id == row["device_id"],
            job_executions.c.state == row["state"],
        )
        .values(**values)
    )
    return str(values["state"])


RESULT = ("finished_at", "result_status", "result_message")
"""An ended execution's columns."""


def _command_outcome(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where an execution goes by its command's state; None: it stays."""
    state = COMMAND_TO_EXECUTION[row["command_state"]]
    if state == row["state"]:
        return None
    return {
        "state": state,
        "finished_at": row["finished_at"] or utcnow(),
        "result_status": row["result_status"],
        "result_message": row["result_message"],
    }


def _configuration_outcome(
    row: Mapping[str, Any], timeout: float, deadline: datetime | None, now: datetime
) -> dict[str, Any] | None:
    """Where a written configuration execution goes now, by what its device
    reported (its ``device_configs`` row) and its clock; None: it stays.

    Success is a report of the written version (or a later one: the document was
    written again since, and the device took ours on its way); failure is a
    ``fail`` report made after the write, or a device found to be version 1. The
    timeout counts from when the device was first seen online after the write —
    an offline device is pushed its configuration at login, so it waits for the
    deadline like a queued command."""
    version = row["config_version"]

    def ended(state: str, status: str | None, message: str) -> dict[str, Any]:
        return {
            "state": state,
            "finished_at": now,
            "result_status": status,
            "result_message": message,
        }

    if row["supported"] is False:
        return ended("failed", "fail", UNSUPPORTED)
    reported = row["reported_version"]
    if row["report_status"] == "success" and reported is not None and reported >= version:
        return ended("succeeded", "success", f"the device runs configuration version {reported}")
    late = row["reported_at"] is not None and row["reported_at"] >= row["queued_at"]
    if row["report_status"] == "fail" and late:
        why = row["report_message"] or "no reason given"
        return ended("failed", "fail", f"the device could not apply version {version}: {why}")
    if row["state"] == "in_progress":
        if now >= row["started_at"] + timedelta(seconds=timeout):
            return ended("timed_out", "timeout", f"no report of version {version} in {timeout:g} s")
        return None
    if row["device_state"] == "online":
        return {"state": "in_progress", "started_at": now}
    if deadline is not None and now >= deadline:
        return ended("skipped", None, "the device did not come back before the job's deadline")
    return None


def _unwritten(job_id: int, device_id: int) -> list[ColumnElement[bool]]:
    """A configuration job's execution admitted and not written yet."""
    return [
        job_executions.c.job_id == job_id,
        job_executions.c.device_id == device_id,
        job_executions.c.state == "queued",
        job_executions.c.config_version.is_(None),
    ]


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        job: dict[str, Any],
        device_ids: Sequence[int],
        audit: AuditEntry | None = None,
        skipped: Mapping[int, str] | None = None,
    ) -> None:
        """Write the job and one execution per device: ``pending``, or ``skipped``
        from the start for the devices of ``skipped`` (device id → why)."""
        now = utcnow()
        skipped = skipped or {}
        row = {**job, "state": "running", "credit": 1.0, "credit_at": now, "created_at": now}
        row["rate"] = float(job["rollout"]["max_per_minute"])

        def execution(device_id: int) -> dict[str, Any]:
            why = skipped.get(device_id)
            return {
                "job_id": job["job_id"],
                "device_id": device_id,
                "state": "pending" if why is None else "skipped",
                "attempts": 0,
                "finished_at": None if why is None else now,
                "result_message": why,
            }

        async with self._db.begin() as connection:
            await connection.execute(jobs.insert(), [row])
            if device_ids:
                await connection.execute(
                    job_executions.insert(), [execution(d) for d in device_ids]
                )
            await write_audit(connection, audit)

    async def get(self, job_id: int, scope: Scope = None) -> dict[str, Any]:
        """The job with ``counts``: how many of its executions are in each state;
        ``JobNotFound`` when it reaches devices outside ``scope``."""
        async with self._db.read() as connection:
            row = await _job(connection, job_id, scope)
            return {**row, "counts": await _counts(connection, job_id)}

    async def list(
        self, page: int, per_page: int, scope: Scope = None
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._db.read() as connection:
            rows, total = await page_of(
                connection, jobs, _visible(scope), [jobs.c.job_id.desc()], page, per_page
            )
            return [
                {**row, "counts": await _counts(connection, row["job_id"])} for row in rows
            ], total

    async def executions(
        self, job_id: int, page: int, per_page: int, scope: Scope = None
    ) -> tuple[list[dict[str, Any]], int]:
        async with self._db.read() as connection:
            await _job(connection, job_id, scope)
            return await page_of(
                connection,
                job_executions,
                [job_executions.c.job_id == job_id],
                [job_executions.c.device_id],
                page,
                per_page,
            )

    async def running(self) -> list[dict[str, Any]]:
        """Jobs the scheduler has work for (paused ones too: their executions in
        flight still end)."""
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(jobs).where(jobs.c.state.in_(("running", "paused"))).order_by(jobs.c.job_id)
            )
            return [dict(row) for row in rows.mappings()]

    async def change_state(
        self,
        job_id: int,
        allowed: Sequence[str],
        state: str,
        wanted: str,
        audit: AuditEntry | None = None,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """Pause or resume: a conditional move from one of ``allowed``."""
        async with self._db.begin() as connection:
            row = await _job(connection, job_id, scope)
            changed = await connection.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(allowed))
                .values(state=state, credit_at=utcnow())
            )
            if changed.rowcount != 1:
                raise JobStateConflict(job_id, row["state"], wanted)
            await write_audit(connection, audit)
        return await self.get(job_id)

    async def stop(
        self, job_id: int, state: str, reason: str | None, audit: AuditEntry | None = None
    ) -> bool:
        """End a running or paused job as ``canceled`` or ``aborted``: its queued
        commands are canceled (one already sent runs to its end) and its pending
        executions end; False when it had already ended."""
        now = utcnow()
        async with self._db.begin() as connection:
            ended = await connection.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(("running", "paused")))
                .values(state=state, reason=reason, finished_at=now)
            )
            if ended.rowcount != 1:
                return False
            # Read first, then write: MariaDB refuses an UPDATE whose subquery reads
            # the table being updated.
            queued = list(
                await connection.scalars(
                    select(job_executions.c.command_id).where(
                        job_executions.c.job_id == job_id, job_executions.c.state == "queued"
                    )
                )
            )
            await connection.execute(
                update(commands)
                .where(commands.c.command_id.in_(queued), commands.c.state == "queued")
                .values(state="canceled", finished_at=now)
            )
            canceled = list(
                await connection.scalars(
                    select(commands.c.command_id).where(
                        commands.c.command_id.in_(queued), commands.c.state == "canceled"
                    )
                )
            )
            ending = and_(
                job_executions.c.job_id == job_id,
                or_(
                    job_executions.c.state == "pending",
                    and_(
                        job_executions.c.state == "queued",
                        job_executions.c.command_id.in_(canceled),
                    ),
                    # A configuration job's device admitted but not written yet.
                    and_(
                        job_executions.c.state == "queued",
                        job_executions.c.command_id.is_(None),
                        job_executions.c.config_version.is_(None),
                    ),
                ),
            )
            ended_for = select(job_executions.c.device_id).where(ending)
            devices = list(await connection.scalars(ended_for))
            await connection.execute(
                update(job_executions).where(ending).values(state="canceled", finished_at=now)
            )
            # Each execution it ended is a ``job.progress`` on the stream, as every
            # other move of an execution is: a watching console sees them end.
            if devices:
                await connection.execute(
                    device_events.insert(), [_progress(job_id, d, "canceled", now) for d in devices]
                )
            await write_audit(connection, audit)
        return True

    async def sync(self, job_id: int, retries: int) -> dict[str, int]:
        """Copy each open execution's command state onto it (a failure with
        attempts left goes back to ``pending``); returns the counts by state."""
        query = (
            select(
                job_executions.c.device_id,
                job_executions.c.state,
                job_executions.c.attempts,
                commands.c.state.label("command_state"),
                commands.c.result_status,
                commands.c.result_message,
                commands.c.finished_at,
                commands.c.command_id,
                commands.c.deadline,
                commands.c.expires_at,
            )
            .join(commands, commands.c.command_id == job_executions.c.command_id)
            .where(
                job_executions.c.job_id == job_id,
                job_executions.c.state.in_(("queued", "in_progress")),
            )
        )
        now = utcnow()

        def overdue(row: Mapping[str, Any]) -> bool:
            """A command whose result never came back (its southbound stopped, or
            the write of its result was lost), or that expired unsent: settled
            first, so its execution cannot stay open for ever."""
            if row["command_state"] == "sent":
                return row["deadline"] is not None and row["deadline"] <= now
            return row["command_state"] == "queued" and (
                row["expires_at"] is not None and row["expires_at"] <= now
            )

        return await self._sync(job_id, retries, query, _command_outcome, overdue)

    async def sync_configuration(
        self, job_id: int, retries: int, timeout: float, deadline: datetime | None
    ) -> dict[str, int]:
        """A configuration job's ``sync``: each written execution moves on by what its
        device reported (``_configuration_outcome``); returns the counts by state."""
        now = utcnow()
        query = (
            select(
                job_executions.c.device_id,
                job_executions.c.state,
                job_executions.c.attempts,
                job_executions.c.config_version,
                job_executions.c.queued_at,
                job_executions.c.started_at,
                device_configs.c.reported_version,
                device_configs.c.report_status,
                device_configs.c.report_message,
                device_configs.c.reported_at,
                device_configs.c.supported,
                devices.c.state.label("device_state"),
            )
            .select_from(job_executions)
            .outerjoin(device_configs, device_configs.c.device_id == job_executions.c.device_id)
            .outerjoin(devices, devices.c.device_id == job_executions.c.device_id)
            .where(
                job_executions.c.job_id == job_id,
                job_executions.c.state.in_(("queued", "in_progress")),
                job_executions.c.config_version.is_not(None),
            )
        )
        return await self._sync(
            job_id, retries, query, lambda row: _configuration_outcome(row, timeout, deadline, now)
        )

    async def _sync(
        self,
        job_id: int,
        retries: int,
        query: Select[Any],
        outcome: Callable[[Mapping[str, Any]], dict[str, Any] | None],
        overdue: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> dict[str, int]:
        """Move each execution ``query`` reads to its ``outcome`` (None: it stays).
        The commands of rows ``overdue`` says are past their time are settled
        first (``commands.settle``, by id) and the rows read again: rare, so the
        usual pass reads the executions once."""
        async with self._db.begin() as connection:
            rows = (await connection.execute(query)).mappings().all()
            if overdue is not None and (late := [r["command_id"] for r in rows if overdue(r)]):
                await settle(connection, commands.c.command_id.in_(late))
                rows = (await connection.execute(query)).mappings().all()
            events = []
            for row in rows:
                values = outcome(row)
                if values is not None:
                    moved = await _move(connection, job_id, row, retries, values)
                    events.append(_progress(job_id, row["device_id"], moved, utcnow()))
            if events:
                await connection.execute(device_events.insert(), events)
            return await _counts(connection, job_id)

    async def unwritten(self, job_id: int) -> list[tuple[int, datetime]]:
        """A configuration job's admitted devices whose document is not recorded as
        written (just admitted, or admitted by a scheduler that stopped before it
        recorded the write), each with when it was admitted."""
        async with self._db.read() as connection:
            found = await connection.execute(
                select(job_executions.c.device_id, job_executions.c.queued_at).where(
                    job_executions.c.job_id == job_id,
                    job_executions.c.state == "queued",
                    job_executions.c.config_version.is_(None),
                )
            )
            return [(row.device_id, row.queued_at) for row in found]

    async def written(self, job_id: int, device_id: int, version: int) -> None:
        """The device's document is written: it succeeds by reporting ``version``."""
        async with self._db.begin() as connection:
            await connection.execute(
                update(job_executions)
                .where(*_unwritten(job_id, device_id))
                .values(config_version=version, queued_at=utcnow())
            )

    async def write_failed(self, job_id: int, device_id: int, message: str) -> None:
        """The device's document could not be written (a version-1 device, a document
        over the size limit, a device deleted): it failed, no retry would help."""
        now = utcnow()
        async with self._db.begin() as connection:
            moved = await connection.execute(
                update(job_executions)
                .where(*_unwritten(job_id, device_id))
                .values(
                    state="failed", finished_at=now, result_status="fail", result_message=message
                )
            )
            if moved.rowcount == 1:
                await connection.execute(
                    device_events.insert(), [_progress(job_id, device_id, "failed", now)]
                )

    async def skip_pending(self, job_id: int) -> None:
        """The deadline passed: devices not admitted yet are skipped."""
        async with self._db.begin() as connection:
            await connection.execute(
                update(job_executions)
                .where(job_executions.c.job_id == job_id, job_executions.c.state == "pending")
                .values(state="skipped", finished_at=utcnow())
            )

    async def finish(self, job_id: int) -> bool:
        async with self._db.begin() as connection:
            done = await connection.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(("running", "paused")))
                .values(state="finished", finished_at=utcnow())
            )
            return done.rowcount == 1

    async def admit(self, admission: Admission) -> list[int]:
        """Admit up to ``int(credit)`` pending devices: queue each its command and
        spend the credit, all in one transaction that rolls back if another
        scheduler got there first. Returns the devices admitted (whose commands the
        southbound should now be told about)."""
        try:
            return await self._admit(admission)
        except _Overtaken:
            return []

    async def _admit(self, admission: Admission) -> list[int]:
        job, rate, credit, now = admission.job, admission.rate, admission.credit, admission.now
        new_command = admission.new_command
        job_id = job["job_id"]
        async with self._db.begin() as connection:
            chosen = list(
                await connection.scalars(
                    select(job_executions.c.device_id)
                    .where(job_executions.c.job_id == job_id, job_executions.c.state == "pending")
                    .order_by(job_executions.c.device_id)
                    .limit(int(credit))
                )
            )
            spent = await connection.execute(
                update(jobs)
                .where(
                    jobs.c.job_id == job_id,
                    jobs.c.state == "running",
                    jobs.c.credit_at == job["credit_at"],
                )
                .values(rate=rate, credit=credit - len(chosen), credit_at=now)
            )
            if spent.rowcount != 1:
                raise _Overtaken
            expires_at = job["deadline"] or now + FOREVER
            rows: dict[int, dict[str, Any]] = {}
            if new_command is not None:
                rows = {d: {**new_command(d), "expires_at": expires_at} for d in chosen}
            for device_id in chosen:
                moved = await connection.execute(
                    update(job_executions)
                    .where(
                        job_executions.c.job_id == job_id,
                        job_executions.c.device_id == device_id,
                        job_executions.c.state == "pending",
                    )
                    .values(
                        state="queued",
                        command_id=rows[device_id]["command_id"] if rows else None,
                        attempts=job_executions.c.attempts + 1,
                        queued_at=now,
                    )
                )
                if moved.rowcount != 1:
                    raise _Overtaken
            if rows:
                await connection.execute(
                    commands.insert(),
                    [
                        {**row, "created_at": now, "sent_at": None, "deadline": None}
                        for row in rows.values()
                    ],
                )
            if chosen:
                await connection.execute(
                    device_events.insert(), [_progress(job_id, d, "queued", now) for d in chosen]
                )
        return chosen
