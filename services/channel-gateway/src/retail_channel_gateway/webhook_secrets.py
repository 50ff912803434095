"""Webhook signing secrets through the SecretBox: sealed before they are stored, opened for signing.

Rows stored in clear (before encryption at rest) or under a previous key are re-sealed under the
current key lazily when read, and by a sweep at start (`reseal_all`), so every row is sealed once a
replica with a key has started, and a previous key can be dropped from the configuration after a
sweep under the new one. A re-seal is conditional on the stored bytes, so a concurrent rotation wins.

The responses that show a new secret once (CreateChannel, RotateWebhookSecret) are kept for idempotent
retries with the secret sealed too (`seal_text`), and opened again when a retry replays them.
"""

from __future__ import annotations

import base64
import logging

import asyncpg

from retail_channel_gateway.domain.secret_box import SecretBox, SecretBoxError
from retail_channel_gateway.repository import ChannelRepository

__all__ = ["WebhookSecrets"]

logger = logging.getLogger("retail_channel_gateway.webhook_secrets")
_SEALED_TEXT = "sealed:"


class WebhookSecrets:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], box: SecretBox) -> None:
        self._pool = pool
        self._box = box
        self._channels = ChannelRepository()

    def seal(self, channel_id: str, secret: str) -> bytes:
        return self._box.seal(channel_id, secret.encode())

    def seal_text(self, channel_id: str, secret: str) -> str:
        """A sealed secret as text, for the copy of a response kept for idempotent retries."""
        return _SEALED_TEXT + base64.b64encode(self.seal(channel_id, secret)).decode()

    def open_text(self, channel_id: str, text: str) -> str:
        """The secret of `seal_text` (text without its prefix is returned as is: stored before sealing)."""
        if not text.startswith(_SEALED_TEXT):
            return text
        secret, _ = self._box.open(channel_id, base64.b64decode(text.removeprefix(_SEALED_TEXT)))
        return secret.decode()

    async def read(self, channel_id: str) -> bytes | None:
        """The clear secret of a channel (None: it has none). Raises SecretBoxError if it cannot be
        opened with the configured keys."""
        async with self._pool.acquire() as conn:
            stored = await self._channels.webhook_secret(conn, channel_id)
            if stored is None:
                return None
            secret, stale = self._box.open(channel_id, stored)
            if stale:
                await self._channels.reseal_webhook_secret(
                    conn, channel_id, stored, self._box.seal(channel_id, secret)
                )
            return secret

    async def reseal_all(self) -> int:
        """Re-seal every clear or previous-key row under the current key; the number re-sealed."""
        async with self._pool.acquire() as conn:
            stored = await self._channels.stored_webhook_secrets(conn)
            resealed = 0
            for channel_id, value in stored:
                try:
                    secret, stale = self._box.open(channel_id, value)
                except SecretBoxError:
                    logger.exception("cannot re-seal the webhook secret of %s", channel_id)
                    continue
                if stale and await self._channels.reseal_webhook_secret(
                    conn, channel_id, value, self._box.seal(channel_id, secret)
                ):
                    resealed += 1
            return resealed
