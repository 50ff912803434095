-- Threshold rules registered at launch are recorded here with their id; once the campaign has ended
-- or was rolled back they are deleted at inventory and marked retired.
alter table guardrail_rules add column retired boolean not null default false;
create index guardrail_rules_live_idx on guardrail_rules (campaign_id) where not retired;
