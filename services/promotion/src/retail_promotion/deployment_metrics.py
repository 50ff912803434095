"""Campaign deployment state metric (DESIGN §7): live campaign x channel targets by channel and state.

The state is the one the campaign board shows (domain.deployment.effective_state). Metric callbacks
run synchronously on the exporter's thread, so a background task refreshes the counts from the
database and the gauge reports the latest; every state of a channel is reported (0 included), so a
target leaving a state drops that series to 0 rather than leaving it at its last value.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

import asyncpg
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from retail_promotion.domain.deployment import Delivery, Target, TargetState, effective_state

__all__ = ["DeploymentStateGauge"]

logger = logging.getLogger("retail_promotion.deployment_metrics")

# Targets of SCHEDULED / ACTIVE campaigns with their channel's health (ended ones are history).
_LIVE_TARGETS = """
select t.channel_id, t.version, t.delivery, coalesce(h.degraded, false) as degraded,
       c.version as campaign_version
from deployment_targets t
join campaigns c using (campaign_id)
left join channel_health h using (channel_id)
where c.state in ('SCHEDULED', 'ACTIVE')
"""


class DeploymentStateGauge:
    def __init__(self, meter: Meter) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        meter.create_observable_gauge(
            "retail.promotion.deployment_targets",
            callbacks=[self._observe],
            unit="{target}",
            description="targets (campaign x channel) of live campaigns, by channel and deployment state",
        )

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"channel": channel, "state": state})
            for (channel, state), count in list(self._counts.items())
        ]

    async def refresh(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        for row in await pool.fetch(_LIVE_TARGETS):
            target = Target(
                row["channel_id"],
                version=row["version"],
                delivery=Delivery(row["delivery"]) if row["delivery"] else None,
                degraded=row["degraded"],
            )
            counts[(row["channel_id"], effective_state(target, row["campaign_version"]).value)] += 1
        channels = {channel for channel, _ in counts}
        self._counts = {
            (ch, st.value): counts[(ch, st.value)] for ch in sorted(channels) for st in TargetState
        }

    async def run(self, pool: asyncpg.Pool[asyncpg.Record], interval: float) -> None:
        """Refresh every `interval` seconds until cancelled; a database outage only delays it."""
        while True:
            try:
                await self.refresh(pool)
            except Exception:
                logger.exception("deployment state metric refresh failed")
            await asyncio.sleep(interval)
