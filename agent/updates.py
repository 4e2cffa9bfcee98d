"""Software updates on the device (docs/protocol.md section 9, extension ``update``).

Theory of operation
-------------------
An ``update`` order names an artifact: its name, version, SHA-256, size and a
download path on the device port. ``Updates.install`` then

1. downloads it into ``<state-dir>/updates/<sha256>.part`` over HTTP with the
   device's credentials; a broken connection leaves what arrived on disk and the
   next attempt asks only for the rest (``Range: bytes=<have>-``), up to
   ``--download-retries`` times, so a 4G link that drops mid-way costs no byte
   twice;
2. checks the SHA-256 of the whole file: a file that does not match is deleted
   and the update fails with the reason; it is never handed to the installer;
3. runs the installer: the device maker's ``@agent.updater`` function (Python
   API; it gets the file's path and the artifact, and may return the version it
   now runs), or the CLI agent's ``--installer`` command (the path is its last
   argument; exit status 0 means installed);
4. answers ``success`` with ``{"version": …}``, or ``fail`` with the reason. An
   installer killed by a signal (an interrupted install) is a failure too.

Hashing and file I/O run in worker threads and the installer command in a child
process: the agent's event loop keeps its heartbeat throughout.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.commands import Outcome
from edgefleet.agent.file_upload import FileUploader, FileUploadFailed
from edgefleet.agent.oplog import logger

Updater = Callable[[Path, dict[str, Any]], str | Awaitable[str | None] | None]
"""What ``@agent.updater`` registers: install the file at the path; return the
version now running (None: the artifact's version); raise to fail."""

HASH_CHUNK = 1024 * 1024
MSG_INSTALLED = "update installed"


class UpdateFailed(Exception):
    """Why an update was not installed; ``str(exc)`` is the message the cloud gets."""


class Updates:
    def __init__(
        self, folder: Path, client: FileUploader, retries: int, retry_delay: float = 1.0
    ) -> None:
        self._folder = folder
        self._client = client
        self._retries = retries
        self._retry_delay = retry_delay

    async def install(
        self, artifact: protocol.UpdateArtifact, updater: Updater | None, installer: str | None
    ) -> Outcome:
        """Download, check, install; the outcome to answer the order with."""
        if updater is None and installer is None:
            return Outcome("fail", "this device has no installer for updates")
        label = f"{artifact['name']} {artifact['version']}"
        try:
            path = await self.download(artifact)
            try:
                if updater is not None:
                    version = await _run_updater(updater, path, artifact)
                else:
                    assert installer is not None
                    version = await _run_installer(installer, path, artifact)
            finally:
                await asyncio.to_thread(path.unlink, missing_ok=True)
        except UpdateFailed as exc:
            logger.error("update to %s failed: %s", label, exc)
            return Outcome("fail", str(exc))
        logger.info("update to %s installed, now running %s", label, version)
        return Outcome("success", MSG_INSTALLED, {"version": version})

    async def download(self, artifact: protocol.UpdateArtifact) -> Path:
        """The artifact on disk, whole and checked; raises ``UpdateFailed``."""
        await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True)
        target = self._folder / f"{artifact['sha256']}.part"
        size = artifact["size"]
        broken, why = 0, ""
        while (have := await asyncio.to_thread(_size, target)) < size:
            if broken > self._retries:
                raise UpdateFailed(f"download failed at {have} of {size} bytes: {why}")
            if have:
                logger.info("resuming the download of %s at byte %d", artifact["name"], have)
            try:
                await asyncio.to_thread(self._client.download, artifact["url"], target)
                why = "the connection ended early"
            except FileUploadFailed as exc:
                why = str(exc)
            if await asyncio.to_thread(_size, target) < size:
                broken += 1
                logger.warning("download of %s broken: %s", artifact["name"], why)
                await asyncio.sleep(self._retry_delay)
        digest = await asyncio.to_thread(_sha256, target)
        if have != size or digest != artifact["sha256"]:
            await asyncio.to_thread(target.unlink, missing_ok=True)
            raise UpdateFailed(
                f"artifact refused: {have} bytes with SHA-256 {digest}, "
                f"expected {size} bytes with SHA-256 {artifact['sha256']}"
            )
        return target


async def _run_updater(updater: Updater, path: Path, artifact: protocol.UpdateArtifact) -> str:
    try:
        if inspect.iscoroutinefunction(updater):
            version = await updater(path, dict(artifact))
        else:
            version = await asyncio.to_thread(updater, path, dict(artifact))
    except Exception as exc:  # the device maker's failure is the update's result
        raise UpdateFailed(f"install failed: {exc or type(exc).__name__}") from exc
    return version if isinstance(version, str) and version else artifact["version"]


async def _run_installer(command: str, path: Path, artifact: protocol.UpdateArtifact) -> str:
    env = {
        **os.environ,
        "EDGEFLEET_ARTIFACT_NAME": artifact["name"],
        "EDGEFLEET_ARTIFACT_VERSION": artifact["version"],
        "EDGEFLEET_ARTIFACT_SHA256": artifact["sha256"],
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *shlex.split(command),
            str(path),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise UpdateFailed(f"installer could not start: {exc}") from exc
    try:
        _, stderr = await process.communicate()
    except asyncio.CancelledError:  # the agent is stopping: leave no installer behind
        process.kill()
        await process.wait()
        raise
    code = process.returncode
    if code is not None and code < 0:
        raise UpdateFailed(f"install interrupted: the installer was killed by signal {-code}")
    if code:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise UpdateFailed(f"installer exited with status {code}: {last[0][:200]}".rstrip(": "))
    return artifact["version"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
