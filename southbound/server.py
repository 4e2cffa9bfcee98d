"""The southbound service: the device WebSocket server and what it shares.

One port serves ``/ws`` (devices), ``/metrics`` (Prometheus) and ``/healthz``.
``Southbound`` owns the session table (device id -> connection), the live status,
the metrics and the ordered database recorder, and it answers what the northbound
asks (live status, commands): in one process through ``controller.serve``, later
over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.sessions import SessionChange
from edgefleet.southbound.connection import DeviceConnection
from edgefleet.southbound.credentials import CredentialChecker, Verdict
from edgefleet.southbound.internal_api import create_internal_app
from edgefleet.southbound.live import LiveEntry, LiveStatusBook
from edgefleet.southbound.metrics import SouthboundMetrics, label_text
from edgefleet.southbound.recorder import Recorder
from edgefleet.southbound.session import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SUPERSEDED,
    CommandFinished,
    CommandRefused,
    Timings,
)
from edgefleet.southbound.status_writer import StatusWriter
from edgefleet.southbound.throttle import LoginThrottle
from edgefleet.southbound.tokens import TokenSigner

if TYPE_CHECKING:
    # Only the type: the settings object is defined once, with the CLI that fills it.
    from edgefleet.controller.settings import SouthboundSettings

log = logging.getLogger("edgefleet.southbound")

WS_PATH = "/ws"
# Status uploads come every 15 s; the device log keeps one in this many seconds.
STATUS_EVENT_INTERVAL = 600.0
# How long a stopping instance waits for its last session changes to be written.
SHUTDOWN_WRITE_GRACE = 20.0


class Southbound:
    def __init__(self, settings: SouthboundSettings, store: Store, bcrypt_rounds: int = 12) -> None:
        self.settings = settings
        self.store = store
        self.instance = settings.instance or socket.gethostname()
        self.timings = Timings(
            login_timeout=settings.login_timeout,
            tolerance=settings.heartbeat_tolerance,
            tolerance_after_failure=settings.heartbeat_tolerance_after_failure,
            max_failures=settings.heartbeat_failures,
            max_frames_per_second=settings.max_frames_per_second,
        )
        key = settings.token_key.encode() if settings.token_key else secrets.token_bytes(32)
        self.tokens = TokenSigner(key, settings.token_ttl)
        self.credentials = CredentialChecker(
            store, self.tokens, settings.login_concurrency, bcrypt_rounds
        )
        self.throttle = LoginThrottle(
            settings.login_attempts_per_device, settings.login_failures_per_address
        )
        self.live = LiveStatusBook()
        self.metrics = SouthboundMetrics(settings.per_device_metrics)
        self.recorder = Recorder(store, self.instance)
        self.sessions: dict[int, DeviceConnection] = {}
        self._last_status_event: dict[int, float] = {}
        self._server: Server | None = None
        self._internal: web.AppRunner | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self.status_writer: StatusWriter | None = None
        """Kubernetes mode: mirrors live state into the Device resources."""
        self._writer_task: asyncio.Task[None] | None = None
        self._liveness_task: asyncio.Task[None] | None = None
        self.internal_address = f"{settings.advertise_address}:{settings.internal_port}"

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Clear what a previous run of this instance left (a crash), then listen."""
        released = await self.store.sessions.release_instance(self.instance, "instance_restarted")
        if released:
            log.warning(
                "released sessions of a previous run",
                extra={"instance": self.instance, "devices": len(released)},
            )
        await self.store.sessions.beat(self.instance)
        self._liveness_task = asyncio.create_task(self._liveness(), name="liveness")
        self._recorder_task = asyncio.create_task(self.recorder.run(), name="recorder")
        if self.status_writer is not None:
            self._writer_task = asyncio.create_task(self.status_writer.run(), name="status")
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._http,
            max_size=self.settings.max_frame_bytes,
            compression=None,  # per-connection zlib state costs ~100 KiB a device
            ping_interval=None,  # the protocol has its own heartbeat
            server_header=None,
            # A reconnect storm arrives all at once: a short accept queue would drop
            # SYNs and make the devices wait for TCP's one-second retransmission.
            backlog=4096,
        )
        if self.settings.internal_token:
            await self._start_internal_api(self.settings.internal_token)
        log.info(
            "southbound listening",
            extra={"host": self.settings.host, "port": self.port, "instance": self.instance},
        )

    async def _start_internal_api(self, token: str) -> None:
        self._internal = web.AppRunner(create_internal_app(self, token), access_log=None)
        await self._internal.setup()
        site = web.TCPSite(self._internal, self.settings.host, self.settings.internal_port)
        await site.start()
        if self.settings.internal_port == 0:  # tests: learn the port the OS chose
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.internal_address = f"{self.settings.advertise_address}:{port}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Mark every session offline (``server_shutdown``), close them with 1001."""
        if self._server is None:
            return
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness_task
        self._server.close(close_connections=False)
        await asyncio.gather(
            *(
                c.end("server_shutdown", CLOSE_GOING_AWAY, "server shutting down")
                for c in list(self.sessions.values())
            ),
            return_exceptions=True,
        )
        await self._server.wait_closed()
        if self._internal is not None:
            await self._internal.cleanup()
        try:
            async with asyncio.timeout(SHUTDOWN_WRITE_GRACE):
                await self.recorder.drained()
        except TimeoutError:
            log.error(
                "shutting down with session changes unwritten",
                extra={"changes": self.recorder.backlog},
            )
        if self._recorder_task:
            self._recorder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder_task
        if self.status_writer is not None and self._writer_task is not None:
            try:
                async with asyncio.timeout(SHUTDOWN_WRITE_GRACE):
                    await self.status_writer.drained()
            except TimeoutError:
                log.error(
                    "shutting down with Device statuses unwritten",
                    extra={"devices": self.status_writer.queue_depth},
                )
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        with contextlib.suppress(StoreError):
            await self.store.sessions.forget_instance(self.instance)
        self._server = None

    # --- HTTP beside the WebSocket -------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return None
        if path == "/metrics":
            body = await self.metrics.render(self.live)
            headers = Headers(
                [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            )
            return Response(http.HTTPStatus.OK, "OK", headers, body)
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")

    async def _handle(self, websocket: ServerConnection) -> None:
        self.metrics.connections.inc()
        connection = DeviceConnection(websocket, self)
        try:
            await connection.run()
        except Exception:
            # One device's failure never ends another's session: log and drop it.
            log.exception("device connection failed", extra={"device_id": connection.device_id})

    async def _liveness(self) -> None:
        """Beat; release the sessions of instances that stopped beating (a pod that
        died comes back under another name, if at all, and never releases them)."""
        timeout = self.settings.instance_timeout
        while True:
            await asyncio.sleep(timeout / 4)
            try:
                if not await self.store.sessions.beat(self.instance):
                    self._reclaim()
                lost = await self.store.sessions.release_lost(timeout)
            except StoreError:
                log.warning("liveness beat failed", exc_info=True)
                continue
            if not lost:
                continue
            log.warning("released sessions of lost instances", extra={"devices": len(lost)})
            if self.status_writer is not None:
                for device in lost:
                    if device["k8s_name"]:
                        self.status_writer.released(
                            device["device_id"], device["k8s_namespace"], device["k8s_name"]
                        )

    def _reclaim(self) -> None:
        """Another instance took this one for lost (its beats did not reach the
        database in time) and released its sessions: record them again."""
        log.warning("this instance was taken for lost; recording its sessions again")
        for device_id, connection in self.sessions.items():
            entry = self.live.get(device_id)
            self._record_connected(device_id, connection, entry.state if entry else "online")

    # --- session events (called by DeviceConnection) -----------------------------------

    async def attach(self, connection: DeviceConnection, verdict: Verdict) -> None:
        """A login was accepted: the newer session wins over an older one."""
        assert verdict.device_id is not None
        older = self.sessions.get(verdict.device_id)
        if older is not None and older is not connection:
            await older.end("superseded", CLOSE_SUPERSEDED, "superseded")
        self.sessions[verdict.device_id] = connection
        now = time.time()
        self.live.connected(verdict.device_id, label_text(verdict.device_id, *verdict.labels), now)
        if self.status_writer is not None and verdict.resource:
            namespace = verdict.labels[1]
            self.status_writer.connected(verdict.device_id, namespace, verdict.resource, now)

    def login_extensions(self, verdict: Verdict) -> dict[str, Any]:
        assert verdict.device_id is not None
        token, expires = self.tokens.issue(
            verdict.device_id, verdict.credential_version, time.time()
        )
        return {
            "token": token,
            "token_expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "heartbeat_interval": self.settings.heartbeat_interval,
            "status_interval": self.settings.status_interval,
        }

    def went_online(self, connection: DeviceConnection) -> None:
        device_id = connection.device_id
        assert device_id is not None
        self.metrics.sessions.inc()
        self._record_connected(device_id, connection, "online")

    def _record_connected(self, device_id: int, connection: DeviceConnection, state: str) -> None:
        """The session is held here (and reachable at the internal address)."""
        detail = {"instance": self.instance, "peer": connection.address}
        self.recorder.submit(
            SessionChange(
                "connected", device_id, "connected", detail, address=self.internal_address
            )
        )
        self.recorder.submit(SessionChange("state", device_id, state))

    def state_changed(self, connection: DeviceConnection, state: str, failures: int) -> None:
        device_id = connection.device_id
        assert device_id is not None
        if entry := self.live.get(device_id):
            entry.state = state
            if self.status_writer is not None:
                self.status_writer.state_changed(device_id, state, entry.last_seen)
        detail = {"missed_heartbeats": failures} if failures else {}
        self.recorder.submit(SessionChange("state", device_id, state, detail))

    def status_received(self, connection: DeviceConnection, data: dict[str, Any]) -> None:
        device_id = connection.device_id
        assert device_id is not None
        entry = self.live.get(device_id)
        if entry is None:
            return
        now = time.time()
        entry.update(data, now)
        if self.status_writer is not None:
            summary = {
                "cpuPercent": entry.cpu_percent,
                "memoryUsedPercent": entry.memory_used_percent,
                "diskUsedPercent": entry.disk_used_percent,
            }
            self.status_writer.status_received(device_id, summary, now)
        if now - self._last_status_event.get(device_id, 0.0) >= STATUS_EVENT_INTERVAL:
            self._last_status_event[device_id] = now
            detail = {
                "cpu_percent": entry.cpu_percent,
                "memory_used_percent": entry.memory_used_percent,
                "disk_used_percent": entry.disk_used_percent,
            }
            self.recorder.submit(SessionChange("event", device_id, "status_uploaded", detail))

    def detach(self, connection: DeviceConnection, cause: str) -> None:
        device_id = connection.device_id
        assert device_id is not None
        if self.sessions.get(device_id) is connection:
            del self.sessions[device_id]
            self.live.disconnected(device_id)
            self._last_status_event.pop(device_id, None)
            if self.status_writer is not None:
                self.status_writer.disconnected(device_id, time.time())
        self.metrics.sessions.dec()
        self.recorder.submit(SessionChange("disconnected", device_id, "offline", {"reason": cause}))

    def record_login_failure(self, device_id: int, reason: str) -> None:
        self.recorder.submit(SessionChange("event", device_id, "login_failed", {"reason": reason}))

    # --- what the northbound asks ----------------------------------------------------------

    def status(self, device_id: int) -> LiveEntry:
        """The live status of a connected device; raises ``CommandRefused("offline")``."""
        entry = self.live.get(device_id)
        if entry is None:
            raise CommandRefused("offline")
        return entry

    async def holds(self, device_id: int) -> bool:
        """Whether the device's session is this instance's, or nobody's: another
        instance holding it has the newer news about it."""
        if device_id in self.sessions:
            return True
        address = await self.store.sessions.address_of(device_id)
        return address is None or address == self.internal_address

    async def disconnect(self, device_id: int, reason: str) -> None:
        """End a device's session because the device was disabled or deleted."""
        connection = self.sessions.get(device_id)
        if connection is not None:
            await connection.end(reason, CLOSE_POLICY, f"device {reason}")

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandFinished:
        """Send a command and wait for its result; raises ``CommandRefused``."""
        connection = self.sessions.get(device_id)
        if connection is None:
            raise CommandRefused("offline")
        remote_dir = params.get("remote_dir") if order == "upload_log" else None
        detail = {"order": order}
        self.recorder.submit(SessionChange("event", device_id, "command_sent", detail))
        kind = "builtin" if order in ("restart", "upload_log") else "custom"
        try:
            finished = await connection.command(
                order,
                {} if order in ("restart", "upload_log") else params,
                timeout,
                remote_dir if isinstance(remote_dir, str) else None,
            )
        except CommandRefused as exc:
            self.metrics.commands.labels(kind, exc.kind).inc()
            raise
        self.metrics.commands.labels(kind, finished.status).inc()
        result = {"order": order, "status": finished.status, "message": finished.message}
        self.recorder.submit(SessionChange("event", device_id, "command_result", result))
        return finished
