-- The channel that redeemed an order: only that channel (or an operator/service) may cancel it.
alter table redemptions add column channel_id text not null default '';
