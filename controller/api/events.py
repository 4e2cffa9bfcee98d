"""The device log, newest first."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import DevicePath, Event, EventListQuery, Page
from edgefleet.controller.store import EventFilter


@endpoints.get(
    "/devices/{device_id}/events",
    summary="A device's event log (kept after the device is deleted)",
    tag="events",
    errors=(404,),
    permission="devices:read",
)
async def list_device_events(
    request: web.Request, path: DevicePath, query: EventListQuery
) -> Page[Event]:
    where = EventFilter(event=query.event, since=query.since, until=query.until)
    rows, total = await context(request).store.events.list(
        path.device_id, where, query.page, query.per_page, scope(request)
    )
    return Page[Event].of(rows, total, query)
