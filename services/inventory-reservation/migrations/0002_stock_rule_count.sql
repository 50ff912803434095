-- Number of threshold rules watching a position, so stock changes skip rule evaluation when zero.
-- Maintained by rule create/delete under the position's row lock.
alter table stock add column rule_count integer not null default 0 check (rule_count >= 0);
update stock s set rule_count = (select count(*) from threshold_rules t
                                 where t.sku = s.sku and t.location_id = s.location_id);
