-- Version of a position's policy (safety stock, fences) alone: the etag of SetStockPolicies, so that a
-- policy update does not conflict with the constant stock and reservation traffic on the position.
alter table stock add column policy_version bigint not null default 0;
