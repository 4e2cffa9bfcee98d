"""Jobs: one action to many devices, rolled out at a safe pace (``controller.jobs``
does the work; its docstring says how the scheduler goes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from edgefleet.controller.api.context import caller, context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.errors import bad_request
from edgefleet.controller.api.schemas import (
    SELECTOR_SCHEMA,
    IdIn,
    IdOut,
    Instant,
    InstantIn,
    Page,
    PageQuery,
    ParamsModel,
    RequestModel,
)
from edgefleet.controller.store.selectors import SELECTOR_MAX

TAG = "jobs"
JobState = Literal["running", "paused", "finished", "aborted", "canceled"]
ExecutionState = Literal[
    "pending", "queued", "in_progress", "succeeded", "failed", "timed_out", "skipped", "canceled"
]


ONE_OF = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})
"""A choice of one field: the document says so (the fields are not nullable there)."""


class JobTarget(RequestModel):
    model_config = ONE_OF

    group_id: IdIn | SkipJsonSchema[None] = Field(None, description="Every member of this group.")
    # Documented as the other routes' selectors are (its syntax as a pattern, so a
    # client, or a fuzzer, can tell a valid one); parsed by the job service.
    selector: (
        Annotated[str, Field(max_length=SELECTOR_MAX), WithJsonSchema(SELECTOR_SCHEMA)]
        | SkipJsonSchema[None]
    ) = Field(None, description="Every device whose labels match this selector.")
    device_ids: (
        Annotated[list[IdIn], Field(min_length=1, max_length=100_000)] | SkipJsonSchema[None]
    ) = Field(None, description="These devices.")


class JobCommand(RequestModel):
    order: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class JobUpdate(RequestModel):
    artifact_id: IdIn


class JobConfiguration(RequestModel):
    model_config = ONE_OF

    config: dict[str, Any] | SkipJsonSchema[None] = Field(
        None, description="Each device's new own document, replacing it (as `PUT …/config`)."
    )
    patch: dict[str, Any] | SkipJsonSchema[None] = Field(
        None, description="A JSON merge patch of each device's own document (as `PATCH …/config`)."
    )


class JobAction(RequestModel):
    model_config = ONE_OF

    command: JobCommand | SkipJsonSchema[None] = Field(
        None, description="A command, queued for each device (an offline one runs it later)."
    )
    update: JobUpdate | SkipJsonSchema[None] = Field(
        None, description="The `update` command with an artifact."
    )
    configuration: JobConfiguration | SkipJsonSchema[None] = Field(
        None,
        description="A desired configuration written to each device (exactly one of "
        "`config`, `patch`); a device succeeds when it reports the version written.",
    )


class Rollout(RequestModel):
    max_per_minute: float = Field(gt=0, le=1_000_000, description="Devices admitted per minute.")
    increase_factor: float = Field(1.0, ge=1, le=100, description="Rate multiplier per step.")
    increase_after: int = Field(
        1_000_000_000, ge=1, strict=False, description="Successes between two rate increases."
    )


class AbortRule(RequestModel):
    failure_percent: float = Field(gt=0, le=100)
    min_executed: int = Field(1, ge=1, strict=False)


class JobCreate(RequestModel):
    name: str = Field(min_length=1, max_length=128)
    target: JobTarget = Field(
        description="Exactly one of `group_id`, `selector`, `device_ids`; resolved once, "
        "when the job is created (frozen: devices joining later are not part of it)."
    )
    action: JobAction = Field(description="Exactly one of `command`, `update`, `configuration`.")
    rollout: Rollout
    abort: AbortRule | None = Field(None, description="When the job aborts itself.")
    device_timeout: float = Field(
        60.0,
        gt=0,
        le=300,
        description="Seconds a device has to answer once it was sent the command (a "
        "configuration: to report it once online after it was written).",
    )
    retries: int = Field(
        0, ge=0, le=10, strict=False, description="Attempts after a failure or timeout."
    )
    deadline: InstantIn | None = Field(
        None, description="Devices not reached by then are skipped (default: 30 days)."
    )


class JobPath(ParamsModel):
    job_id: IdIn


class Job(BaseModel):
    job_id: IdOut
    name: str
    target: dict[str, Any]
    action: dict[str, Any]
    rollout: dict[str, Any]
    abort: dict[str, Any] | None
    device_timeout: float
    retries: int
    deadline: Instant | None
    state: JobState
    reason: str | None = Field(description="Why the job aborted itself.")
    rate: float = Field(description="The current rate, devices per minute.")
    counts: dict[ExecutionState, int] = Field(description="Executions by state.")
    actor: str
    created_at: Instant
    finished_at: Instant | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Job:
        action = row["action"]
        if "update" in action:
            shown = {"update": action["update"]}
        elif "configuration" in action:
            shown = {"configuration": action["configuration"]}
        else:
            shown = {"command": action}
        target = {
            key: str(value) if key == "group_id" else value for key, value in row["target"].items()
        }
        if "device_ids" in target:
            target["device_ids"] = [str(d) for d in target["device_ids"]]
        return cls(**{**row, "action": shown, "target": target})


class Execution(BaseModel):
    device_id: IdOut
    state: ExecutionState
    attempts: int
    command_id: IdOut | None
    config_version: int | None = Field(
        description="A configuration job: the version written, which the device must report."
    )
    queued_at: Instant | None
    finished_at: Instant | None
    result_status: str | None
    result_message: str | None


def _one_of(model: BaseModel, field: str) -> dict[str, Any]:
    given = {key: value for key, value in model.model_dump().items() if value is not None}
    if len(given) != 1:
        names = ", ".join(type(model).model_fields)
        raise bad_request(f"body field '{field}': give exactly one of {names}")
    return given


@endpoints.post(
    "/jobs",
    summary="Start a job: one action rolled out to many devices at a safe pace",
    tag=TAG,
    status=201,
    errors=(404,),
    permission="jobs:write",
)
async def create_job(request: web.Request, body: JobCreate) -> Job:
    spec = body.model_dump()
    spec["target"] = _one_of(body.target, "target")
    spec["action"] = _one_of(body.action, "action")
    if body.action.configuration is not None:
        spec["action"]["configuration"] = _one_of(body.action.configuration, "action.configuration")
    return Job.of(await context(request).jobs.create(caller(request), spec))


@endpoints.get("/jobs", summary="List jobs, newest first", tag=TAG, permission="devices:read")
async def list_jobs(request: web.Request, query: PageQuery) -> Page[Job]:
    rows, total = await context(request).store.jobs.list(query.page, query.per_page, scope(request))
    return Page[Job](
        items=[Job.of(row) for row in rows], page=query.page, per_page=query.per_page, total=total
    )


@endpoints.get(
    "/jobs/{job_id}",
    summary="A job: its state, rate and executions counted by state",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def get_job(request: web.Request, path: JobPath) -> Job:
    return Job.of(await context(request).store.jobs.get(path.job_id, scope(request)))


@endpoints.get(
    "/jobs/{job_id}/devices",
    summary="A job's executions: each device's state and result",
    tag=TAG,
    errors=(404,),
    permission="devices:read",
)
async def list_job_devices(
    request: web.Request, path: JobPath, query: PageQuery
) -> Page[Execution]:
    rows, total = await context(request).store.jobs.executions(
        path.job_id, query.page, query.per_page, scope(request)
    )
    return Page[Execution].of(rows, total, query)


@endpoints.post(
    "/jobs/{job_id}/pause",
    summary="Pause a running job: no more devices are admitted",
    tag=TAG,
    errors=(404, 409),
    permission="jobs:write",
)
async def pause_job(request: web.Request, path: JobPath) -> Job:
    return Job.of(await context(request).jobs.pause(caller(request), path.job_id))


@endpoints.post(
    "/jobs/{job_id}/resume",
    summary="Resume a paused job at its rate",
    tag=TAG,
    errors=(404, 409),
    permission="jobs:write",
)
async def resume_job(request: web.Request, path: JobPath) -> Job:
    return Job.of(await context(request).jobs.resume(caller(request), path.job_id))


@endpoints.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a job: its queued commands are canceled, nothing more is sent",
    tag=TAG,
    errors=(404, 409),
    permission="jobs:write",
)
async def cancel_job(request: web.Request, path: JobPath) -> Job:
    return Job.of(await context(request).jobs.cancel(caller(request), path.job_id))
