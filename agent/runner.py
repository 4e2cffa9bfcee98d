"""The agent: the sans-I/O session of ``core.py`` on a real WebSocket.

Theory of operation
-------------------
``Agent.run_async`` is the reconnect loop: pick a login (the saved token when
there is one, else the password), open the WebSocket, converse until the session
ends, then decide — restart, stop, retry at once with the password (the token was
refused), or wait out the backoff and try again; after a failed attempt it retries
``max_retries`` times (-1: for ever), then gives up. An attempt that got through
login starts the count again.

One conversation is one loop over one inbox queue. A reader task puts incoming
frames there; status collection (psutil, in a thread) and commands (each in its
own task) put their results there; ``stop()`` puts a stop there. The loop hands
each item to the session, sends what the session queued, acts on its events, and
otherwise sleeps until the session's next deadline. Only this loop touches the
session, so there is nothing to lock.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from edgefleet.agent import core, protocol, status
from edgefleet.agent.commands import Command, CommandRegistry, Outcome
from edgefleet.agent.configuration import ConfigHandler, DeviceConfig
from edgefleet.agent.file_upload import FileUploader, basic
from edgefleet.agent.oplog import OperationLog, logger
from edgefleet.agent.record_queue import RecordQueue
from edgefleet.agent.settings import AgentSettings, SettingsError, read_secret
from edgefleet.agent.spool import SCAN_INTERVAL, SpoolFolder
from edgefleet.agent.state import SavedState, StateFile
from edgefleet.agent.tls import client_context
from edgefleet.agent.updates import Updater, Updates
from edgefleet.agent.uplink import Uplink
from edgefleet.agent.upload import SftpTarget, UploadError, upload_log

StatusHook = Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]]

CLOSE_GOING_AWAY = 1001
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
"""Seconds to wait for the server's side of the closing handshake: a restart or a
shutdown should not hang on a network that has gone quiet."""

DATA_ANSWER_TIMEOUT = 15.0
"""Seconds a batch of records waits for its answer before it is sent again later."""

# How a connection ended, as the reconnect loop sees it.
STOPPED = "stopped"
RESTART = "restart"
TOKEN_REFUSED = "token_refused"


def reexec() -> None:
    """Replace this process with a fresh copy of itself, same interpreter, same
    arguments (``sys.orig_argv`` keeps ``-m agent.cli`` and interpreter flags)."""
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        restart: Callable[[], None] = reexec,
        log_to_stderr: bool = True,
    ) -> None:
        self.settings = settings
        self.commands = CommandRegistry()
        self.status_hook: StatusHook | None = None
        self.exit_code: int | None = None
        """Set when ``run_async`` returns: 0 stopped, 1 gave up."""
        self._restart = restart
        self._restart_requested = False
        self._state = StateFile(Path(settings.state_dir).expanduser())
        self._saved = SavedState()
        self._known_hosts = (
            Path(settings.sftp_known_hosts).expanduser() if settings.sftp_check_host_key else None
        )
        self.oplog = OperationLog(Path(settings.log_dir).expanduser(), stderr=log_to_stderr)
        self._backoff = core.Backoff(settings.reconnect_delay, settings.reconnect_max_delay)
        self._stopping = asyncio.Event()  # binds to a loop on first use, not here
        self._inbox: asyncio.Queue[tuple[str, Any]] | None = None
        state_dir = Path(settings.state_dir).expanduser()
        self.config = DeviceConfig(state_dir, settings.config_hook)
        self.queue = RecordQueue(state_dir / "queue", int(settings.queue_max_mb * 1024 * 1024))
        device_port = FileUploader(
            settings.server, self._authorization, lambda: client_context(settings)
        )
        self.uplink = Uplink(
            self.queue, device_port, core.Backoff(1.0, settings.reconnect_max_delay)
        )
        self.spool = (
            SpoolFolder(Path(settings.spool_dir).expanduser(), self.queue)
            if settings.spool_dir
            else None
        )
        if settings.commands:
            self.commands.load_module(settings.commands)
        self._updater: Updater | None = None
        self.updates = Updates(
            state_dir / "updates",
            device_port,
            settings.download_retries,
            settings.reconnect_delay,
        )

    @classmethod
    def from_env(cls, argv: list[str] | None = None) -> Agent:
        """Settings from flags (``argv``, default none), ``EDGEFLEET_AGENT_*`` and
        ``--config``: the library's way to be configured like the CLI."""
        from edgefleet.agent.cli import parse

        return cls(parse(argv or []))

    @property
    def extensions(self) -> frozenset[str]:
        """What this agent tells the server it speaks (section 6)."""
        metered = {"metered"} if self.settings.metered else set()
        config = {"config"} if self.config.wanted else set()
        update = {protocol.UPDATE} if self._updater or self.settings.installer else set()
        return frozenset({"token", "request_id", "data", *metered, *config, *update})

    def command(self, name: str) -> Callable[[Command], Command]:
        """Decorator registering a custom command: ``@agent.command("set_exposure")``."""
        return self.commands.command(name)

    def updater(self, function: Updater) -> Updater:
        """Decorator registering the device maker's installer of updates (section 9):
        ``@agent.updater`` over ``def install(path, artifact) -> str | None``. It gets
        the downloaded file, already checked against its SHA-256, and the artifact
        (name, version, sha256, size); it returns the version now running (None:
        the artifact's) or raises to fail. With it the agent takes updates."""
        self._updater = function
        return function

    async def publish(
        self,
        kind: str,
        payload: dict[str, Any],
        files: list[str | Path] | tuple[str | Path, ...] = (),
        record_id: str | None = None,
        at: datetime | str | None = None,
    ) -> str:
        """Queue a record for the cloud; returns its ``record_id`` once it is on disk
        (the files are kept in the queue, so the caller may delete its copies). It
        goes up when the device is online, in order, and leaves the queue only when
        the cloud has answered for it. Raises ``protocol.RecordRejected`` for a
        record the cloud would refuse (a bad ``kind``, a payload that is not an
        object) and ``OSError`` for a file that cannot be read."""
        queued = await asyncio.to_thread(
            self.queue.put, kind, payload, files, record_id=record_id, at=at
        )
        self.uplink.wake()
        return queued

    def _authorization(self, password: bool = False) -> str:
        """The device's credentials for the file routes: its session token, or with
        ``password`` HTTP Basic (blocking: may read the password file)."""
        if self._saved.token and not password:
            return f"Bearer {self._saved.token}"
        device_id = self._saved.device_id or self.settings.device_id or ""
        return basic(device_id, self.settings.secret() or "")

    def on_config(self, handler: ConfigHandler) -> ConfigHandler:
        """Decorator registering the function that applies the desired configuration
        (section 8): it takes the whole configuration, may return what the device now
        runs, and raises to refuse it. The agent then lists ``config`` at login."""
        self.config.handler = handler
        return handler

    def status(self, hook: StatusHook) -> StatusHook:
        """Decorator registering a function whose dict goes into each upload as ``extra``."""
        self.status_hook = hook
        return hook

    # --- running ---------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or until ``max_retries`` is spent (exit 1)."""

        async def main() -> int:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
            return await self.run_async()

        return asyncio.run(main())

    def stop(self) -> None:
        """Close the connection (1001) and return from ``run_async`` with 0."""
        self._stopping.set()
        if self._inbox is not None:
            self._inbox.put_nowait(("stop", None))

    async def run_async(self) -> int:
        self.oplog.start()
        self.oplog.hide(self.settings.password)
        try:
            self._saved = await asyncio.to_thread(self._state.load)
            await asyncio.to_thread(self.config.load)
            self.oplog.hide(self._saved.token)
            logger.info("agent started, server %s", self.settings.server)
            async with asyncio.TaskGroup() as tasks:
                background = [tasks.create_task(self.uplink.run(), name="uplink")]
                if self.spool is not None:
                    background.append(tasks.create_task(self._watch_spool(), name="spool"))
                try:
                    code = await self._reconnect_loop()
                finally:
                    for task in background:
                        task.cancel()
        finally:
            logger.info("agent stopped")
            self.oplog.stop()
        self.exit_code = code
        if self._restart_requested:
            self._restart()
        return code

    async def _watch_spool(self) -> None:
        assert self.spool is not None
        while True:
            try:
                if await asyncio.to_thread(self.spool.take):
                    self.uplink.wake()
            except OSError as exc:
                logger.error("cannot read the spool folder: %s", exc)
            await asyncio.sleep(SCAN_INTERVAL)

    async def _reconnect_loop(self) -> int:
        failures = 0
        while not self._stopping.is_set():
            outcome, logged_in = await self._connect_once()
            if outcome == STOPPED:
                return 0
            if outcome == RESTART:
                logger.info("restarting")
                await self._state.save(self._saved)
                self._restart_requested = True
                return 0
            if outcome == TOKEN_REFUSED:
                continue  # straight back with the password: a stale token is no failure
            failures = 0 if logged_in else failures + 1
            # The first failure is the attempt; each one after it was a retry.
            if 0 <= self.settings.max_retries < failures:
                logger.error("giving up after %d attempts (%d retries)", failures, failures - 1)
                return 1
            delay = self._backoff.next_delay()
            logger.info("reconnecting in %.1f s (%s)", delay, outcome)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass
        return 0

    # --- one connection -------------------------------------------------------------------

    async def _login(self) -> protocol.Login:
        saved, settings = self._saved, self.settings
        speaks = self.extensions
        device_id = settings.device_id or saved.device_id
        if saved.token and device_id == saved.device_id and not _expired(saved.token_expires_at):
            return protocol.Login(device_id=device_id, token=saved.token, extensions=speaks)
        password = await asyncio.to_thread(settings.secret)
        self.oplog.hide(password)
        if settings.device_id:
            return protocol.Login(
                device_id=settings.device_id, password=password, extensions=speaks
            )
        return protocol.Login(
            device_sn=settings.sn, device_model=settings.model, password=password, extensions=speaks
        )

    async def _connect_once(self) -> tuple[str, bool]:
        """One connection, start to end: (how it ended, whether it got through login)."""
        try:
            login = await self._login()
        except OSError as exc:
            logger.error("cannot read the password: %s", exc)
            return "no_password", False
        try:
            tls = await asyncio.to_thread(client_context, self.settings)
        except SettingsError as exc:
            logger.error("cannot set up TLS: %s", exc)
            return "tls_unusable", False
        try:
            ws = await websockets.connect(
                self.settings.server,
                **({"ssl": tls} if tls else {}),
                compression=None,
                ping_interval=None,
                max_size=protocol.MAX_FRAME_BYTES,
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            logger.warning("cannot reach %s: %s", self.settings.server, exc)
            return "unreachable", False
        logger.info("connected, logging in with %s", "token" if login.token else "password")
        conversation = _Conversation(self, ws, login)
        self._inbox = conversation.inbox
        if self._stopping.is_set():
            conversation.inbox.put_nowait(("stop", None))  # the signal came while connecting
        try:
            return await conversation.run()
        finally:
            self._inbox = None
            await ws.close(CLOSE_GOING_AWAY, "going away")

    # --- what the conversation asks of the agent -----------------------------------------

    async def logged_in(self, event: core.LoggedIn) -> None:
        self._backoff.reset()
        self.oplog.hide(event.token)
        logger.info("logged in as device %s", event.device_id)
        saved = SavedState(event.device_id, event.token, event.token_expires_at)
        if event.token is None:  # a version-1 server: keep the id, there is no token
            saved = SavedState(event.device_id)
        if saved != self._saved:
            self._saved = saved
            await self._state.save(saved)

    async def forget_token(self) -> None:
        self._saved = SavedState(self._saved.device_id)
        await self._state.save(self._saved)

    async def collect_status(self) -> dict[str, Any]:
        snapshot = await asyncio.to_thread(status.collect, self.settings.disk_path)
        if self.status_hook is not None:
            try:
                extra = self.status_hook()
                if inspect.isawaitable(extra):
                    extra = await extra
                snapshot["extra"] = extra
            except Exception:  # a broken hook must not stop the uploads
                logger.exception("status hook failed; uploading without extra")
        queued = await asyncio.to_thread(self.queue.stats)
        extra = snapshot.get("extra")
        snapshot["extra"] = {
            **(extra if isinstance(extra, dict) else {}),
            "queue": {"depth": queued.depth, "bytes": queued.bytes, "dropped": queued.dropped},
        }
        return snapshot

    async def run_command(self, command: core.CommandReceived, device_id: str) -> Outcome:
        logger.info("command %s received (request %s)", command.name, command.request_id)
        if command.name == "upload_log":
            outcome = await self._upload_log(command.remote_dir or "", device_id)
        elif command.builtin and command.name == protocol.UPDATE:
            outcome = await self.updates.install(
                command.params["artifact"], self._updater, self.settings.installer
            )
        else:
            outcome = await self.commands.run(command.name, command.params)
        logger.info("command %s: %s, %s", command.name, outcome.status, outcome.message)
        return outcome

    async def _upload_log(self, remote_dir: str, device_id: str) -> Outcome:
        settings = self.settings
        if not settings.sftp_host:
            logger.error("upload_log: no --sftp-host configured")
            return Outcome("fail", protocol.MSG_UPLOAD_FAILED)
        password = None
        if settings.sftp_password_file:
            password = await asyncio.to_thread(read_secret, settings.sftp_password_file)
            self.oplog.hide(password)
        target = SftpTarget(
            host=settings.sftp_host,
            port=settings.sftp_port,
            user=settings.sftp_user,
            password=password,
            known_hosts=self._known_hosts,
        )
        try:
            remote_path = await upload_log(target, self.oplog.files(), remote_dir, device_id)
        except UploadError as exc:
            logger.error("upload_log to %s failed: %s", settings.sftp_host, exc)
            return Outcome("fail", protocol.MSG_UPLOAD_FAILED)
        logger.info("log uploaded to %s:%s", settings.sftp_host, remote_path)
        return Outcome("success", "successfully uploaded log.")


class _Conversation:
    """One WebSocket connection driven by one ``AgentSession``."""

    def __init__(self, agent: Agent, ws: ClientConnection, login: protocol.Login) -> None:
        self.agent = agent
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.session = core.AgentSession(self._timings(), login, self.loop.time())
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcome = ""
        self.logged_in = False
        self._batches: dict[str, asyncio.Future[core.DataAnswered]] = {}
        self._batch_ids = 0

    def _timings(self) -> core.Timings:
        s = self.agent.settings
        return core.Timings(
            ping_interval=s.heartbeat_interval,
            status_interval=s.status_interval,
            status_probe_interval=s.status_interval,
            answer_timeout=s.answer_timeout,
            restart_wait=s.restart_wait,
        )

    async def run(self) -> tuple[str, bool]:
        self._spawn(self._read())
        try:
            while True:
                await self._flush()
                await self._handle_events()
                if self.session.closed:
                    return self.outcome or self.session.close_reason, self.logged_in
                await self._next_input()
        finally:
            self.agent.uplink.detach()
            for waiting in self._batches.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("connection ended"))
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def upload(self, records: list[dict[str, Any]]) -> core.DataAnswered:
        """Send a batch of records through the session and wait for its answer."""
        self._batch_ids += 1
        request_id = f"d-{self._batch_ids}"
        answered: asyncio.Future[core.DataAnswered] = self.loop.create_future()
        self._batches[request_id] = answered
        self.inbox.put_nowait(("data", (records, request_id)))
        try:
            return await asyncio.wait_for(answered, DATA_ANSWER_TIMEOUT)
        finally:
            self._batches.pop(request_id, None)

    async def _next_input(self) -> None:
        deadline = self.session.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
        try:
            kind, payload = await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            self.session.tick(self.loop.time())
            return
        now = self.loop.time()
        if kind == "frame":
            self.session.receive(payload, now)
        elif kind == "status":
            self.session.status_collected(payload, now)
        elif kind == "result":
            self.session.command_finished(*payload, now)
        elif kind == "data":
            records, request_id = payload
            if not self.session.send_data(records, request_id, now):
                waiting = self._batches.get(request_id)
                if waiting is not None and not waiting.done():
                    waiting.set_exception(ConnectionError("not logged in"))
        elif kind == "config":
            outcome, request_id = payload
            self.session.config_applied(
                outcome.version, outcome.reported, outcome.message, request_id, now
            )
        elif kind == "lost":
            self.session.connection_lost()
        elif kind == "stop":
            self.outcome = STOPPED
            self.session.close()
        self.session.tick(now)

    async def _flush(self) -> None:
        for frame in self.session.data_to_send():
            try:
                await self.ws.send(frame)
            except ConnectionClosed:
                self.session.connection_lost()
                return

    async def _handle_events(self) -> None:
        for event in self.session.events_received():
            await self._handle(event)

    async def _handle(self, event: core.Event) -> None:
        agent = self.agent
        match event:
            case core.LoggedIn():
                self.logged_in = True
                await agent.logged_in(event)
                agent.uplink.attach(self.upload)
                if (current := agent.config.current()) is not None:
                    self.inbox.put_nowait(("config", (current, None)))
            case core.DataAnswered():
                waiting = self._batches.get(event.request_id or "")
                if waiting is not None and not waiting.done():
                    waiting.set_result(event)
            case core.LoginRejected():
                logger.warning("login refused: %s", event.message)
                if event.token_refused:
                    self.outcome = TOKEN_REFUSED
                    await agent.forget_token()
            case core.StatusDue():
                self._spawn(self._status())
            case core.CommandReceived():
                self._spawn(self._command(event))
            case core.ConfigReceived():
                self._spawn(self._config(event))
            case core.RestartNow():
                logger.info("restart %s", "confirmed" if event.confirmed else "not confirmed")
                self.outcome = RESTART
                self.session.close()
            case core.HeartbeatMissed():
                logger.warning("no answer to %s (%d in a row)", event.what, event.failures)
            case core.Closed():
                if event.reason not in ("local", "login_failed"):
                    logger.warning("connection ended: %s", event.reason)
            case core.FrameIgnored():
                pass

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.inbox.put_nowait(("frame", message))
        except ConnectionClosed:
            pass
        self.inbox.put_nowait(("lost", None))

    async def _status(self) -> None:
        self.inbox.put_nowait(("status", await self.agent.collect_status()))

    async def _command(self, command: core.CommandReceived) -> None:
        assert self.session.device_id is not None
        outcome = await self.agent.run_command(command, self.session.device_id)
        self.inbox.put_nowait(
            ("result", (outcome.status, outcome.message, outcome.data, command.request_id))
        )

    async def _config(self, update: core.ConfigReceived) -> None:
        outcome = await self.agent.config.apply(update.version, update.config)
        self.inbox.put_nowait(("config", (outcome, update.request_id)))


def _expired(expires_at: str | None) -> bool:
    if expires_at is None:
        return False
    try:
        return datetime.fromisoformat(expires_at) <= datetime.now(UTC)
    except ValueError:
        return True
