"""API key format and hashing: `rk_<key_id>_<secret>`.

The key id is public (it finds the row); only sha256(secret) is stored. The secret is 256 bits from
`secrets`, so a fast hash is the standard choice: slow password hashes (bcrypt, argon2) exist to
stretch low-entropy human passwords, which these are not, and would only cost CPU on every call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = [
    "KEY_PREFIX",
    "ParsedKey",
    "generate_key",
    "hash_secret",
    "parse_key",
    "secret_matches",
    "split_key",
]

KEY_PREFIX = "rk"
_KEY_ID_BYTES = 8  # 16 hex chars: hex never contains the "_" separator
_SECRET_BYTES = 32
_HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: SecretStr


def generate_key() -> tuple[str, SecretStr]:
    """A new (key_id, full key). The secret part is URL-safe base64 and may itself contain "_"."""
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    return key_id, SecretStr(f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}")


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None: the per-call check, no objects built."""
    prefix, _, rest = key.partition("_")
    key_id, sep, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not sep or not secret or len(key_id) != 2 * _KEY_ID_BYTES:
        return None
    if not _HEX_DIGITS.issuperset(key_id):  # one C-level check on every call's key
        return None
    return key_id, secret


def parse_key(key: str) -> ParsedKey | None:
    split = split_key(key)
    return None if split is None else ParsedKey(key_id=split[0], secret=SecretStr(split[1]))


def hash_secret(secret: SecretStr) -> bytes:
    return hashlib.sha256(secret.get_secret_value().encode()).digest()


def secret_matches(secret: SecretStr, stored_hash: bytes) -> bool:
    # Constant-time comparison so response timing does not reveal how much of a hash matched.
    return hmac.compare_digest(hash_secret(secret), stored_hash)
