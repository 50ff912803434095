"""Events on NATS JetStream (DESIGN §5): streams, envelope, outbox + relay, inbox, dead letters, replay.

Producers write `OutboxWriter.append(conn, ...)` in the transaction of their state change; one
`OutboxRelay` per service publishes; consumers run an `InboxConsumer` per durable with a handler
`handler(conn, envelope)` (or an opt-in set-based `batch_handler(conn, envelopes)`) executed in the inbox
transaction. Schema: `MESSAGING_MIGRATIONS`.
"""

from pathlib import Path

from retail_common.db import MigrationSource
from retail_common.messaging._broadcast import ReplicaSubscription, subscribe_per_replica
from retail_common.messaging._deadletters import (
    DeadLetter,
    count_dead_letters,
    get_dead_letters,
    list_dead_letters,
    mark_replayed,
    publish_replay,
    replay_dead_letter,
    write_dead_letter,
)
from retail_common.messaging._envelope import (
    H_AGGREGATE_KEY,
    H_AGGREGATE_TYPE,
    H_AGGREGATE_VERSION,
    H_EVENT_TYPE,
    H_MSG_ID,
    H_OCCURRED_AT,
    H_ORIGINAL_EVENT_ID,
    H_SCHEMA_VERSION,
    Envelope,
    UndecodableMessageError,
    decode_envelope,
    new_event_id,
)
from retail_common.messaging._inbox import (
    BatchHandler,
    Handler,
    InboxConsumer,
    Outcome,
    VersionPolicy,
    prune_inbox,
)
from retail_common.messaging._lease import Lease
from retail_common.messaging._outbox import OutboxEvent, OutboxWriter, Payload
from retail_common.messaging._propagation import current_trace_headers, extract_context, inject_context
from retail_common.messaging._relay import OutboxRelay
from retail_common.messaging._streams import (
    SUITE_STREAMS,
    ConsumerSpec,
    StreamSpec,
    ensure_consumer,
    ensure_streams,
    suite_streams,
)
from retail_common.messaging._subjects import (
    deadletter_subject,
    decode_subject_token,
    domain_wildcard,
    event_filter,
    event_name,
    event_subject,
    subject_token,
)

MESSAGING_MIGRATIONS = MigrationSource("retail_common.messaging", Path(__file__).parent / "migrations")

__all__ = [
    "H_AGGREGATE_KEY",
    "H_AGGREGATE_TYPE",
    "H_AGGREGATE_VERSION",
    "H_EVENT_TYPE",
    "H_MSG_ID",
    "H_OCCURRED_AT",
    "H_ORIGINAL_EVENT_ID",
    "H_SCHEMA_VERSION",
    "MESSAGING_MIGRATIONS",
    "SUITE_STREAMS",
    "BatchHandler",
    "ConsumerSpec",
    "DeadLetter",
    "Envelope",
    "Handler",
    "InboxConsumer",
    "Lease",
    "OutboxEvent",
    "OutboxRelay",
    "OutboxWriter",
    "Outcome",
    "Payload",
    "ReplicaSubscription",
    "StreamSpec",
    "UndecodableMessageError",
    "VersionPolicy",
    "count_dead_letters",
    "current_trace_headers",
    "deadletter_subject",
    "decode_envelope",
    "decode_subject_token",
    "domain_wildcard",
    "ensure_consumer",
    "ensure_streams",
    "event_filter",
    "event_name",
    "event_subject",
    "extract_context",
    "get_dead_letters",
    "inject_context",
    "list_dead_letters",
    "mark_replayed",
    "new_event_id",
    "prune_inbox",
    "publish_replay",
    "replay_dead_letter",
    "subject_token",
    "subscribe_per_replica",
    "suite_streams",
    "write_dead_letter",
]
