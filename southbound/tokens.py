"""Session tokens (a PROTOCOL.md extension): a device that logged in with its
password gets a signed, expiring token and resumes with it, skipping bcrypt.

A token reads ``<device_id>.<credential_version>.<expires>.<signature>``, the
signature an HMAC-SHA256 over the rest with the southbound's key. Bumping the
device's credential version (a password change) kills every token issued before;
a deleted or disabled device fails the lookup that precedes the check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class TokenSigner:
    def __init__(self, key: bytes, ttl: float) -> None:
        self._key = key
        self.ttl = ttl

    def issue(self, device_id: int, credential_version: int, now: float) -> tuple[str, float]:
        """A token for the device and when it expires (Unix time)."""
        expires = int(now + self.ttl)
        payload = f"{device_id}.{credential_version}.{expires}"
        return f"{payload}.{self._sign(payload)}", float(expires)

    def valid(self, token: str, device_id: int, credential_version: int, now: float) -> bool:
        if not token.isascii():  # every token we issue is; compare_digest needs it
            return False
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return False
        parts = payload.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return False
        token_device, token_version, expires = (int(p) for p in parts)
        return token_device == device_id and token_version == credential_version and now < expires

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
