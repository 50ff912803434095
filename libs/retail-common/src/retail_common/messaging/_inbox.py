"""Inbox consumer runner: durable pull consumer, each message's effect committed once, ack after commit.

Per fetched batch, in one transaction (`_inbox_gate`): one statement locks the batch's aggregates in a
global order and reads their versions and which events the inbox already holds; the per-message rules
are replayed in Python; one statement records the inbox rows and new versions; the handlers run for the
applied messages (each in its own CONSUMER span); one commit; then every message is acked. If anything
fails, the batch is rolled back and redone one transaction per message, so a failing message never takes
others with it.

Version gates:
- NEWER (default; DESIGN §5, for state-carried events): apply only if the version is greater than the
  last applied one; an older or equal version is recorded in the inbox, acked, not applied.
- SEQUENTIAL (for consumers that accumulate deltas): apply only version last+1; older is skipped as
  above; a gap (a predecessor not applied yet, e.g. still awaiting redelivery) is not recorded and is
  nak'd with a short delay, so versions are applied 1..n in order, each exactly once.

Failures (`_inbox_failures`): a handler exception naks with `backoff[n]`; once the delivery count
reaches `max_deliver` (or at once for an undecodable message) the message is written to the DEADLETTER
stream and the `dead_letters` table and then terminated. Connection-level errors are retried freely
`transient_retries` times in a row, then count like handler failures while the database answers.

Housekeeping (`_inbox_prune`): inbox rows older than the stream's max age plus a margin are deleted
every `prune_interval` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind

from retail_common.db import Connection
from retail_common.messaging._deadletters import write_dead_letter
from retail_common.messaging._envelope import Envelope, UndecodableMessageError, decode_envelope
from retail_common.messaging._inbox_failures import (
    TRANSIENT_ERRORS,
    TransientStreaks,
    Verdict,
    handler_failure,
    transient_failure,
)
from retail_common.messaging._inbox_gate import (
    Claim,
    ClaimRaceError,
    Outcome,
    VersionPolicy,
    decide,
    lock_and_read,
    record,
)
from retail_common.messaging._inbox_prune import (
    DEFAULT_MARGIN,
    prune_inbox,
    prune_inbox_chunked,
    retention_for_stream,
)
from retail_common.messaging._inbox_spans import parent_context
from retail_common.messaging._streams import ConsumerSpec, ensure_consumer
from retail_common.messaging._telemetry import message_attributes
from retail_common.messaging._telemetry import meter as default_meter
from retail_common.messaging._telemetry import tracer as default_tracer

__all__ = ["BatchHandler", "Handler", "InboxConsumer", "Outcome", "VersionPolicy", "prune_inbox"]

_log = logging.getLogger(__name__)

Handler = Callable[[Connection, Envelope], Awaitable[None]]
# Opt-in: applies all applied envelopes of a batch at once (set-based), in handling order.
BatchHandler = Callable[[Connection, Sequence[Envelope]], Awaitable[None]]

# A race lost to another replica is not the message's fault either.
_TRANSIENT = (*TRANSIENT_ERRORS, ClaimRaceError)


@dataclass(slots=True)
class _Item:
    msg: Msg
    env: Envelope
    claim: Claim


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
        handler: Handler | None = None,
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
        batch_handler: BatchHandler | None = None,
        transient_retries: int = 10,
        prune_interval: float | None = 3600.0,
        inbox_retention: float | None = None,
    ) -> None:
        """`handler(conn, envelope)` or `batch_handler(conn, envelopes)` (exactly one) runs in the inbox
        transaction. `prune_interval=None` disables pruning; `inbox_retention` defaults to the stream's
        max age plus one day."""
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
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
        self._batch_handler = batch_handler
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._policy = version_policy
        self._gap_delay = gap_delay
        self._deadletter_stream = deadletter_stream
        self._tracer = tracer or default_tracer()
        self._stopping = asyncio.Event()
        self._concurrency = concurrency
        self._transient_retries = transient_retries
        self._streaks = TransientStreaks()
        self._probe: tuple[float, bool] = (float("-inf"), False)
        self._prune_interval = prune_interval
        self._inbox_retention = inbox_retention
        self.pruned = 0
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
        loops = [self._loop() for _ in range(self._concurrency)]
        pruner = self._prune_loop() if self._prune_interval is not None else None
        await asyncio.gather(*loops, *([pruner] if pruner else []))

    async def _loop(self) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        # The next batch is fetched while this one is in the database: NATS and Postgres round trips
        # overlap. Batches are still handled one after the other, so per-aggregate order is kept.
        ahead: asyncio.Task[list[Msg]] | None = None
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
                fetch, ahead = ahead or asyncio.create_task(self._fetch(sub)), None
                try:
                    msgs = await fetch
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
                if not self._stopping.is_set():
                    ahead = asyncio.create_task(self._fetch(sub))
                await self.handle_batch(msgs)
        finally:
            if ahead is not None:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    ahead.cancel()  # unacked messages come back after ack_wait
                else:
                    await self._give_back(ahead)
            if sub is not None:
                await _unsubscribe(sub)

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        # Watchdog: a fetch whose request or reply was lost in a reconnect must not hang.
        msgs: list[Msg] = await asyncio.wait_for(
            sub.fetch(self._batch, timeout=self._fetch_timeout), self._fetch_timeout + 5.0
        )
        return msgs

    async def _give_back(self, ahead: asyncio.Task[list[Msg]]) -> None:
        """On the way out, nak what the fetch ahead got, so other replicas need not wait for ack_wait."""
        with contextlib.suppress(Exception):
            for msg in await ahead:
                await _quietly(msg.nak())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- handling -----------------------------------------------------------------------------------

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        items: list[_Item] = []
        for msg in msgs:
            try:
                env = decode_envelope(msg.subject, msg.headers, msg.data)
            except UndecodableMessageError as exc:
                await self._dead_letter(msg, f"undecodable: {exc}")
                continue
            claim = Claim(env.dedupe_id, env.aggregate_type, env.aggregate_key, env.aggregate_version)
            items.append(_Item(msg, env, claim))
        if not items:
            return
        # Aggregates in key order; the stable sort keeps each aggregate's messages in delivery order.
        items.sort(key=lambda item: item.claim.aggregate)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                outcomes = await self._apply(conn, items)
        except Exception as exc:
            _log.info("inbox %s: batch rolled back (%r); redoing one by one", self.consumer, exc)
            await self._apply_one_by_one(items)
            return
        await self._settle(items, outcomes)

    async def _apply_one_by_one(self, items: Sequence[_Item]) -> None:
        for item in items:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    outcomes = await self._apply(conn, [item])
            except Exception as exc:
                await self._failed(item.msg, exc)
                continue
            await self._settle([item], outcomes)

    async def _apply(self, conn: Connection, items: Sequence[_Item]) -> list[Outcome]:
        """Gate and handle `items` inside the caller's transaction."""
        claims = [item.claim for item in items]
        current, seen = await lock_and_read(conn, self.consumer, claims)
        outcomes, advanced = decide(claims, current, seen, self._policy)
        await record(conn, self.consumer, claims, outcomes, advanced)
        spans = [self._start_span(item, outcome) for item, outcome in zip(items, outcomes, strict=True)]
        try:
            if self._batch_handler is not None:
                await self._handle_together(conn, items, outcomes, spans)
            else:
                assert self._handler is not None
                for item, outcome, span in zip(items, outcomes, spans, strict=True):
                    if outcome is Outcome.APPLIED:
                        with trace.use_span(span, record_exception=True, set_status_on_exception=True):
                            await self._handler(conn, item.env)
        finally:
            for span in spans:
                span.end()
        return outcomes

    async def _handle_together(
        self,
        conn: Connection,
        items: Sequence[_Item],
        outcomes: Sequence[Outcome],
        spans: Sequence[trace.Span],
    ) -> None:
        applied = [i for i, o in enumerate(outcomes) if o is Outcome.APPLIED]
        if not applied:
            return
        assert self._batch_handler is not None
        # One span for the set-based call, linked to each message's own CONSUMER span.
        links = [Link(spans[i].get_span_context()) for i in applied]
        with self._tracer.start_as_current_span(
            f"process batch {self.consumer}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.batch.message_count": len(applied)},
        ):
            await self._batch_handler(conn, [items[i].env for i in applied])

    def _start_span(self, item: _Item, outcome: Outcome) -> trace.Span:
        env = item.env
        parent = parent_context(env.traceparent, env.tracestate)
        span = self._tracer.start_span(f"process {env.subject}", context=parent, kind=SpanKind.CONSUMER)
        if span.is_recording():  # attributes cost a dict per message; skip them when nothing records
            attributes: dict[str, Any] = message_attributes(
                env.subject, str(env.event_id), len(env.payload), "process"
            )
            attributes.update(
                {
                    "messaging.consumer.group.name": self.consumer,
                    "messaging.nats.delivery_count": item.msg.metadata.num_delivered,
                    "retail.event.type": env.event_type,
                    "retail.aggregate.key": env.aggregate_key,
                    "retail.aggregate.version": env.aggregate_version,
                    "retail.inbox.outcome": outcome.value,
                }
            )
            span.set_attributes(attributes)
        return span

    async def _settle(self, items: Sequence[_Item], outcomes: Sequence[Outcome]) -> None:
        """After commit: ack (or nak a gap); acks are publishes buffered by the client, flushed together."""
        tally = collections.Counter(outcomes)
        for outcome, n in tally.items():
            self.counts[outcome.value] += n
            self._handled.add(n, self._attrs | {"outcome": outcome.value})
        for item, outcome in zip(items, outcomes, strict=True):
            msg = item.msg
            if len(self._streaks):
                self._streaks.forget(msg.metadata.sequence.stream)
            if outcome is not Outcome.GAP:
                await _quietly(msg.ack())
                continue
            delivered = msg.metadata.num_delivered
            if delivered >= self.spec.max_deliver:  # the predecessor never came (e.g. it was dead-lettered)
                await self._dead_letter(
                    msg, f"version gap: a predecessor was not applied after {delivered} tries"
                )
            else:
                await _quietly(msg.nak(delay=self._gap_delay))

    async def _failed(self, msg: Msg, error: BaseException) -> None:
        self.counts["failed"] += 1
        delivered = msg.metadata.num_delivered
        seq = msg.metadata.sequence.stream
        verdict: Verdict
        if isinstance(error, _TRANSIENT):
            streak = self._streaks.next(seq)
            answers = streak <= self._transient_retries or await self._database_answers()
            if answers:  # while the database is down, failures are the outage's, not the message's
                self._streaks.count(seq, streak)
            verdict = transient_failure(
                error,
                streak,
                free=self._transient_retries,
                database_answers=answers,
                max_deliver=self.spec.max_deliver,
                backoff=self.spec.backoff,
            )
            _log.warning("inbox %s: transient error (streak %d): %r", self.consumer, streak, error)
        else:
            self._streaks.forget(seq)
            verdict = handler_failure(error, delivered, self.spec.max_deliver, self.spec.backoff)
            _log.warning("inbox %s: handler failed (delivery %d): %r", self.consumer, delivered, error)
        if verdict.dead_reason is not None:
            self._streaks.forget(seq)
            await self._dead_letter(msg, verdict.dead_reason)
        else:
            await _quietly(msg.nak(delay=verdict.delay))

    async def _database_answers(self) -> bool:
        """Whether Postgres answers a trivial query (cached for a second: a batch fails together)."""
        loop = asyncio.get_running_loop()
        probed_at, answered = self._probe
        if loop.time() - probed_at < 1.0:
            return answered
        try:
            async with asyncio.timeout(2.0):
                await self._pool.fetchval("select 1")
            answered = True
        except Exception:
            answered = False
        self._probe = (loop.time(), answered)
        return answered

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

    # -- housekeeping -------------------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        assert self._prune_interval is not None
        while not self._stopping.is_set():
            await self.prune_once()
            await self._sleep(self._prune_interval)

    async def prune_once(self) -> int | None:
        """Delete inbox rows past the retention; the count, or None if skipped. Never raises."""
        try:
            retention = self._inbox_retention
            if retention is None:
                retention = await retention_for_stream(self._js, self.stream, DEFAULT_MARGIN)
            if retention is None:
                return None  # the stream keeps messages forever: so must the inbox
            deleted = await prune_inbox_chunked(
                self._pool, consumer=self.consumer, older_than_seconds=retention
            )
        except Exception as exc:
            _log.warning("inbox %s: pruning failed, will retry: %s", self.consumer, exc)
            return None
        if deleted:
            self.pruned += deleted
            _log.info("inbox %s: pruned %d rows older than %.0fs", self.consumer, deleted, retention)
        return deleted


async def _unsubscribe(sub: JetStreamContext.PullSubscription) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


async def _quietly(awaitable: Awaitable[None]) -> None:
    """Acks and naks are best effort: a lost ack means a redelivery, which the inbox absorbs."""
    with contextlib.suppress(Exception):
        await awaitable
