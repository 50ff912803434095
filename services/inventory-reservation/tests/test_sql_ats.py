"""The SQL ATS function (used by the conditional UPDATE) is the domain formula, fences included."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_common.db import IDEMPOTENCY_MIGRATIONS, migrate
from retail_inventory.domain.ats import Fence, Position, ats
from retail_inventory.repository import MIGRATIONS

CHANNELS = ["web", "app", "mkt"]
fence_specs = st.dictionaries(
    st.sampled_from(CHANNELS),
    st.one_of(
        st.builds(lambda n: {"fixed": n}, st.integers(0, 80)),
        st.builds(lambda bp: {"share_bp": bp}, st.integers(1, 10_000)),
    ),
)
positions = st.tuples(
    st.integers(-20, 300),
    st.integers(0, 300),
    st.integers(0, 50),
    fence_specs,
    st.dictionaries(st.sampled_from(CHANNELS), st.integers(1, 60)),
    st.sampled_from(CHANNELS),
)


def test_inv_ats_matches_domain(database_url):
    asyncio.run(migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MIGRATIONS]))

    async def sql_ats(case) -> int:
        on_hand, reserved, safety, fences, by_channel, channel = case
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "select inv_ats($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6)",
                    on_hand,
                    reserved,
                    safety,
                    json.dumps(fences),
                    json.dumps(by_channel),
                    channel,
                )
            )
        finally:
            await conn.close()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(positions)
    def check(case):
        on_hand, reserved, safety, fences, by_channel, channel = case
        domain_fences = {
            c: Fence(fixed=f["fixed"]) if "fixed" in f else Fence(share_bp=f["share_bp"])
            for c, f in fences.items()
        }
        position = Position(on_hand, reserved, safety, domain_fences, by_channel)
        assert asyncio.run(sql_ats(case)) == ats(position, channel).available_to_sell

    check()
