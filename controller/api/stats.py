"""Fleet-wide numbers for dashboards and health checks of the fleet."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import context, scope
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import FleetStats


@endpoints.get(
    "/stats",
    summary="Devices by state and type, connected now, commands in the last hour",
    tag="fleet",
    permission="devices:read",
)
async def fleet_stats(request: web.Request) -> FleetStats:
    return FleetStats(**await context(request).store.stats.fleet(scope(request)))
