"""The spool folder (``--spool-dir``): how programs that are not Python hand
records to the agent.

A program writes a JSON file ``{"kind", "payload", "files": [names in the same
folder], "record_id"?, "at"?}`` under a temporary name (starting with ``.`` or
ending in ``.tmp``), then renames it to ``<anything>.json``; the rename is
atomic, so the agent never reads half a file. The agent queues the record (its
files moved into the queue) and deletes the JSON file. A file it cannot use is
moved to ``rejected/`` with the reason logged. ``edgefleet-agent publish`` does
all this for shell scripts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.oplog import logger
from edgefleet.agent.record_queue import RecordQueue

SCAN_INTERVAL = 1.0


class SpoolFolder:
    def __init__(self, directory: Path, queue: RecordQueue) -> None:
        self.directory = directory
        self._queue = queue

    def take(self) -> int:
        """Queue every finished JSON file in the folder (blocking); returns how many."""
        self.directory.mkdir(parents=True, exist_ok=True)
        taken = 0
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                self._take(path)
            except (OSError, ValueError, protocol.RecordRejected) as exc:
                self._reject(path, str(exc))
                continue
            taken += 1
        return taken

    def _take(self, path: Path) -> None:
        spec: Any = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or not isinstance(spec.get("files", []), list):
            raise ValueError('expected {"kind", "payload", "files": [...]}')
        names = spec.get("files", [])
        files = [self.directory / Path(str(name)).name for name in names]
        record_id = self._queue.put(
            spec.get("kind", ""),
            spec.get("payload"),  # type: ignore[arg-type]  # checked by the queue
            files,
            record_id=spec.get("record_id"),
            at=spec.get("at"),
            move_files=True,
        )
        path.unlink()
        logger.info("queued record %s from the spool folder", record_id)

    def _reject(self, path: Path, reason: str) -> None:
        rejected = self.directory / "rejected"
        rejected.mkdir(exist_ok=True)
        shutil.move(path, rejected / path.name)
        logger.error("spool file %s rejected: %s", path.name, reason)


def write(directory: Path, spec: dict[str, Any], files: list[Path]) -> Path:
    """What ``edgefleet-agent publish`` does: copy the files into the folder, then
    write the JSON under a temporary name and rename it into place."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{os.getpid()}-{secrets.token_hex(6)}"
    names = []
    for index, source in enumerate(files):
        name = f"{stem}-{index}-{source.name}"
        shutil.copyfile(source, directory / f".{name}.tmp")
        os.replace(directory / f".{name}.tmp", directory / name)
        names.append(name)
    temporary = directory / f".{stem}.json.tmp"
    temporary.write_text(json.dumps({**spec, "files": names}), encoding="utf-8")
    final = directory / f"{stem}.json"
    os.replace(temporary, final)
    return final
