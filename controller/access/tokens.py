"""The secrets people and services hold: access tokens, refresh tokens, API keys.

- **Access tokens** are JWTs (HS256, PyJWT) that live minutes. The header's
  ``kid`` names the key that signed it, so a new ``--jwt-key`` can sign while the
  previous ones (``--jwt-previous-keys``) still verify: rotating the key signs
  nobody out. A ``kid`` is the first 16 hex digits of the key's SHA-256.
- **Refresh tokens** (``efr_…``) and **API keys** (``efk_<prefix>_<secret>``) are
  random strings the database knows only as SHA-256 digests. A key's prefix finds
  its row; the digest, compared in constant time, proves it. Both carry 256 bits
  of randomness, so a fast digest is enough (a slow hash protects guessable
  passwords, not random ones).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ISSUER = "edgefleet"
REFRESH_PREFIX = "efr_"
KEY_PREFIX = "efk_"
KEY_LOOKUP_LENGTH = 8
_LOOKUP_ALPHABET = string.ascii_lowercase + string.digits


class InvalidToken(Exception):
    """A bearer string that is no valid access token, key or refresh token."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(key: str) -> str:
    return digest(key)[:16]


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    expires_at: float


class JwtKeys:
    """One signing key and any number of keys that still verify."""

    def __init__(self, signing: str, previous: tuple[str, ...] = ()) -> None:
        self.kid = key_id_of(signing)
        self._signing = signing
        self._verifying = {key_id_of(k): k for k in (*previous, signing)}

    @classmethod
    def from_settings(cls, key: str | None, previous: str | None) -> JwtKeys:
        olds = tuple(k.strip() for k in (previous or "").split(",") if k.strip())
        return cls(key or secrets.token_urlsafe(48), olds)

    def issue(self, user_id: int, username: str, ttl: float) -> tuple[str, float]:
        """An access token and its lifetime in seconds."""
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": str(user_id), "name": username, "iat": now,
                  "exp": now + int(ttl), "typ": "access"}  # fmt: skip
        return jwt.encode(claims, self._signing, ALGORITHM, headers={"kid": self.kid}), ttl

    def verify(self, token: str) -> AccessClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._verifying.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("access token signed with an unknown key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("access token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("invalid access token") from exc
        if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
            raise InvalidToken("invalid access token")
        return AccessClaims(int(claims["sub"]), float(claims["exp"]))


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def new_family() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class NewApiKey:
    key: str
    """Shown once."""
    prefix: str
    digest: str


def new_api_key() -> NewApiKey:
    lookup = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(KEY_LOOKUP_LENGTH))
    key = f"{KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key, KEY_PREFIX + lookup, digest(key))


def api_key_prefix(key: str) -> str:
    """The lookup part of a presented key (``efk_abcd1234``); raises if malformed."""
    lookup, sep, secret = key.removeprefix(KEY_PREFIX).partition("_")
    if not key.startswith(KEY_PREFIX) or not sep or len(lookup) != KEY_LOOKUP_LENGTH or not secret:
        raise InvalidToken("malformed API key")
    return KEY_PREFIX + lookup


def same_digest(presented: str, stored: str) -> bool:
    return hmac.compare_digest(digest(presented), stored)
