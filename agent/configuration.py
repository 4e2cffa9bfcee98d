"""The device's desired configuration (section 8): applied by the device maker's
code, kept across restarts, reported to the cloud.

An update goes to the ``@agent.on_config`` handler and then, for the CLI agent, to
the ``--config-hook`` command (the configuration as JSON on its standard input;
exit status 0 means applied). When both accept it, it is saved in
``--state-dir/config.json`` (atomically, mode 0600) and reported as what the device
runs; when one refuses it (raises, or exits non-zero) the device keeps what it ran
before and reports the failure with the reason. An update equal to what was last
applied is not applied twice: a cloud sends the configuration at every login.
After each login the agent reports the saved configuration by itself, so the
cloud knows what runs before it sends anything.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.agent.state import write_json

log = logging.getLogger("edgefleet.agent")

CONFIG_FILE = "config.json"
HOOK_TIMEOUT = 120.0
"""Seconds a ``--config-hook`` command may take before it counts as failed."""
MAX_MESSAGE = 512

ConfigHandler = Callable[[dict[str, Any]], Any | Awaitable[Any]]
"""Takes the whole configuration; may return what the device now runs (a dict),
else the configuration itself is reported. Raises to refuse it."""


class ConfigRefused(Exception):
    """The handler or the hook could not apply a configuration; the message says why."""


@dataclass(frozen=True)
class Applied:
    version: int | None
    config: dict[str, Any]
    """What the cloud sent."""
    reported: Any
    """What the device runs, as the handler said."""


@dataclass(frozen=True)
class Outcome:
    """What to report: the version and configuration that run, and why an update
    failed (None: it was applied)."""

    version: int | None
    reported: Any
    message: str | None = None


class DeviceConfig:
    def __init__(self, state_dir: Path, hook: str | None) -> None:
        self.path = state_dir / CONFIG_FILE
        self.hook = hook
        self.handler: ConfigHandler | None = None
        self.applied: Applied | None = None
        self._lock = asyncio.Lock()

    @property
    def wanted(self) -> bool:
        """Whether anything on this device applies configurations: only then does
        the agent list ``config`` at login."""
        return self.handler is not None or bool(self.hook)

    def load(self) -> None:
        """The saved configuration; a missing or unreadable file is none (blocking)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(raw, dict) and isinstance(raw.get("config"), dict):
            version = raw.get("version")
            self.applied = Applied(
                version if isinstance(version, int) else None, raw["config"], raw.get("reported")
            )

    def current(self) -> Outcome | None:
        """What to report at login: the saved configuration, if any."""
        if self.applied is None:
            return None
        return Outcome(self.applied.version, self.applied.reported)

    async def apply(self, version: int, config: dict[str, Any]) -> Outcome:
        async with self._lock:
            applied = self.applied
            if applied is not None and (applied.version, applied.config) == (version, config):
                return Outcome(version, applied.reported)
            try:
                reported = await self._run_handler(config)
                await self._run_hook(config)
            except ConfigRefused as refused:
                log.warning("configuration %s not applied: %s", version, refused)
                before = applied.reported if applied is not None else {}
                return Outcome(applied.version if applied else None, before, str(refused))
            self.applied = Applied(version, config, reported)
            await asyncio.to_thread(
                write_json, self.path, {"version": version, "config": config, "reported": reported}
            )
            log.info("configuration %s applied", version)
            return Outcome(version, reported)

    async def _run_handler(self, config: dict[str, Any]) -> Any:
        if self.handler is None:
            return config
        try:
            result = self.handler(config)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the device maker's code said no, or broke
            raise ConfigRefused(str(exc)[:MAX_MESSAGE] or type(exc).__name__) from exc
        return result if isinstance(result, dict) else config

    async def _run_hook(self, config: dict[str, Any]) -> None:
        if not self.hook:
            return
        try:
            process = await asyncio.create_subprocess_exec(
                *shlex.split(self.hook),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigRefused(f"cannot run the config hook: {exc}") from exc
        try:
            async with asyncio.timeout(HOOK_TIMEOUT):
                _, errors = await process.communicate(json.dumps(config).encode())
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ConfigRefused(f"the config hook took over {HOOK_TIMEOUT:g} s") from None
        if process.returncode != 0:
            lines = errors.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else f"the config hook exited with {process.returncode}"
            raise ConfigRefused(reason[:MAX_MESSAGE])
