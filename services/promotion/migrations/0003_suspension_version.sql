-- Suspensions get their own version: a suspension or resume (guardrails can flip often) reloads only
-- the suspensions of each replica's index, not its thousands of promotions.
alter table catalog_version add column suspensions bigint not null default 1;
