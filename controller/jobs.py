"""Jobs: one action rolled out to many devices at a safe pace.

A job is created with its target resolved to a list of devices, once: the target
is **frozen at start**. A group's or a selector's members change while a rollout
runs (devices join, labels move); re-evaluating them would make the counts, the
abort percentage ("10 % of the executed devices failed") and "the job finished"
refer to a moving set, and a device that left and came back could be sent the
action twice. A frozen list is what an operator approved; a new device gets the
next job (or the desired configuration, which follows membership on its own).

The scheduler (``JobScheduler``) runs in every controller process, every
``JobSettings.tick`` seconds. Each pass, for each running or paused job, it

1. copies the state of each admitted device's command onto its execution (the
   command goes through the queued-command path, so an offline device runs it when
   it returns, until the job's deadline; its timeout is the job's
   ``device_timeout``; a failure with retries left is admitted again);
2. aborts the job, saying why, once failures reach ``failure_percent`` of the
   executed devices after at least ``min_executed``;
3. skips the devices not admitted by the deadline; ends the job when nothing is
   open;
4. admits pending devices (unless paused) from a token bucket filled at the
   current rate: ``max_per_minute``, times ``increase_factor`` for every
   ``increase_after`` successes.

A configuration job admits the same way but queues no command: each admitted
device's document is then written through ``ConfigService.apply`` (the desired-
configuration path: resource, database, push), and the version written is kept on
its execution, which succeeds when the device reports that version (step 1 reads
``device_configs`` instead of the command). A device admitted but not written — the
scheduler stopped in between — is written at the next pass, unless its document
was written since its admission and already is what the job makes it (then the
write only is recorded): a restart sends nobody the configuration twice.

All of it is state in the database, and an admission is one transaction (the
command queued, the execution moved from ``pending``, the credit spent, only if
the job's ``credit_at`` is still what this scheduler read): a controller restarted
mid-rollout goes on where the database says, and several controllers (Kubernetes
replicas) never admit a device twice nor spend the same credit twice. That
optimistic lock on the job row is why there is no lease and no kopf peering: at
most one admission per job wins each instant whoever runs it, and a replica that
dies leaves nothing to take over.

``JobSettings.tick`` and ``JobSettings.minute`` (``--job-tick``, ``--job-minute``
in ``controller/settings.py``) are the scheduler's clock: the minute is the length
of a rollout minute in seconds (60), so tests scale time down instead of sleeping
through minutes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from edgefleet.agent import protocol
from edgefleet.controller.access.principal import Caller
from edgefleet.controller.api.metrics import ApiMetrics
from edgefleet.controller.commands import BadCommand, CommandService, misfit
from edgefleet.controller.configuration import (
    ConfigService,
    ConfigUnsupported,
    patching,
    replacing,
)
from edgefleet.controller.device_link import DeviceLink
from edgefleet.controller.ids import SnowflakeGenerator
from edgefleet.controller.settings import JobSettings
from edgefleet.controller.store import (
    DatabaseUnavailable,
    DeviceConflict,
    DeviceFilter,
    DeviceNotFound,
    DocumentTooBig,
    Store,
    VersionMismatch,
)
from edgefleet.controller.store.configs import Change
from edgefleet.controller.store.database import utcnow
from edgefleet.controller.store.jobs import EXECUTION_STATES, OPEN, Admission, JobStateConflict
from edgefleet.controller.store.selectors import InvalidSelector, parse_selector
from edgefleet.controller.writes import Auditor

log = logging.getLogger("edgefleet.jobs")

PERMISSION = "jobs:write"
"""What starting, pausing, resuming and canceling a job need (ACCESS.md). Held on
some groups only, it reaches the devices of those groups: a job's target is
resolved within them, and a job that reaches other devices is not theirs."""

PAGE = 1000
MAX_RATE = 1e9
"""Devices per minute at the most, however often the rate was raised."""


def current_rate(rollout: dict[str, Any], succeeded: int) -> float:
    """Devices per minute: the start rate, raised once per ``increase_after`` successes."""
    steps = min(succeeded // rollout["increase_after"], 64)  # 100 ** 64 still fits a float
    return min(MAX_RATE, float(rollout["max_per_minute"] * rollout["increase_factor"] ** steps))


def abort_reason(abort: dict[str, Any] | None, counts: dict[str, int]) -> str | None:
    """Why the job must abort now, or None."""
    if abort is None:
        return None
    failed = counts["failed"] + counts["timed_out"]
    executed = failed + counts["succeeded"]
    if executed == 0 or executed < abort["min_executed"]:
        return None
    if failed * 100 < abort["failure_percent"] * executed:
        return None
    share = 100 * failed / executed
    return (
        f"{failed} of {executed} executed devices failed ({share:.0f} %), at or over the "
        f"abort threshold of {abort['failure_percent']:g} % (after at least "
        f"{abort['min_executed']} executed)"
    )


class JobService:
    """Creating, pausing, resuming and canceling jobs (the REST side)."""

    def __init__(
        self, store: Store, commands: CommandService, auditor: Auditor, ids: SnowflakeGenerator
    ) -> None:
        self._store = store
        self._commands = commands
        self._audit = auditor
        self._ids = ids

    async def create(self, caller: Caller, spec: dict[str, Any]) -> dict[str, Any]:
        """Resolve the target (frozen from now on) and write the job; raises
        ``BadCommand``, ``GroupNotFound``, ``DeviceNotFound``, ``ArtifactNotFound``.

        An update's artifact built for other device types is never sent to a device
        of another type: that device's execution is ``skipped`` at once, saying why
        (it is not a failure of the rollout, so it does not count towards the abort
        threshold). Devices named one by one that all misfit are a mistake in the
        request, refused whole."""
        job_id = self._ids.next_id()
        async with self._audit.change(caller, "create_job", "job", job_id) as entry:
            scope = caller.principal.scope(PERMISSION)
            types = await self._targets(spec["target"], scope)
            artifact, action = await self._action(spec["action"])
            misfits = {
                device_id: why
                for device_id, device_type in types.items()
                if artifact is not None and (why := misfit(artifact, device_type))
            }
            if misfits and len(misfits) == len(types) and "device_ids" in spec["target"]:
                why = next(iter(misfits.values()))
                raise BadCommand(f"body field 'target.device_ids': no device fits: {why}")
            job = {
                "job_id": job_id,
                "name": spec["name"],
                "target": spec["target"],
                "action": action,
                "rollout": spec["rollout"],
                "abort": spec["abort"],
                "device_timeout": spec["device_timeout"],
                "retries": spec["retries"],
                "deadline": spec["deadline"],
                "actor": caller.principal.name[:128],
            }
            await self._store.jobs.create(job, list(types), entry, misfits)
        return await self._store.jobs.get(job_id)

    async def _targets(self, target: dict[str, Any], scope: Any) -> dict[int, str | None]:
        """The target's devices, each with its type."""
        if target.get("group_id") is not None:
            await self._store.groups.get(target["group_id"], scope)
            where = DeviceFilter(group_id=target["group_id"], scope=scope)
        elif target.get("selector") is not None:
            try:
                selector = parse_selector(target["selector"])
            except InvalidSelector as bad:
                raise BadCommand(f"body field 'target.selector': {bad}") from None
            where = DeviceFilter(selector=selector, scope=scope)
        else:
            found = {}
            for device_id in sorted(set(target["device_ids"])):
                found[device_id] = (await self._store.devices.get(device_id, scope))["type"]
            return found
        pages: dict[int, str | None] = {}
        async for page in self._store.devices.pages(where, PAGE):
            pages.update((row["device_id"], row["type"]) for row in page)
        return pages

    async def _action(self, action: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the update's artifact, the command every device is sent: ``order`` and
        wire ``params``)."""
        if action.get("update") is not None:
            artifact, params = await self._commands.wire_params(protocol.UPDATE, action["update"])
            return artifact, {
                "order": protocol.UPDATE,
                "params": params,
                "update": action["update"],
            }
        if action.get("configuration") is not None:
            configuration = action["configuration"]
            try:  # the document alone over the size limit: no device could take it
                document_change(configuration)({})
            except DocumentTooBig as big:
                raise BadCommand(f"body field 'action.configuration': {big}") from None
            return None, {"configuration": configuration}
        command = action["command"]
        _, params = await self._commands.wire_params(command["order"], command["params"])
        return None, {"order": command["order"], "params": params}

    async def pause(self, caller: Caller, job_id: int) -> dict[str, Any]:
        async with self._audit.change(caller, "pause_job", "job", job_id) as entry:
            scope = caller.principal.scope(PERMISSION)
            return await self._store.jobs.change_state(
                job_id, ("running",), "paused", "paused", entry, scope
            )

    async def resume(self, caller: Caller, job_id: int) -> dict[str, Any]:
        async with self._audit.change(caller, "resume_job", "job", job_id) as entry:
            scope = caller.principal.scope(PERMISSION)
            return await self._store.jobs.change_state(
                job_id, ("paused",), "running", "resumed", entry, scope
            )

    async def cancel(self, caller: Caller, job_id: int) -> dict[str, Any]:
        async with self._audit.change(caller, "cancel_job", "job", job_id) as entry:
            row = await self._store.jobs.get(job_id, caller.principal.scope(PERMISSION))
            if not await self._store.jobs.stop(job_id, "canceled", None, entry):
                raise JobStateConflict(job_id, row["state"], "canceled")
        return await self._store.jobs.get(job_id)


def document_change(configuration: dict[str, Any]) -> Change:
    """A configuration job's change of each device's own document: ``config``
    replaces it (as ``PUT …/config``), ``patch`` merges into it (as ``PATCH``)."""
    if "config" in configuration:
        return replacing(configuration["config"])
    return patching(configuration["patch"])


class JobScheduler:
    """Moves every open job on, one pass per tick (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        link: DeviceLink,
        ids: SnowflakeGenerator,
        settings: JobSettings,
        configs: ConfigService,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._link = link
        self._ids = ids
        self._settings = settings
        self._configs = configs

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except DatabaseUnavailable as outage:
                log.warning("job scheduler waits for the database", extra={"error": str(outage)})
            except Exception:
                # Whatever else went wrong (a Kubernetes API refusing a configuration
                # job's write, say) fails this pass, not the scheduler: the database
                # says where every job is, so the next pass starts over from there.
                log.exception("job scheduler pass failed")
            await asyncio.sleep(self._settings.tick)

    async def tick(self) -> None:
        totals = dict.fromkeys(EXECUTION_STATES, 0)
        admitted = aborted = 0
        for job in await self._store.jobs.running():
            counts, done, gone = await self._advance(job)
            for state, count in counts.items():
                totals[state] += count
            admitted += done
            aborted += gone
        if self._metrics is not None:
            self._metrics.job_progress(totals, admitted, aborted)

    async def _advance(self, job: dict[str, Any]) -> tuple[dict[str, int], int, int]:
        """The job's counts by state after the pass, the devices admitted, and
        whether it aborted (1) or not (0)."""
        jobs = self._store.jobs
        job_id = job["job_id"]
        configuration = job["action"].get("configuration")
        if configuration is not None:
            await self._write(job_id, configuration)
            counts = await jobs.sync_configuration(
                job_id, job["retries"], job["device_timeout"], job["deadline"]
            )
        else:
            counts = await jobs.sync(job_id, job["retries"])
        reason = abort_reason(job["abort"], counts)
        if reason is not None:
            if await jobs.stop(job_id, "aborted", reason):
                log.warning("job aborted", extra={"job_id": job_id, "reason": reason})
                return counts, 0, 1
            return counts, 0, 0
        now = utcnow()
        if job["deadline"] is not None and now >= job["deadline"] and counts["pending"]:
            await jobs.skip_pending(job_id)
            counts["skipped"] += counts["pending"]
            counts["pending"] = 0
        if not any(counts[state] for state in OPEN):
            await jobs.finish(job_id)
            return counts, 0, 0
        if job["state"] != "running" or not counts["pending"]:
            return counts, 0, 0
        admitted = await self._admit(job, counts, now)
        if configuration is not None and admitted:
            await self._write(job_id, configuration)
        return counts, admitted, 0

    async def _write(self, job_id: int, configuration: dict[str, Any]) -> None:
        """Write the document of every admitted device of a configuration job that
        has none written yet: those just admitted, and any whose scheduler stopped
        between admitting and recording the write (``ConfigService.apply`` finds
        those written already, and does not write them again)."""
        change = document_change(configuration)
        for device_id, admitted_at in await self._store.jobs.unwritten(job_id):
            try:
                version = await self._configs.apply(device_id, change, admitted_at)
            except (VersionMismatch, DeviceConflict) as meanwhile:
                # Written by someone else meanwhile: computed again at the next pass.
                log.info(
                    "configuration job write raced",
                    extra={"job_id": job_id, "device_id": device_id, "error": str(meanwhile)},
                )
            except (ConfigUnsupported, DocumentTooBig, DeviceNotFound) as problem:
                await self._store.jobs.write_failed(job_id, device_id, str(problem))
            else:
                await self._store.jobs.written(job_id, device_id, version)

    async def _admit(self, job: dict[str, Any], counts: dict[str, int], now: datetime) -> int:
        rate = current_rate(job["rollout"], counts["succeeded"])
        minute = self._settings.minute
        elapsed = max(0.0, (now - job["credit_at"]).total_seconds())
        # The bucket holds at most two ticks' worth (and at least one device), so a
        # pause or a stopped controller never turns into a burst. One tick's worth
        # was too little: passes are a tick *plus* the pass's own work apart, and
        # what accrued over that work was thrown away, so a job ran under its rate
        # (bench/jobs.py measured 381 a minute for 600 on a busy core).
        cap = max(1.0, rate * 2 * self._settings.tick / minute)
        credit = min(cap, job["credit"] + rate * elapsed / minute)
        if credit < 1.0:
            return 0
        action = job["action"]

        def command(device_id: int) -> dict[str, Any]:
            return {
                "command_id": self._ids.next_id(),
                "device_id": device_id,
                "order": action["order"],
                "params": action["params"],
                "timeout": job["device_timeout"],
                "queued": True,
                "state": "queued",
                "actor": f"job {job['job_id']}"[:128],
            }

        new_command = None if "configuration" in action else command
        admitted = await self._store.jobs.admit(Admission(job, rate, credit, now, new_command))
        if new_command is None:
            return len(admitted)
        for device_id in admitted:
            await self._link.deliver_queued(device_id)
        return len(admitted)
