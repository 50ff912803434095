"""`retailctl channels|dead-letters` against a real channel-gateway process whose marketplace endpoint
refuses connections (nothing listens), so its deliveries dead-letter after one attempt."""

from __future__ import annotations

from retail_channel_gateway.access import ADMIN_ROLE
from retail_channel_gateway.testing.harness import (
    Clients,
    availability,
    eventually,
    publish,
    register,
    webhook_channel,
)

from .conftest import Cli, Result, operator_key

DOWN = "127.0.0.1:1"  # nothing listens here


async def test_health_dead_letters_replay_resync_and_reconcile(
    start_service, service_env, nats_server, pool, cli: Cli
) -> None:
    gateway = await start_service(
        "retail_channel_gateway",
        {
            **service_env,
            "ALLOW_HTTP_WEBHOOKS": "true",
            "PRICING_TARGET": DOWN,
            "INVENTORY_RESERVATION_TARGET": DOWN,
            "FACADE_TIMEOUT_SECONDS": "0.5",
            "DELIVERY_POLL_SECONDS": "0.02",
            "REGISTRY_CACHE_SECONDS": "0",
        },
    )
    key = await operator_key(pool, "ops", [ADMIN_ROLE])
    clients = Clients(pool, gateway.address)
    try:
        refusing = webhook_channel("mkt", f"http://{DOWN}/hook")
        refusing.delivery.retry.max_attempts = 1
        await register(clients.operations(key), refusing, ["A"])
    finally:
        await clients.close()
    cli.target("channel-gateway", gateway.address)
    cli.key(key)
    await publish(nats_server.url, [availability("A", "s1", 1, {"mkt": 5})])

    letters: Result | None = None

    async def dead_lettered() -> bool:
        nonlocal letters
        letters = await cli("dead-letters", "list", "--json")
        return letters.code == 0 and bool(letters.json()["dead_letters"])

    await eventually(dead_lettered, "a dead letter for mkt")
    assert letters is not None
    [letter] = letters.json()["dead_letters"]
    assert (letter["channel_id"], letter["entity_key"]) == ("mkt", "availability/A/s1")

    listed = await cli("channels", "list")
    assert listed.code == 0
    assert listed.out.splitlines()[1].split()[:5] == ["mkt", "MKT", "MARKETPLACE", "webhook", "2"]

    health = await cli("channels", "health", "--json")
    assert health.code == 1  # DEGRADED while a dead letter is pending: a finding
    [state] = health.json()["channels"]
    assert (state["condition"], state["dead_letters"]) == ("CHANNEL_CONDITION_DEGRADED", "1")

    replayed = await cli("dead-letters", "replay", "mkt", "--id", letter["dead_letter_id"])
    assert replayed.code == 0, replayed.err
    assert replayed.out.startswith("1 dead letter(s) of mkt put back")
    # the replayed one is marked (the redelivery may dead-letter again as a new one: the endpoint is down)
    again = await cli("dead-letters", "list", "mkt", "--include-replayed", "--json")
    [marked] = [d for d in again.json()["dead_letters"] if d["dead_letter_id"] == letter["dead_letter_id"]]
    assert marked["replay_time"]

    resync = await cli("channels", "resync", "mkt", "--json")
    assert resync.code == 0, resync.err
    assert resync.json()["entities"] == "1"

    # the gateway answers, but the inventory it reconciles against is down: retry later (3), and the
    # message does not claim the gateway itself is unreachable
    reconcile = await cli("channels", "reconcile", "mkt")
    assert reconcile.code == 3
    assert "channel-gateway at" in reconcile.err
    assert "is up but cannot serve this now" in reconcile.err

    missing = await cli("channels", "health", "nope")
    assert missing.code == 4
    assert "'nope' not found in channel-gateway" in missing.err
