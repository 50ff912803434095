"""`retailctl dead-letters list|replay --events` against a real pricing process: its location consumer
dead-letters an undecodable message published on the inventory subject it reads; the other three
services are unreachable, which `list --events` across all four reports without hiding pricing's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from retail_common.grpcx.event_operations import EVENTS_OPERATOR_ROLE
from retail_common.messaging.testing import connect_nats

from .conftest import Cli, operator_key

DOWN = "127.0.0.1:1"  # nothing listens here
CONSUMER = "pricing-locations"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {within}s: {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def pricing(start_service: Any, service_env: dict[str, str], cli: Cli) -> Any:
    service = await start_service("retail_pricing", service_env)
    cli.target("pricing", service.address)
    for other in ("inventory-reservation", "promotion", "channel-gateway"):
        cli.target(other, DOWN)
    return service


async def dead_letter_one(nats_url: str) -> None:
    """An undecodable message (no envelope headers) where pricing's location consumer reads."""
    nc = await connect_nats(nats_url)
    try:
        js = nc.jetstream()

        async def stream_ready() -> bool:
            try:
                await js.stream_info("INVENTORY")  # pricing creates the suite's streams
            except Exception:
                return False
            return True

        await eventually(stream_ready, "pricing created the INVENTORY stream")
        await js.publish("retail.inventory.v1.location_upserted.store-1", b"not an event")
    finally:
        await nc.close()


async def test_list_and_replay_event_dead_letters(
    pricing: Any, pool: asyncpg.Pool, nats_server: Any, cli: Cli
) -> None:
    cli.key(await operator_key(pool, "alice", [EVENTS_OPERATOR_ROLE]))
    await dead_letter_one(nats_server.url)

    async def listed() -> bool:
        result = await cli("dead-letters", "list", "--events", "--service", "pricing", "--json")
        return result.code == 0 and bool(result.json()["dead_letters"])

    await eventually(listed, "pricing's consumer dead-lettered the message")

    # every service by default: pricing's letter on stdout, one line per unreachable service, exit 3
    everywhere = await cli("dead-letters", "list", "--events", "--json")
    assert everywhere.code == 3
    [letter] = everywhere.json()["dead_letters"]
    assert (letter["service"], letter["consumer"]) == ("pricing", CONSUMER)
    assert letter["subject"] == "retail.inventory.v1.location_upserted.store-1"
    assert letter["reason"].startswith("undecodable")
    assert letter["replay_count"] == 0
    failed = everywhere.err.strip().splitlines()
    assert len(failed) == 3
    assert all(DOWN in line for line in failed)
    assert {"inventory-reservation", "promotion", "channel-gateway"} <= set(everywhere.err.split())

    table = await cli("dead-letters", "list", "--events", "--service", "pricing", "--consumer", CONSUMER)
    assert table.code == 0, table.err
    header, row = table.out.strip().splitlines()
    assert header.split()[:3] == ["SERVICE", "ID", "CONSUMER"]
    assert row.split()[:3] == ["pricing", letter["dead_letter_id"], CONSUMER]
    assert "undecodable" in row

    # replay the consumer's pending ones; the same request id again answers the same
    replay = ["dead-letters", "replay", "--events", "--service", "pricing", "--consumer", CONSUMER]
    first = await cli(*replay, "--request-id", "replay-1", "--json")
    assert first.code == 0, first.err
    document = first.json()
    assert (document["service"], document["request_id"], document["remaining_count"]) == (
        "pricing",
        "replay-1",
        "0",
    )
    [replayed] = document["dead_letters"]
    assert (replayed["dead_letter_id"], replayed["replay_count"]) == (letter["dead_letter_id"], 1)
    again = await cli(*replay, "--request-id", "replay-1", "--json")
    assert again.json() == document
    text = await cli(
        "dead-letters", "replay", "--events", "--service", "pricing", "--id", letter["dead_letter_id"]
    )
    assert text.code == 0, text.err
    assert text.out.startswith("1 event dead letter(s) of pricing republished")

    # still undecodable: each of the two replays is dead-lettered again, as a new dead letter
    async def dead_again() -> bool:
        result = await cli("dead-letters", "list", "--events", "--service", "pricing", "--json")
        return [d["replay_count"] for d in result.json()["dead_letters"]] == [0, 0]

    await eventually(dead_again, "the replayed message dead-lettered again")
    history = await cli(
        "dead-letters", "list", "--events", "--service", "pricing", "--include-replayed", "--json"
    )
    counts = {d["dead_letter_id"]: d["replay_count"] for d in history.json()["dead_letters"]}
    assert counts[letter["dead_letter_id"]] == 2
    assert len(counts) == 3

    # refusals and usage
    unknown = await cli("dead-letters", "replay", "--events", "--service", "pricing", "--id", "987654")
    assert unknown.code == 4
    assert "EventDeadLetter '987654' not found in pricing" in unknown.err
    assert (await cli("dead-letters", "list", "mkt", "--events")).code == 2
    assert (await cli("dead-letters", "replay", "--events", "--consumer", CONSUMER)).code == 2
    assert (await cli("dead-letters", "replay", "--events", "--service", "pricing")).code == 2
    assert (await cli("dead-letters", "list", "--service", "pricing")).code == 2

    cli.key(await operator_key(pool, "bob", ["pricing.operator"]))
    denied = await cli("dead-letters", "list", "--events", "--service", "pricing")
    assert denied.code == 4
    assert "lacks the role" in denied.err
