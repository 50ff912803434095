"""Raw baselines: plain nats-py JetStream publish and consume loops, no database, no envelope logic."""

from __future__ import annotations

import asyncio
import time
import uuid

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig


async def raw_publish(
    js: JetStreamContext, subject: str, count: int, payload: bytes, window: int = 500
) -> float:
    """Publish `count` messages pipelined `window` at a time (publish_async, then await the PubAcks).

    Same pipelining and the same header count as the relay, so the ratio isolates the relay's own cost.
    Returns messages per second.
    """
    started = time.perf_counter()
    for first in range(0, count, window):
        futures = []
        for i in range(first, min(first + window, count)):
            headers = {
                "Nats-Msg-Id": str(uuid.uuid4()),
                "Retail-Event-Type": "raw",
                "Retail-Schema-Version": "1",
                "Retail-Aggregate-Type": "raw",
                "Retail-Aggregate-Key": f"k{i % 300}",
                "Retail-Aggregate-Version": str(i + 1),
                "Retail-Occurred-At": "2026-01-01T00:00:00.000000Z",
            }
            futures.append(await js.publish_async(subject, payload, headers=headers))
        await asyncio.gather(*futures)
    return count / (time.perf_counter() - started)


async def raw_consume(js: JetStreamContext, stream: str, subject: str, count: int, batch: int = 100) -> float:
    """Durable pull consumer: fetch `batch` at a time and ack each, until `count` are acked. Msgs/s."""
    durable = f"raw_{uuid.uuid4().hex[:8]}"
    await js.add_consumer(
        stream, ConsumerConfig(durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT)
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    done = 0
    started = time.perf_counter()
    while done < count:
        try:
            msgs = await sub.fetch(batch, timeout=1.0)
        except TimeoutError:
            continue
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return count / elapsed
