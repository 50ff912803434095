-- The trace context of the projection that queued each pending version, so the delivery span continues
-- the change's trace (parent for a single change, links for a batch).
alter table delivery_ledger add column traceparent text, add column tracestate text;
