"""Login rate limits: per device, every attempt; per source address, failures.

Counting every attempt per address would refuse a whole site behind one carrier
NAT when its gateways reconnect together; brute force, on the other hand, shows
up as failures. So an address is limited in failed logins, a device in attempts.
Both are token buckets refilled continuously, ``rate`` a minute, as deep as
``rate``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One bucket per key, created full; idle full buckets are forgotten."""

    def __init__(self, per_minute: float, max_keys: int = 100_000) -> None:
        self.capacity = per_minute
        self.refill = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _level(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill)
        bucket.at = now
        return bucket

    def has_tokens(self, key: str, now: float) -> bool:
        return self._level(key, now).tokens >= 1.0

    def take(self, key: str, now: float) -> bool:
        """Spend one token if there is one."""
        bucket = self._level(key, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.at) * self.refill >= self.capacity
        ]
        for key in full:
            del self._buckets[key]


class LoginThrottle:
    def __init__(self, attempts_per_device: float, failures_per_address: float) -> None:
        self._devices = TokenBuckets(attempts_per_device)
        self._addresses = TokenBuckets(failures_per_address)

    def allow(self, address: str, device: str, now: float) -> bool:
        """May this login be checked? Spends one of the device's attempts."""
        return self._addresses.has_tokens(address, now) and self._devices.take(device, now)

    def failed(self, address: str, now: float) -> None:
        self._addresses.take(address, now)
