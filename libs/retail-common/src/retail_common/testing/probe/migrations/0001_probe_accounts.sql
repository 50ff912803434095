-- The probe's own state: a running balance per account (version 1..n without gaps), the request ids
-- it has answered (idempotency) and every Echo it completed (so tests can see whether work finished).
CREATE TABLE probe_accounts (
    account_id text PRIMARY KEY,
    balance    bigint NOT NULL,
    version    bigint NOT NULL
);

CREATE TABLE probe_requests (
    request_id text PRIMARY KEY,
    account_id text NOT NULL,
    amount     bigint NOT NULL,
    version    bigint NOT NULL,
    event_id   text NOT NULL
);

CREATE TABLE probe_echoes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message   text NOT NULL,
    echoed_at timestamptz NOT NULL
);
