-- Imports COPY screened rows straight into change_set_items (repository/imports.py, the direct path):
-- - positions come from a sequence, in file order (COPY cannot number rows; gaps are allowed: readers
--   page by position, they do not count on 0..n-1). bigint, as a sequence shared by every import
--   would outgrow integer;
-- - the currency the file states is kept, for the check against the list's currency after the COPY;
-- - a NULL min_quantity means 1 (COPY reads an empty cell as NULL);
-- - a window ending at or before its start is refused by the table itself, during the COPY. NOT VALID:
--   existing rows were validated when they were written, and checking them would scan the table.
create sequence change_set_item_position as bigint cache 1000;
alter table change_set_items alter column position type bigint;
alter table change_set_items alter column position set default nextval('change_set_item_position');
alter sequence change_set_item_position owned by change_set_items.position;
alter table change_set_items add column currency_code text;
alter table change_set_items
    add constraint change_set_items_absolute_window check (end_abs > start_abs) not valid,
    add constraint change_set_items_local_window check (end_local > start_local) not valid;
