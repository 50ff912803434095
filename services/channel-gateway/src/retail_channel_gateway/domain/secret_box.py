"""Webhook signing secrets at rest: AES-256-GCM under a key named by a key id (keys rotate: new secrets
are sealed under the current key, secrets sealed under a previous key stay readable while that key is
configured, and are re-sealed under the current one when read or swept).

Stored form: MAGIC | len(key id) | key id | 12-byte random nonce | ciphertext+tag. The additional
authenticated data binds the ciphertext to its key id and channel, so a sealed secret copied onto
another channel's row does not open. A value without MAGIC is a legacy clear secret (generated
secrets are printable ASCII, MAGIC starts with a NUL byte).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["MAGIC", "SecretBox", "SecretBoxError", "check_key_id", "parse_key", "parse_keyring"]

MAGIC = b"\x00whs1"
_NONCE = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class SecretBoxError(Exception):
    """A stored secret that cannot be opened (unknown key id, tampered or truncated)."""


def parse_key(value: str) -> bytes:
    """A key given as base64 of 32 bytes."""
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 of 32 random bytes (e.g. `openssl rand -base64 32`)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes (AES-256), got {len(key)}")
    return key


def check_key_id(key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise ValueError("must be 1..32 characters of [A-Za-z0-9_-]")
    return key_id


def parse_keyring(previous: str) -> dict[str, bytes]:
    """Previous keys as `id:base64,id:base64` (empty: none)."""
    keys: dict[str, bytes] = {}
    for i, item in enumerate(part for part in previous.split(",") if part.strip()):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep:
            raise ValueError(f"entry {i + 1} must be <key id>:<base64 key>")
        try:
            check_key_id(key_id)
            key = parse_key(encoded)
        except ValueError as exc:
            raise ValueError(f"entry {i + 1} ({key_id!r}): {exc}") from None
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} is listed twice")
        keys[key_id] = key
    return keys


class SecretBox:
    def __init__(self, current_key_id: str, keys: Mapping[str, bytes]) -> None:
        if current_key_id not in keys:
            raise ValueError(f"the current key id {current_key_id!r} has no key")
        self.current_key_id = current_key_id
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @staticmethod
    def _aad(key_id: bytes, channel_id: str) -> bytes:
        return MAGIC + key_id + b"\x00" + channel_id.encode()

    def seal(self, channel_id: str, secret: bytes) -> bytes:
        key_id = self.current_key_id.encode()
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[self.current_key_id].encrypt(nonce, secret, self._aad(key_id, channel_id))
        return MAGIC + bytes([len(key_id)]) + key_id + nonce + sealed

    def open(self, channel_id: str, stored: bytes) -> tuple[bytes, bool]:
        """The secret, and whether it should be re-sealed (clear, or under a previous key)."""
        if not stored.startswith(MAGIC):
            return stored, True  # a row written before encryption at rest
        body = stored[len(MAGIC) :]
        if not body or len(body) < 1 + body[0] + _NONCE + 16:
            raise SecretBoxError(f"the stored webhook secret of {channel_id} is truncated")
        key_id = body[1 : 1 + body[0]]
        nonce = body[1 + body[0] : 1 + body[0] + _NONCE]
        name = key_id.decode(errors="replace")
        cipher = self._ciphers.get(name)
        if cipher is None:
            raise SecretBoxError(
                f"the webhook secret of {channel_id} is sealed under key id {name!r}, which is not"
                " configured (WEBHOOK_SECRETS_PREVIOUS_KEYS)"
            )
        try:
            secret = cipher.decrypt(nonce, body[1 + body[0] + _NONCE :], self._aad(key_id, channel_id))
        except InvalidTag:
            raise SecretBoxError(f"the stored webhook secret of {channel_id} does not authenticate") from None
        return secret, key_id.decode() != self.current_key_id
