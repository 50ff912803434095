-- Idempotent mutations now use the runtime's request_idempotency table (retail_common.db.idempotency).
drop table idempotency;
