"""Reaching device sessions held by southbound pods (Kubernetes mode).

``device_sessions`` names the instance address that holds each session; the link
asks that instance's internal API. No row, or an instance that does not answer,
means the device is offline as far as the caller can tell.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from edgefleet.agent.protocol import CommandRefused, CommandResult
from edgefleet.controller.device_link import LiveView, StatusSample
from edgefleet.controller.store import Store

log = logging.getLogger("edgefleet.http_link")

NETWORK_GRACE = 2.0  # seconds on top of a command's own timeout


class HttpDeviceLink:
    def __init__(self, store: Store, token: str) -> None:
        self._store = store
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, device_id: int, action: str, timeout: float, body: Any = None
    ) -> dict[str, Any]:
        address = await self._store.sessions.address_of(device_id)
        if address is None:
            raise CommandRefused("offline")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        url = f"http://{address}/internal/v1/devices/{device_id}/{action}"
        try:
            async with self._session.request(
                method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CommandRefused("offline") from exc
        if not isinstance(answer, dict):
            raise CommandRefused("offline")
        if response.status == 409:
            kind = answer.get("refused")
            raise CommandRefused(kind if kind in CommandRefused.MESSAGES else "offline")
        if response.status != 200:
            raise CommandRefused("offline")
        return answer

    async def status(self, device_id: int) -> LiveView:
        answer = await self._call("GET", device_id, "status", NETWORK_GRACE)
        return LiveView(device_id=device_id, **answer)

    async def status_history(self, device_id: int, since: float) -> list[StatusSample]:
        answer = await self._call("GET", device_id, f"history?since={since:.0f}", NETWORK_GRACE)
        return [StatusSample(**sample) for sample in answer.get("samples", [])]

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        body = {"order": order, "params": params, "timeout": timeout}
        answer = await self._call("POST", device_id, "commands", timeout + NETWORK_GRACE, body)
        return CommandResult(answer["status"], answer["message"], answer.get("data"))

    async def push_config(self, device_ids: list[int]) -> None:
        """One call per instance holding some of the devices; an instance that does
        not answer is skipped (its devices get the configuration at their next login)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        for address, held in (await self._store.sessions.holders(device_ids)).items():
            url = f"http://{address}/internal/v1/config/push"
            try:
                timeout = aiohttp.ClientTimeout(total=NETWORK_GRACE)
                body = {"device_ids": held}
                async with self._session.post(url, json=body, timeout=timeout) as response:
                    response.raise_for_status()
            except (aiohttp.ClientError, TimeoutError):
                log.warning("configuration push not taken", extra={"address": address})

    async def deliver_queued(self, device_id: int) -> None:
        try:
            await self._call("POST", device_id, "queue", NETWORK_GRACE, {})
        except CommandRefused:
            pass  # not connected: its queue waits for its next login

    async def disconnect(self, device_id: int, reason: str) -> None:
        try:
            await self._call("POST", device_id, "disconnect", NETWORK_GRACE, {"reason": reason})
        except CommandRefused:
            pass  # no session, or its instance is gone: nothing to end
