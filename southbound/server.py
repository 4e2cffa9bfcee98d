"""The southbound service of one instance: what it is made of, and its lifecycle.

Three ports:

- the device port (``--ws-port``): ``/ws`` for devices (``wss://`` when given a
  certificate), ``/healthz`` for load balancers, and section 7's plain HTTP —
  files, ``POST /records``, the railway upload (``device_http.py``). It is one
  aiohttp application: those routes stream request bodies, which websockets'
  handshake-only HTTP cannot read; ``/ws`` is aiohttp's WebSocket, adapted to
  the connection (``websocket.py``) so the session and the connection are the
  same as before;
- the ops port (``--metrics-port``): ``/metrics``, ``/healthz`` (liveness) and
  ``/readyz`` (readiness), for Prometheus and the kubelet — never exposed to
  devices, since the metrics name every device;
- the internal port (``--internal-port``, only with ``--internal-token``): live
  status and commands for the controller in Kubernetes mode.

How it fits together: each connection (``connection.py``) runs a sans-I/O session
(``session.py``), asks the login gate (``login.py``) about its login, and attaches
to the session table (``sessions.py``); everything that happens is announced on
the session events (``events.py``), to which each feature listens — the live
status (``live.py``), the metrics (``metrics.py``), the database recorder
(``recorder.py``), the activity log (``activity.py``), data ingest
(``ingest.py``), configuration push and reports (``config_push.py``), queued
commands (``queued_commands.py``) and, in Kubernetes mode, the status writer (``status_writer.py``).
The instance beats in the database (``liveness.py``), which also sets its share of
the installation's status-write budget (``controller/kube/budget.py``); its
background tasks are owned by ``tasks.py``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from edgefleet.agent.protocol import MAX_FILE_BYTES, CommandRefused, CommandResult
from edgefleet.controller.kube.budget import StatusBudget
from edgefleet.controller.kube.status import StatusApi
from edgefleet.controller.store import Store, StoreError
from edgefleet.controller.store.blobs import FileStore, LocalFileStore
from edgefleet.southbound.activity import ActivityLog
from edgefleet.southbound.config_push import ConfigPush
from edgefleet.southbound.connection import DeviceConnection
from edgefleet.southbound.device_auth import DeviceAuth
from edgefleet.southbound.device_http import DeviceHttp
from edgefleet.southbound.events import SessionEvents
from edgefleet.southbound.ingest import Ingest
from edgefleet.southbound.internal_api import create_internal_app
from edgefleet.southbound.live import LiveStatusBook
from edgefleet.southbound.liveness import Liveness
from edgefleet.southbound.login import LoginGate
from edgefleet.southbound.metrics import SouthboundMetrics
from edgefleet.southbound.queued_commands import QueuedDelivery
from edgefleet.southbound.recorder import Recorder
from edgefleet.southbound.session import CLOSE_GOING_AWAY, Timings
from edgefleet.southbound.sessions import SessionTable
from edgefleet.southbound.status_writer import StatusWriter
from edgefleet.southbound.tasks import BackgroundTasks
from edgefleet.southbound.websocket import CLOSE_TIMEOUT, AiohttpWebSocket

if TYPE_CHECKING:
    # Only the type: the settings object is defined once, with the CLI that fills it.
    from edgefleet.controller.settings import SouthboundSettings

log = logging.getLogger("edgefleet.southbound")

WS_PATH = "/ws"
# How long a stopping instance waits for its last session changes to be written.
SHUTDOWN_WRITE_GRACE = 20.0


@dataclass(frozen=True)
class KubeStatus:
    """Kubernetes mode: where and how fast live state goes into the Device resources."""

    api: StatusApi
    budget: float
    """Status writes a second for the whole installation; this instance takes its share."""
    metrics_interval: float


class Southbound:
    def __init__(
        self,
        settings: SouthboundSettings,
        store: Store,
        bcrypt_rounds: int,
        kube: KubeStatus | None = None,
        files: FileStore | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        """``files``: where devices' files go (default: ``./edgefleet-files``)."""
        self.settings = settings
        self.store = store
        self.instance = settings.instance or socket.gethostname()
        self.internal_address = f"{settings.advertise_address}:{settings.internal_port}"
        self.timings = Timings(
            login_timeout=settings.login_timeout,
            tolerance=settings.heartbeat_tolerance,
            tolerance_after_failure=settings.heartbeat_tolerance_after_failure,
            max_failures=settings.heartbeat_failures,
            max_frames_per_second=settings.max_frames_per_second,
        )
        self.events = SessionEvents()
        self.sessions = SessionTable(self.events)
        self.gate = LoginGate(store, settings, bcrypt_rounds)
        # The listeners, each a feature; the order they subscribe in is the order
        # they hear each event.
        self.live = LiveStatusBook(settings.status_sample_interval)
        checks = self.gate.credentials.checks
        self.metrics = SouthboundMetrics(
            self.live, settings.per_device_metrics, login_queue=lambda: checks.queued
        )
        self.recorder = Recorder(store, self.instance, lambda: self.internal_address)
        self.status_writer: StatusWriter | None = None
        budget: StatusBudget | None = None
        if kube is not None:
            budget = shared = StatusBudget(kube.budget, stale_after=settings.instance_timeout)
            self.metrics.status_write_share.set_function(lambda: shared.share(time.monotonic()))
            self.status_writer = StatusWriter(
                kube.api,
                self.metrics,
                self.instance,
                budget,
                kube.metrics_interval,
                still_ours=self.holds,
            )
        self.files = files or LocalFileStore("./edgefleet-files")
        self.ingest = Ingest(store, self.events)
        self.config_push = ConfigPush(
            store, self.sessions, events=self.events if kube is not None else None
        )
        self.queued = QueuedDelivery(store, self.sessions, self.instance)
        self.device_http = DeviceHttp(
            store, self.files, DeviceAuth(self.gate), self.ingest, self.events, max_file_bytes
        )
        listeners = [
            self.live,
            self.metrics,
            self.recorder,
            ActivityLog(),
            self.ingest,
            self.config_push,
            self.queued,
            self.status_writer,
        ]
        for listener in listeners:
            if listener is not None:
                listener.subscribe(self.events)
        self.liveness = Liveness(
            store,
            self.instance,
            settings.instance_timeout,
            settings.instance_beat_interval,
            self.events,
            self._held,
            budget,
        )
        self.metrics.last_beat.set_function(lambda: self.liveness.last_beat or 0.0)
        self._tasks = BackgroundTasks()
        self._device_port: tuple[web.AppRunner, web.TCPSite] | None = None
        self._runners: list[web.AppRunner] = []
        self._stopping = False
        self._delivering: asyncio.Task[None] | None = None
        self.metrics_port = settings.metrics_port

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Clear what a previous run of this instance left (a crash), then listen."""
        released = await self.store.sessions.release_instance(self.instance, "instance_restarted")
        if released:
            log.warning(
                "released sessions of a previous run",
                extra={"instance": self.instance, "devices": len(released)},
            )
        abandoned = await self.store.commands.abandon(self.instance)
        if abandoned:
            log.warning(
                "commands sent by a previous run ended without a result",
                extra={"instance": self.instance, "commands": abandoned},
            )
        await self.liveness.beat()
        self._tasks.start(self.liveness.run(), "liveness")
        self._tasks.start(self.recorder.run(), "recorder")
        self._tasks.start(self.config_push.run(), "config-push")
        self._delivering = self._tasks.start(self.queued.run(), "queued-commands")
        if self.status_writer is not None:
            self._tasks.start(self.status_writer.run(), "status-writer")
        if self.settings.internal_token:
            app = create_internal_app(self, self.settings.internal_token)
            port = await self._listen(app, self.settings.internal_port)
            self.internal_address = f"{self.settings.advertise_address}:{port}"
        self.metrics_port = await self._listen(self._ops_app(), self.settings.metrics_port)
        runner = web.AppRunner(self._device_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.settings.host,
            self.settings.port,
            ssl_context=self._tls(),
            # A reconnect storm arrives all at once: a short accept queue would drop
            # SYNs and make the devices wait for TCP's one-second retransmission.
            backlog=4096,
        )
        await site.start()
        self._device_port = (runner, site)
        log.info(
            "southbound listening",
            extra={
                "host": self.settings.host,
                "port": self.port,
                "metrics_port": self.metrics_port,
                "tls": self.settings.tls_cert_file is not None,
                "instance": self.instance,
            },
        )

    @property
    def port(self) -> int:
        assert self._device_port is not None
        return self._device_port[1]._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Mark every session offline (``server_shutdown``), close them with 1001,
        write what is left to write, and stop the background tasks."""
        if self._device_port is None:
            return
        self._stopping = True
        device_runner, site = self._device_port
        await site.stop()  # no new connections
        checks = self.gate.credentials.checks
        checks.refuse_waiting()
        # Deliveries stop before the sessions end: a command sent and not answered
        # stays ``sent``, to be ended (never resent) when this instance starts again.
        if self._delivering is not None:
            await self._tasks.cancel(self._delivering)
        await self.sessions.end_all("server_shutdown", CLOSE_GOING_AWAY, "server shutting down")
        # Logins whose bcrypt check was running finish now, are refused (no session
        # is attached any more) and close while the connections are still read.
        await checks.idle()
        await self.ingest.stop()
        await device_runner.cleanup()
        for runner in self._runners:
            await runner.cleanup()
        await self._drain("session changes", self.recorder.drained, self.recorder.backlog)
        if self.status_writer is not None:
            writer = self.status_writer
            await self._drain("Device statuses", writer.drained, writer.queue_depth)
        await self._tasks.cancel()
        try:
            await self.store.sessions.forget_instance(self.instance)
        except StoreError:
            log.warning("could not remove this instance's beat", exc_info=True)
        await self.files.close()
        self._device_port = None

    @staticmethod
    async def _drain(what: str, drained: Any, backlog: int) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_WRITE_GRACE):
                await drained()
        except TimeoutError:
            log.error("shutting down with writes left", extra={"what": what, "left": backlog})

    def _tls(self) -> ssl.SSLContext | None:
        if self.settings.tls_cert_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        return context

    async def _listen(self, app: web.Application, port: int) -> int:
        """Serve ``app`` on ``port`` (0: any free port); returns the port."""
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, port)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # --- HTTP ----------------------------------------------------------------------------

    def _device_app(self) -> web.Application:
        """The device port: ``/ws``, ``/healthz`` and section 7's HTTP routes."""

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        app = web.Application(handler_args={"max_field_size": 8190})
        app.router.add_get(WS_PATH, self._websocket)
        app.router.add_get("/healthz", healthz)
        self.device_http.add_routes(app)
        return app

    def _ops_app(self) -> web.Application:
        async def metrics(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
            await response.prepare(request)
            async for chunk in self.metrics.exposition():
                await response.write(chunk)
            await response.write_eof()
            return response

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_request: web.Request) -> web.Response:
            if self._stopping or self._device_port is None:
                return web.Response(status=503, text="stopping\n")
            try:
                await self.store.db.ping()
            except StoreError:
                return web.Response(status=503, text="database unavailable\n")
            return web.Response(text="ok\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        return app

    # --- sessions ---------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return web.Response(status=503, text="stopping\n")
        ws = web.WebSocketResponse(
            timeout=CLOSE_TIMEOUT,  # for the device's half of the closing handshake
            max_msg_size=self.settings.max_frame_bytes,
            compress=False,  # per-connection zlib state costs ~100 KiB a device
            autoping=True,  # WebSocket pings are answered; the protocol has its own heartbeat
        )
        await ws.prepare(request)
        socket = AiohttpWebSocket(ws, request)
        await DeviceConnection(socket, self.timings, self.gate, self.sessions, self.events).run()
        return ws

    def _held(self) -> list[tuple[int, str, str]]:
        """(device id, state, peer) of every session held here."""
        held = []
        for device_id, connection in self.sessions.items():
            entry = self.live.get(device_id)
            held.append((device_id, entry.state if entry else "online", connection.peer))
        return held

    # --- what the northbound asks -----------------------------------------------------------

    def status(self, device_id: int) -> dict[str, Any]:
        """The live status of a connected device; raises ``CommandRefused("offline")``."""
        entry = self.live.get(device_id)
        if entry is None:
            raise CommandRefused("offline")
        return entry.view()

    def status_history(self, device_id: int, since: float) -> list[dict[str, Any]]:
        """A connected device's kept samples at or after ``since`` (epoch seconds);
        raises ``CommandRefused("offline")``."""
        entry = self.live.get(device_id)
        if entry is None:
            raise CommandRefused("offline")
        return entry.history_view(since)

    async def command(
        self, device_id: int, order: str, params: dict[str, Any], timeout: float
    ) -> CommandResult:
        """Send a command and wait for its result; raises ``CommandRefused``."""
        return await self.sessions.command(device_id, order, params, timeout)

    async def disconnect(self, device_id: int, reason: str) -> None:
        """End a device's session because the device was disabled or deleted."""
        await self.sessions.disconnect(device_id, reason)

    def push_config(self, device_ids: list[int]) -> None:
        """Send these devices (those connected here) their effective configuration."""
        self.config_push.push(device_ids)

    def deliver_queued(self, device_id: int) -> None:
        """Deliver the device's queued commands, if its session is here."""
        self.queued.deliver(device_id)

    async def holds(self, device_id: int) -> bool:
        """Whether the device's session is this instance's, or nobody's: another
        instance holding it has the newer news about it."""
        if device_id in self.sessions:
            return True
        address = await self.store.sessions.address_of(device_id)
        return address is None or address == self.internal_address
