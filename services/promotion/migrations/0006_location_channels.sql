-- Channels that may sell from each replicated location (inventory's Location.channel_ids), so stock
-- guardrails watch only (location, channel) pairs that can sell, and campaigns targeting every location
-- can register them. NULL = not yet known (rows replicated before this column): no filtering.
alter table locations add column channel_ids text[];
