"""Live status: the part of the API that reads a device's session.

The sessions are held by the southbound; ``ApiContext.link`` reaches it (in one
process under ``edgefleet serve``). Without a southbound every device is offline.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import DevicePath, LiveStatus

TAG = "live"


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
        last_seen=datetime.fromtimestamp(view.last_seen, UTC).replace(tzinfo=None),
        cpu_percent=view.cpu_percent,
        memory_used_percent=view.memory_used_percent,
        disk_used_percent=view.disk_used_percent,
        latest=view.latest,
    )
