-- Pending tax rate activations move out of tax_rates into their own table, as entry activations live
-- in `activations`. The activation scheduler polls for due rows (at least every 30 s, and on every
-- PriceChanged / TaxRateChanged); on tax_rates those polls read the configuration table that each
-- replica's resolution cache holds, so the pricing tables were no longer untouched while nothing
-- changes. A row exists only for a rate scheduled ahead; announced_at is set in the transaction that
-- announces it.
create table tax_rate_activations (
    region_id    text        not null,
    tax_class    text        not null,
    effective_at timestamptz not null,
    announced_at timestamptz,
    primary key (region_id, tax_class, effective_at)
);
create index tax_rate_activations_pending on tax_rate_activations (effective_at) where announced_at is null;

insert into tax_rate_activations (region_id, tax_class, effective_at)
select region_id, tax_class, effective_at from tax_rates where announced_at is null;

drop index tax_rates_pending;
alter table tax_rates drop column announced_at;
