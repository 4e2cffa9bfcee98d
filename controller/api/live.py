"""Live status: the part of the API that reads a device's session, and the last
hour of it that the session keeps for the console's chart.

The sessions are held by the southbound; ``ApiContext.link`` reaches it (in one
process under ``edgefleet serve``). Without a southbound every device is offline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    DevicePath,
    LiveStatus,
    StatusHistory,
    StatusPoint,
)

TAG = "live"
HOUR = 3600.0


def _instant(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None)


@endpoints.get(
    "/devices/{device_id}/status",
    summary="Latest status upload, derived percentages, state and last seen",
    tag=TAG,
    errors=(404, 409),
    permission="devices:read",
)
async def device_status(request: web.Request, path: DevicePath) -> LiveStatus:
    ctx = context(request)
    await ctx.store.devices.get(path.device_id, scope(request))
    view = await ctx.link.status(path.device_id)
    return LiveStatus(
        device_id=view.device_id,
        state=view.state,
        last_seen=_instant(view.last_seen),
        cpu_percent=view.cpu_percent,
        memory_used_percent=view.memory_used_percent,
        disk_used_percent=view.disk_used_percent,
        latest=view.latest,
    )


@endpoints.get(
    "/devices/{device_id}/status/history",
    summary="The last hour of a connected device's CPU, memory and disk, one point per 30 s",
    tag=TAG,
    errors=(404, 409),
    permission="devices:read",
)
async def device_status_history(request: web.Request, path: DevicePath) -> StatusHistory:
    ctx = context(request)
    await ctx.store.devices.get(path.device_id, scope(request))
    samples = await ctx.link.status_history(path.device_id, time.time() - HOUR)
    return StatusHistory(
        device_id=path.device_id,
        items=[StatusPoint(**{**vars(sample), "at": _instant(sample.at)}) for sample in samples],
    )
