"""The ledger's SQL against the pure rules (domain/ledger.py) as a reference model: random sequences of
projections (late, duplicate and newer versions), deliveries of what a worker fetched (acknowledged or
failed, possibly after newer projections arrived meanwhile), dead letters and replays, on real Postgres."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import Lane
from retail_channel_gateway.domain.ledger import accepts_projection, advance_delivered, is_pending
from retail_channel_gateway.domain.policy import DeliveryMode, DeliverySettings
from retail_channel_gateway.repository import MIGRATIONS, ChannelRepository, LedgerRepository
from retail_common.db import create_pool, migrate, transaction
from retail_common.service import RUNTIME_MIGRATIONS

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)
ENTITIES = ["price/A", "price/B", "availability/A/s1"]
MAX_ATTEMPTS = 2


@dataclass
class Entity:
    projected: int = 0
    delivered: int = 0
    attempts: int = 0
    dead: bool = False


@dataclass
class Model:
    entities: dict[str, Entity] = field(default_factory=dict)
    fetched: list[tuple[str, int]] = field(default_factory=list)

    def project(self, key: str, version: int) -> None:
        e = self.entities.setdefault(key, Entity())
        if accepts_projection(e.projected or None, version):
            e.projected, e.attempts, e.dead = version, 0, False

    def pending(self) -> set[tuple[str, int]]:
        return {
            (k, e.projected) for k, e in self.entities.items() if is_pending(e.projected, e.delivered, e.dead)
        }

    def delivered(self, items: list[tuple[str, int]]) -> None:
        for key, version in items:
            e = self.entities[key]
            if e.projected == version:
                e.attempts = 0
            e.delivered = advance_delivered(e.delivered, version)

    def failed(self, items: list[tuple[str, int]]) -> set[tuple[str, int]]:
        dead = set()
        for key, version in items:
            e = self.entities[key]
            if e.projected == version and not e.dead:  # a failure of a superseded version changes nothing
                e.attempts += 1
                if e.attempts >= MAX_ATTEMPTS:
                    e.dead = True
                    dead.add((key, version))
        return dead

    def replay(self) -> None:
        for e in self.entities.values():
            if e.dead:
                e.dead, e.attempts = False, 0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("project"), st.sampled_from(ENTITIES), st.integers(min_value=1, max_value=6)),
        st.tuples(st.just("fetch")),
        st.tuples(st.just("ack")),
        st.tuples(st.just("fail")),
        st.tuples(st.just("replay")),
    ),
    min_size=1,
    max_size=40,
)
_channels = itertools.count()


async def run_sequence(database_url: str, sequence: list[tuple]) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    channels, ledger = ChannelRepository(), LedgerRepository()
    channel = f"c{next(_channels)}"
    model = Model()
    try:
        async with transaction(pool) as conn:
            await channels.create(
                conn,
                channel_id=channel,
                display_name=channel,
                kind="ECOMMERCE",
                location_ids=[],
                settings=DeliverySettings(mode=DeliveryMode.WEBHOOK),
                active=True,
                webhook_secret=None,
                signing_key_id=None,
            )
        for op in sequence:
            async with transaction(pool) as conn:
                if op[0] == "project":
                    _, key, version = op
                    change = changes_pb2.ChannelChange(channel_id=channel, entity_key=key, version=version)
                    await ledger.project(
                        conn,
                        channel_id=channel,
                        change=change,
                        kind="PRICE",
                        lane=Lane.FAST,
                        projected_at=T0,
                        due_at=T0,
                        change_log=False,
                    )
                    model.project(key, version)
                elif op[0] == "fetch":
                    rows = await ledger.pending(conn, channel, FAR, 100)
                    model.fetched = [(r.entity_key, r.version) for r in rows]
                elif op[0] == "ack":
                    await ledger.mark_delivered(conn, channel, model.fetched, acknowledged=True)
                    model.delivered(model.fetched)
                elif op[0] == "fail":
                    items = [(k, v, T0) for k, v in model.fetched]
                    dead = await ledger.mark_failed(
                        conn, channel, items, error="x", max_attempts=MAX_ATTEMPTS
                    )
                    assert {(d.entity_key, d.version) for d in dead} == model.failed(model.fetched)
                else:
                    await ledger.replay_dead_letters(conn, channel, None, T0)
                    model.replay()
                rows = await ledger.pending(conn, channel, FAR, 100)
                assert {(r.entity_key, r.version) for r in rows} == model.pending(), op
                entries = await ledger.ledger_entries(conn, channel, after="", limit=100, only_pending=False)
                assert {str(e["entity_key"]): e["delivered_version"] for e in entries} == {
                    k: e.delivered for k, e in model.entities.items()
                }, op
    finally:
        await pool.close()


def test_ledger_sql_follows_the_reference_rules(database_url):
    asyncio.run(migrate(database_url, [*RUNTIME_MIGRATIONS, MIGRATIONS]))

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(operations)
    def check(sequence):
        asyncio.run(run_sequence(database_url, sequence))

    check()
