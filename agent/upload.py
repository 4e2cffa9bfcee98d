"""The built-in ``upload_log`` command: the local log to the cloud's SFTP endpoint."""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.distribution import missing_extra


@dataclass(frozen=True)
class SftpTarget:
    host: str
    port: int = 22
    user: str = "edgefleet"
    password: str | None = field(default=None, repr=False)
    known_hosts: Path | None = None
    """The server's host key must be listed here; ``None`` turns host key checking
    off, which only a lab setup should do."""
    timeout: float = 30.0


class UploadError(Exception):
    """Why the upload failed, for the device's own log (the cloud is told only
    ``protocol.MSG_UPLOAD_FAILED``)."""


async def upload_log(target: SftpTarget, logs: list[Path], remote_dir: str, device_id: str) -> str:
    """Upload ``logs`` (oldest first, concatenated) as ``<remote_dir>/<device_id>.log``.

    The files are read in a thread and streamed from memory: a rotated operation log
    is small, and asyncssh's own ``put`` would read the file on the event loop.
    """
    # asyncssh (and the cryptography it loads) is a third of the agent's memory
    # (measured: RSS 44 → 28 MiB without it); only a device that uploads pays for it.
    try:
        import asyncssh
    except ModuleNotFoundError as exc:
        raise UploadError(missing_extra(exc, "agent") or str(exc)) from exc

    content = await asyncio.to_thread(_read_all, logs)
    remote_path = posixpath.join(remote_dir, f"{device_id}.log")
    try:
        async with asyncio.timeout(target.timeout):
            async with asyncssh.connect(
                target.host,
                target.port,
                username=target.user,
                password=target.password,
                known_hosts=str(target.known_hosts) if target.known_hosts else None,
                client_keys=None,
                agent_path=None,
            ) as connection:
                async with connection.start_sftp_client() as sftp:
                    await sftp.makedirs(remote_dir, exist_ok=True)
                    async with sftp.open(remote_path, "wb") as remote:
                        await remote.write(content)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise UploadError(f"{type(exc).__name__}: {exc}") from exc
    return remote_path


def _read_all(paths: list[Path]) -> bytes:
    return b"".join(path.read_bytes() for path in paths if path.exists())
