"""One trace across the whole suite: a channel's ReserveStock call (gateway SERVER) -> inventory
(SERVER) -> inventory's outbox relay publishing the AvailabilityChanged it caused (PRODUCER) -> the
gateway's inbox consumer projecting it (CONSUMER) -> the signed webhook delivery of that availability
change to a marketplace (CLIENT, a child of the projection or linked to it when batched). Spans are
exported by every service process to a real OTLP receiver; the channel calls come from the scenario."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from retail_common.testing.nats import NatsServer
from retail_common.testing.otlp import OtlpReceiver, ReceivedSpan
from retail_common.testing.postgres import PostgresServer
from retailctl.scenario import new_plan, run_scenario
from tests.e2e.suite import start_suite

AVAILABILITY = "retail.inventory.v1.AvailabilityChanged"


def _reserve_trace(spans: list[ReceivedSpan], market: str) -> list[ReceivedSpan] | None:
    """The spans of a channel ReserveStock trace that reaches the market's webhook, if one is complete."""
    deliveries = [
        s for s in spans if s.name == f"deliver {market}" and s.attributes.get("retail.delivery.ok")
    ]
    for server in spans:
        if not (server.service_name == "channel-gateway" and server.kind == "SERVER"
                and server.name.endswith("ChannelGatewayService/ReserveStock")):  # fmt: skip
            continue
        trace = [s for s in spans if s.trace_id == server.trace_id]
        published = any(
            s.service_name == "inventory-reservation" and s.kind == "PRODUCER"
            and s.attributes.get("retail.event.type") == AVAILABILITY for s in trace
        )  # fmt: skip
        projected = any(
            s.service_name == "channel-gateway" and s.kind == "CONSUMER"
            and s.attributes.get("retail.event.type") == AVAILABILITY for s in trace
        )  # fmt: skip
        delivered = [
            d for d in deliveries
            if d.trace_id == server.trace_id or any(t == server.trace_id for t, _ in d.links)
        ]  # fmt: skip
        if published and projected and delivered:
            return trace + delivered
    return None


async def test_a_channel_reservation_and_its_webhook_delivery_are_one_trace(
    postgres_server: PostgresServer, nats_server: NatsServer, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    telemetry = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    suite = await start_suite(postgres_server, nats_server, tmp_path, telemetry)
    plan = new_plan(stores=24)
    found: list[ReceivedSpan] = []

    async def after_orders(step: str) -> None:
        if step == "orders":  # the marketplaces are still being served by the scenario
            spans = await asyncio.to_thread(
                otlp_receiver.wait_for, lambda s: _reserve_trace(s, plan.market_ok) is not None, 90.0
            )
            found.extend(_reserve_trace(spans, plan.market_ok) or [])

    narration = io.StringIO()
    try:
        await run_scenario(
            plan, suite.targets, suite.operator, suite.approver, out=narration, between=after_orders
        )
    except BaseException:
        print(narration.getvalue(), suite.logs(), sep="\n")
        raise
    finally:
        await suite.close()
    services = {(s.service_name, s.kind) for s in found}
    assert {
        ("channel-gateway", "SERVER"),
        ("inventory-reservation", "SERVER"),
        ("inventory-reservation", "PRODUCER"),
        ("channel-gateway", "CONSUMER"),
        ("channel-gateway", "CLIENT"),
    } <= services
    server = next(
        s for s in found if s.kind == "SERVER" and s.name.endswith("ChannelGatewayService/ReserveStock")
    )
    inventory = next(s for s in found if s.service_name == "inventory-reservation" and s.kind == "SERVER")
    assert inventory.name == "/retail.inventory.v1.InventoryService/ReserveStock"
    assert inventory.trace_id == server.trace_id
    assert all(s.kind == "CLIENT" for s in found if s.name == f"deliver {plan.market_ok}")
