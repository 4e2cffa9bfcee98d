"""What the agent keeps between runs: the session token and the device id it was
given (and, in ``configuration.py``, the configuration it last applied). One small
JSON file, mode 0600, replaced atomically so that a power cut in
the middle of a write leaves the old file rather than half a new one."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


@dataclass(frozen=True)
class SavedState:
    device_id: str | None = None
    token: str | None = field(default=None, repr=False)
    token_expires_at: str | None = None


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE

    def load(self) -> SavedState:
        """The saved state; a missing or unreadable file is an empty state (the
        agent then logs in with its password, which always works)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return SavedState()
        if not isinstance(raw, dict):
            return SavedState()
        keys = ("device_id", "token", "token_expires_at")
        return SavedState(**{k: raw[k] for k in keys if isinstance(raw.get(k), str)})

    async def save(self, state: SavedState) -> None:
        await asyncio.to_thread(self._write, state)

    def _write(self, state: SavedState) -> None:
        write_json(self.path, asdict(state))


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically, mode 0600 (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(value, out)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to an existing file
    os.replace(temporary, path)
