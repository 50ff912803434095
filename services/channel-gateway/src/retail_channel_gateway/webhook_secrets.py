"""Webhook signing secrets through the SecretBox: sealed before they are stored, opened for signing.

Rows stored in clear (before encryption at rest) or under a previous key are re-sealed under the
current key lazily when read, and by a sweep at start (`reseal_all`), so every row is sealed once a
replica with a key has started, and a previous key can be dropped from the configuration after a
sweep under the new one. A re-seal is conditional on the stored bytes, so a concurrent rotation wins.
"""

from __future__ import annotations

import logging

import asyncpg

from retail_channel_gateway.domain.secret_box import SecretBox, SecretBoxError
from retail_channel_gateway.repository import ChannelRepository

__all__ = ["WebhookSecrets"]

logger = logging.getLogger("retail_channel_gateway.webhook_secrets")


class WebhookSecrets:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], box: SecretBox) -> None:
        self._pool = pool
        self._box = box
        self._channels = ChannelRepository()

    def seal(self, channel_id: str, secret: str) -> bytes:
        return self._box.seal(channel_id, secret.encode())

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
