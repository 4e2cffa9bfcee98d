"""Snowflake ids for devices and groups.

A snowflake is a 63-bit integer: milliseconds since 2024-01-01 (41 bits, good until
2093), a worker id (10 bits) and a per-millisecond sequence (12 bits). Ids sort by
creation time, need no database round trip, and never collide between processes
that have different worker ids. JSON carries them as strings, because JavaScript
numbers lose precision above 2**53.
"""

from __future__ import annotations

import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_ID = (1 << 63) - 1


class SnowflakeGenerator:
    def __init__(self, worker_id: int = 0) -> None:
        if not 0 <= worker_id < (1 << WORKER_BITS):
            raise ValueError(f"worker_id must be in [0, {1 << WORKER_BITS})")
        self._worker_id = worker_id
        self._last_ms = 0
        self._sequence = 0
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            # A clock that steps backwards must not produce an id twice: keep
            # counting on the last millisecond until the clock catches up.
            now_ms = max(time.time_ns() // 1_000_000, self._last_ms)
            if now_ms == self._last_ms:
                self._sequence = (self._sequence + 1) & ((1 << SEQUENCE_BITS) - 1)
                if self._sequence == 0:
                    now_ms += 1  # 4096 ids in one millisecond: borrow the next one
            else:
                self._sequence = 0
            self._last_ms = now_ms
            return (
                ((now_ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS))
                | (self._worker_id << SEQUENCE_BITS)
                | self._sequence
            )
