-- Effective-dated tax rates: one row per (region, tax class, effective start) instead of one current
-- value per (region, tax class). A rate applies from effective_at until the key's next row.
--
-- Existing rows become rates effective since -infinity, not since their updated_at: before this
-- migration the service applied the current rate at every instant, past ones included, and we do not
-- know what it replaced. Starting them at updated_at would make every earlier instant fall back to the
-- region default or 0 (inventing a tax-free past, moving effective_since and reference prices of
-- prices already published); since -infinity keeps every answer the service gave before the migration.
--
-- announced_at: when the rate's activation was announced (PriceChanged for the SKUs it moves). Null
-- only for a rate scheduled in the future and not yet announced; the activation scheduler claims those
-- when due (FOR UPDATE SKIP LOCKED, like entry activations). Immediate and migrated rows are announced.
alter table tax_rates add column effective_at timestamptz;
alter table tax_rates add column announced_at timestamptz;
update tax_rates set effective_at = '-infinity', announced_at = updated_at;
alter table tax_rates alter column effective_at set not null;
alter table tax_rates drop constraint tax_rates_pkey;
alter table tax_rates add primary key (region_id, tax_class, effective_at);
create index tax_rates_pending on tax_rates (effective_at) where announced_at is null;
