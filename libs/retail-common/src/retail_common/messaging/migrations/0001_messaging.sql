-- retail_common.messaging: outbox (+ per-aggregate version counters), relay lease, inbox, dead letters.

-- One row per aggregate; the outbox writer bumps it in the caller's transaction (upsert ... returning),
-- which takes this row's lock: writers of one aggregate serialise, versions are gap-free among commits.
create table aggregate_versions (
    aggregate_type text   not null,
    aggregate_key  text   not null,
    version        bigint not null,
    primary key (aggregate_type, aggregate_key)
);

create table outbox (
    id                bigint generated always as identity primary key,
    event_id          uuid        not null unique,
    subject           text        not null,
    event_type        text        not null,
    schema_version    integer     not null,
    aggregate_type    text        not null,
    aggregate_key     text        not null,
    aggregate_version bigint      not null,
    payload           bytea       not null,
    occurred_at       timestamptz not null,
    traceparent       text,
    tracestate        text,
    created_at        timestamptz not null default clock_timestamp(),
    published_at      timestamptz,
    stream            text,
    stream_seq        bigint
);
-- The relay's scan: unpublished rows in id order. Partial, so it stays as small as the backlog.
create index outbox_unpublished on outbox (id) where published_at is null;
create index outbox_published_at on outbox (published_at) where published_at is not null;

-- One active relay per (service, lease name): taken/renewed by a conditional update on the DB clock.
create table relay_leases (
    name       text primary key,
    holder     text        not null,
    expires_at timestamptz not null
);

-- (consumer, event id) handled: a conflict on insert means "already done".
create table inbox (
    consumer          text        not null,
    event_id          uuid        not null,
    aggregate_type    text        not null,
    aggregate_key     text        not null,
    aggregate_version bigint      not null,
    applied           boolean     not null,
    received_at       timestamptz not null default now(),
    primary key (consumer, event_id)
);
create index inbox_received_at on inbox (received_at);

-- Last applied version per consumer and aggregate: the "apply only if newer" gate.
create table inbox_versions (
    consumer       text   not null,
    aggregate_type text   not null,
    aggregate_key  text   not null,
    version        bigint not null,
    primary key (consumer, aggregate_type, aggregate_key)
);

create table dead_letters (
    id                 bigint generated always as identity primary key,
    consumer           text        not null,
    stream             text        not null,
    stream_seq         bigint      not null,
    subject            text        not null,
    event_id           uuid,
    headers            jsonb       not null,
    payload            bytea       not null,
    reason             text        not null,
    num_delivered      integer     not null,
    dead_at            timestamptz not null default now(),
    deadletter_seq     bigint,
    replay_count       integer     not null default 0,
    replayed_at        timestamptz,
    last_replay_msg_id uuid,
    unique (consumer, stream, stream_seq)
);
create index dead_letters_consumer on dead_letters (consumer, id);
