"""Helpers for tests and benchmarks of the messaging pipeline (not used by services)."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client

from retail_common.db import migrate
from retail_common.messaging._streams import StreamSpec

_log = logging.getLogger(__name__)

__all__ = ["DEADLETTER_STREAM", "TESTING_STREAM", "connect_nats", "migrate_messaging"]

# The test-only domain (retail.testing.v1.*, the probe's events) and the dead-letter stream.
TESTING_STREAM = StreamSpec(name="TESTING", subjects=("retail.testing.>",), max_age=3600.0)
DEADLETTER_STREAM = StreamSpec(name="DEADLETTER", subjects=("retail.deadletter.>",), max_age=3600.0)


async def connect_nats(url: str, name: str = "retail-test") -> Client:
    """A client that reconnects forever (tests kill and restart the server under it)."""

    async def on_error(exc: Exception) -> None:
        _log.info("nats %s: %s", name, exc or type(exc).__name__)

    return await nats.connect(
        url,
        error_cb=on_error,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
        allow_reconnect=True,
    )


async def migrate_messaging(dsn: str) -> None:
    from retail_common.messaging import MESSAGING_MIGRATIONS

    await migrate(dsn, [MESSAGING_MIGRATIONS])
