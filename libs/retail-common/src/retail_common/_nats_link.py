"""The service's one NATS connection: connected in the background, reported to the eventing health entry.

NATS being down must not stop the service from starting or serving (the outbox keeps accepting
writes), so the first connect retries in the background forever; after that nats-py's own reconnect
takes over. Users `await link.connected()` to get the client once it is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client

__all__ = ["NatsLink"]

logger = logging.getLogger("retail_common.nats")

_DRAIN_TIMEOUT = 5.0
_POLL_INTERVAL = 1.0  # callbacks can be missed around close/reconnect races; polling settles it


class NatsLink:
    def __init__(
        self,
        servers: list[str],
        *,
        name: str,
        on_change: Callable[[bool], Awaitable[None]],
        reconnect_wait: float = 1.0,
    ) -> None:
        self._servers = servers
        self._name = name
        self._on_change = on_change
        self._reconnect_wait = reconnect_wait
        self._client: Client | None = None
        self._up = asyncio.Event()
        self._reported: bool | None = None

    @property
    def client(self) -> Client | None:
        """The client if connected once (it may be reconnecting right now), else None."""
        return self._client

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def connected(self) -> Client:
        """Wait until NATS is reachable (now or after a reconnect) and return the client."""
        while True:
            await self._up.wait()
            if self._client is not None and self._client.is_connected:
                return self._client
            self._up.clear()

    async def _report(self, up: bool) -> None:
        if up:
            self._up.set()
        else:
            self._up.clear()
        if up != self._reported:
            self._reported = up
            logger.info("nats %s", "connected" if up else "disconnected")
            await self._on_change(up)

    async def _disconnected(self) -> None:
        await self._report(False)

    async def _reconnected(self) -> None:
        await self._report(True)

    async def _error(self, exc: Exception) -> None:
        logger.warning("nats error: %s", type(exc).__name__)

    async def run(self) -> None:
        """Connect (retrying with backoff), then keep the health entry in step with the connection."""
        await self._report(False)
        backoff = self._reconnect_wait
        while self._client is None:
            try:
                self._client = await nats.connect(
                    servers=self._servers,
                    name=self._name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self._reconnect_wait,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
            except Exception as exc:
                logger.warning("nats not reachable yet (%s); retrying in %.1fs", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        while True:
            await self._report(self._client.is_connected)
            await asyncio.sleep(_POLL_INTERVAL)

    async def close(self) -> None:
        """Drain (finish in-flight deliveries and publishes) if connected, else just close."""
        client, self._client = self._client, None
        if client is None or client.is_closed:
            return
        try:
            if client.is_connected:
                await asyncio.wait_for(client.drain(), _DRAIN_TIMEOUT)
        except Exception as exc:
            logger.warning("nats drain failed: %s", type(exc).__name__)
        finally:
            if not client.is_closed:
                await client.close()
