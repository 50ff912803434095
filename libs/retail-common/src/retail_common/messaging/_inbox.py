"""Inbox consumer runner: durable pull consumer, one DB transaction per message's effect, ack after commit.

Per message, inside a transaction: insert (consumer, event id) into `inbox` (conflict = already done:
ack and skip); lock and read `inbox_versions` for the aggregate; apply through the handler only if the
version gate passes; record the new version; commit; then ack.

Batching: the messages of one fetch share one transaction (one commit, one WAL flush, instead of one per
message) while each message keeps its own inbox row, version gate and CONSUMER span. If any handler
fails, the shared transaction is rolled back and the batch is redone one transaction per message, so a
failing message never takes others with it.

Version gates:
- NEWER (default; DESIGN §5, for state-carried events): apply only if the version is greater than the
  last applied one; an older or equal version is recorded in the inbox, acked, not applied.
- SEQUENTIAL (for consumers that accumulate deltas): apply only version last+1; older is skipped as
  above; a gap (a predecessor not applied yet, e.g. still awaiting redelivery) is not recorded and is
  nak'd with a short delay, so versions are applied 1..n in order, each exactly once.

Failures: a handler exception rolls back and naks with `backoff[n]`; once the delivery count reaches
`max_deliver` (or at once for an undecodable message) the message is written to the DEADLETTER stream
and the `dead_letters` table and then terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from retail_common.db import Connection
from retail_common.messaging._deadletters import write_dead_letter
from retail_common.messaging._envelope import Envelope, UndecodableMessageError, decode_envelope
from retail_common.messaging._propagation import extract_context
from retail_common.messaging._streams import ConsumerSpec, ensure_consumer
from retail_common.messaging._telemetry import message_attributes
from retail_common.messaging._telemetry import meter as default_meter
from retail_common.messaging._telemetry import tracer as default_tracer

__all__ = ["Handler", "InboxConsumer", "Outcome", "VersionPolicy", "prune_inbox"]

_log = logging.getLogger(__name__)

Handler = Callable[[Connection, Envelope], Awaitable[None]]


class VersionPolicy(enum.Enum):
    NEWER = "newer"
    SEQUENTIAL = "sequential"


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    GAP = "gap"


# One statement on the common path: record (consumer, event id) in the inbox and advance the aggregate's
# version if the gate passes. `fresh` is false for a duplicate; `advanced` is true when the handler must
# run. The upsert locks the inbox_versions row, so replicas handling one aggregate serialise on it.
# $6: true = NEWER (advance if greater), false = SEQUENTIAL (advance only from version - 1; a first
# version of an unseen aggregate must be 1).
_CLAIM = """
with fresh as (
    insert into inbox (consumer, event_id, aggregate_type, aggregate_key, aggregate_version, applied)
    values ($1, $2, $3, $4, $5, true)
    on conflict (consumer, event_id) do nothing
    returning 1
), advanced as (
    -- A first-seen aggregate under SEQUENTIAL with a version > 1 gets a row at 0 ("nothing applied").
    insert into inbox_versions as iv (consumer, aggregate_type, aggregate_key, version)
    select $1, $3, $4, case when $6 or $5 = 1 then $5 else 0 end where exists (select 1 from fresh)
    on conflict (consumer, aggregate_type, aggregate_key) do update set version = $5
    where ($6 and iv.version < $5) or (not $6 and iv.version = $5 - 1)
    returning iv.version
)
select exists (select 1 from fresh) as fresh, exists (select 1 from advanced where version = $5) as advanced
"""

# Rare path (not advanced): the locked current version tells a stale message from a gap.
_CURRENT = """
select version from inbox_versions
where consumer = $1 and aggregate_type = $2 and aggregate_key = $3 for update
"""

_STALE = "update inbox set applied = false where consumer = $1 and event_id = $2"
_UNCLAIM = "delete from inbox where consumer = $1 and event_id = $2"

# Infrastructure trouble (not the message's fault): nak and retry without counting toward dead letters.
_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,
    TimeoutError,
)


async def prune_inbox(conn: Connection, *, consumer: str, older_than_seconds: float) -> int:
    """Delete inbox rows older than the retention (keep it >= the stream's max age)."""
    status = await conn.execute(
        "delete from inbox where consumer = $1 and received_at < now() - make_interval(secs => $2)",
        consumer,
        older_than_seconds,
    )
    return int(status.split()[-1])


class InboxConsumer:
    """Runs one durable pull consumer; any number of replicas may run the same durable."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        filter_subject: str | Sequence[str],
        handler: Handler,
        max_deliver: int = 5,
        backoff: Sequence[float] = (1.0, 5.0, 30.0),
        batch: int = 100,
        ack_wait: float = 30.0,
        max_ack_pending: int = 1000,
        fetch_timeout: float = 1.0,
        version_policy: VersionPolicy = VersionPolicy.NEWER,
        gap_delay: float = 0.2,
        concurrency: int = 1,
        deadletter_stream: str = "DEADLETTER",
        tracer: trace.Tracer | None = None,
        meter: metrics.Meter | None = None,
    ) -> None:
        subjects = (filter_subject,) if isinstance(filter_subject, str) else tuple(filter_subject)
        self.spec = ConsumerSpec(
            durable=durable,
            filter_subjects=subjects,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            backoff=tuple(backoff) or (1.0,),
            max_ack_pending=max_ack_pending,
        )
        self._pool = pool
        self._js = js
        self.stream = stream
        self.consumer = durable
        self._handler = handler
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._policy = version_policy
        self._gap_delay = gap_delay
        self._deadletter_stream = deadletter_stream
        self._tracer = tracer or default_tracer()
        self._stopping = asyncio.Event()
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._concurrency = concurrency
        self.counts: dict[str, int] = {o.value: 0 for o in Outcome} | {"failed": 0, "dead_lettered": 0}
        m = meter or default_meter()
        self._attrs = {"consumer": durable, "stream": stream}
        self._handled = m.create_counter(
            "retail.inbox.messages", unit="{message}", description="messages handled, by outcome"
        )
        self._dead = m.create_counter(
            "retail.inbox.dead_letters", unit="{message}", description="messages sent to dead letters"
        )

    def stop(self) -> None:
        """Ask `run()` to return after the batch in hand is committed and acked."""
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and handle until `stop()`; `concurrency` fetch loops, each with its own pull subscription."""
        await asyncio.gather(*(self._loop() for _ in range(self._concurrency)))

    async def _loop(self) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        errors = 0
        try:
            while not self._stopping.is_set():
                if sub is None:
                    try:
                        await ensure_consumer(self._js, self.stream, self.spec)
                        sub = await self._js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
                    except Exception as exc:
                        errors += 1
                        _log.warning("inbox %s: cannot bind consumer: %s", self.consumer, exc)
                        await self._sleep(min(0.1 * 2**errors, 2.0))
                        continue
                try:
                    # Watchdog: a fetch whose request or reply was lost in a reconnect must not hang.
                    msgs = await asyncio.wait_for(
                        sub.fetch(self._batch, timeout=self._fetch_timeout), self._fetch_timeout + 5.0
                    )
                except TimeoutError:  # also nats' TimeoutError/FetchTimeoutError: an empty fetch
                    errors = 0
                    continue
                except Exception as exc:
                    errors += 1
                    _log.warning("inbox %s: fetch failed (%d): %s", self.consumer, errors, exc)
                    if errors >= 3:  # persistent: recreate the pull subscription
                        await _unsubscribe(sub)
                        sub = None
                    await self._sleep(min(0.05 * 2**errors, 2.0))
                    continue
                errors = 0
                await self.handle_batch(msgs)
        finally:
            if sub is not None:
                await _unsubscribe(sub)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- handling -----------------------------------------------------------------------------------

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        decoded: list[tuple[Msg, Envelope]] = []
        for msg in msgs:
            try:
                decoded.append((msg, decode_envelope(msg.subject, msg.headers, msg.data)))
            except UndecodableMessageError as exc:
                await self._dead_letter(msg, f"undecodable: {exc}")
        if not decoded:
            return
        try:
            outcomes = await self._apply_together(decoded)
        except Exception as exc:
            _log.info("inbox %s: batch rolled back (%r); redoing one by one", self.consumer, exc)
            await self._apply_one_by_one(decoded)
            return
        for (msg, _), outcome in zip(decoded, outcomes, strict=True):
            await self._settle(msg, outcome)

    async def _apply_together(self, decoded: Sequence[tuple[Msg, Envelope]]) -> list[Outcome]:
        # Lock order: aggregates in ascending key order (a stable sort keeps each aggregate's messages in
        # delivery order), so replicas committing overlapping batches cannot deadlock on each other.
        order = sorted(
            range(len(decoded)), key=lambda i: (decoded[i][1].aggregate_type, decoded[i][1].aggregate_key)
        )
        by_index: dict[int, Outcome] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            for i in order:
                msg, env = decoded[i]
                by_index[i] = await self._apply(conn, msg, env)
        return [by_index[i] for i in range(len(decoded))]

    async def _apply_one_by_one(self, decoded: Sequence[tuple[Msg, Envelope]]) -> None:
        for msg, env in decoded:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    outcome = await self._apply(conn, msg, env)
            except Exception as exc:
                await self._failed(msg, exc)
                continue
            await self._settle(msg, outcome)

    async def _apply(self, conn: Connection, msg: Msg, env: Envelope) -> Outcome:
        parent = extract_context(env.traceparent, env.tracestate)
        attributes: dict[str, Any] = message_attributes(
            env.subject, str(env.event_id), len(env.payload), "process"
        )
        attributes.update(
            {
                "messaging.consumer.group.name": self.consumer,
                "messaging.nats.delivery_count": msg.metadata.num_delivered,
                "retail.event.type": env.event_type,
                "retail.aggregate.key": env.aggregate_key,
                "retail.aggregate.version": env.aggregate_version,
            }
        )
        with self._tracer.start_as_current_span(
            f"process {env.subject}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            outcome = await self._gate_and_handle(conn, env)
            span.set_attribute("retail.inbox.outcome", outcome.value)
            return outcome

    async def _gate_and_handle(self, conn: Connection, env: Envelope) -> Outcome:
        newer = self._policy is VersionPolicy.NEWER
        row = await conn.fetchrow(
            _CLAIM,
            self.consumer,
            env.dedupe_id,
            env.aggregate_type,
            env.aggregate_key,
            env.aggregate_version,
            newer,
        )
        assert row is not None
        if not row["fresh"]:
            return Outcome.DUPLICATE
        if not row["advanced"]:
            current = await conn.fetchval(_CURRENT, self.consumer, env.aggregate_type, env.aggregate_key)
            if env.aggregate_version <= (current or 0):
                await conn.execute(_STALE, self.consumer, env.dedupe_id)
                return Outcome.STALE
            # SEQUENTIAL and a predecessor is missing: leave no trace, retry after a short delay.
            await conn.execute(_UNCLAIM, self.consumer, env.dedupe_id)
            return Outcome.GAP
        await self._handler(conn, env)
        return Outcome.APPLIED

    async def _settle(self, msg: Msg, outcome: Outcome) -> None:
        self.counts[outcome.value] += 1
        self._handled.add(1, self._attrs | {"outcome": outcome.value})
        if outcome is Outcome.GAP:
            delivered = msg.metadata.num_delivered
            if delivered >= self.spec.max_deliver:  # the predecessor never came (e.g. it was dead-lettered)
                await self._dead_letter(
                    msg, f"version gap: a predecessor was not applied after {delivered} tries"
                )
            else:
                await _quietly(msg.nak(delay=self._gap_delay))
        else:
            await _quietly(msg.ack())

    async def _failed(self, msg: Msg, error: BaseException) -> None:
        self.counts["failed"] += 1
        delivered = msg.metadata.num_delivered
        if isinstance(error, _TRANSIENT):
            _log.warning("inbox %s: database error: %s", self.consumer, error)
            await _quietly(msg.nak(delay=self.spec.backoff[0]))
            return
        _log.warning("inbox %s: handler failed (delivery %d): %r", self.consumer, delivered, error)
        if delivered >= self.spec.max_deliver:
            await self._dead_letter(msg, f"handler failed {delivered} times: {error!r}")
            return
        backoff = self.spec.backoff
        await _quietly(msg.nak(delay=backoff[min(delivered - 1, len(backoff) - 1)]))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        try:
            await write_dead_letter(
                self._pool,
                self._js,
                msg,
                consumer=self.consumer,
                reason=reason,
                deadletter_stream=self._deadletter_stream,
            )
        except Exception as exc:
            _log.warning("inbox %s: dead-lettering failed, will retry: %s", self.consumer, exc)
            await _quietly(msg.nak(delay=self.spec.backoff[0]))
            return
        self.counts["dead_lettered"] += 1
        self._dead.add(1, self._attrs)
        await _quietly(msg.term())


async def _unsubscribe(sub: JetStreamContext.PullSubscription) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


async def _quietly(awaitable: Awaitable[None]) -> None:
    """Acks and naks are best effort: a lost ack means a redelivery, which the inbox absorbs."""
    with contextlib.suppress(Exception):
        await awaitable
