"""Device passwords: generated with enough entropy, stored only as bcrypt hashes.

bcrypt is deliberately slow (about 0.25 s at cost 12), so hashing and checking run
in a worker thread and never block the event loop.
"""

from __future__ import annotations

import asyncio
import secrets

import bcrypt

GENERATED_BYTES = 24  # 192 bits, 32 URL-safe characters
MIN_LENGTH = 12
MAX_BYTES = 72  # bcrypt ignores (and bcrypt>=5 rejects) anything longer


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_BYTES)


async def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)
    return hashed.decode()


async def password_matches(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed.encode())
